// The one definition of each cell's pointwise math, forward and backward, for one batch row.
//
// Everything that is not a matrix product lives here: the sequence kernels (sequence.cpp), the
// streaming step (stream.h) and any other backend include this header, so a formula is written
// once. The matrix products (input projection, recurrent projection) are done by the callers,
// which hand these functions the summed pre-activations.
//
// Conventions are PyTorch's: gate rows are ordered i, f, g, o (LSTM) and r, z, n (GRU), and the
// GRU's b_hn sits inside the reset product: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
#pragma once

#include <Eigen/Core>
#include <cstdint>

namespace rnncore {

enum class CellKind : int { RnnTanh = 0, RnnRelu = 1, Lstm = 2, Gru = 3 };

// Rows of W_ih / W_hh per hidden unit: 1 for the vanilla RNN, 4 for LSTM, 3 for GRU.
constexpr int gate_count(CellKind cell) noexcept {
  return cell == CellKind::Lstm ? 4 : cell == CellKind::Gru ? 3 : 1;
}

namespace cell {

template <typename S>
using Vec = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
template <typename S>
using CVec = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;

// Eigen's vectorised logistic saturates correctly for large |a| (no overflow in exp).
template <typename S>
inline auto sigmoid(const Eigen::ArrayBase<S>& a) {
  return a.logistic();
}

// ---------------------------------------------------------------- vanilla RNN
// `gates` holds a = W_ih x + b_ih + W_hh h + b_hh on entry and h' = act(a) on exit; BPTT reads
// the activation back from it, so it doubles as the cache.
template <typename S>
inline void rnn_forward_row(int64_t H, bool relu, S* gates, S* h_new) noexcept {
  Vec<S> a(gates, H);
  if (relu) {
    a = a.max(S(0));
  } else {
    a = a.tanh();
  }
  Vec<S>(h_new, H) = a;
}

// grad_h: dL/dh' (output gradient plus the carried state gradient). Writes dL/da into grad_gates.
template <typename S>
inline void rnn_backward_row(int64_t H, bool relu, const S* gates, const S* grad_h,
                             S* grad_gates) noexcept {
  CVec<S> h(gates, H), dh(grad_h, H);
  Vec<S> da(grad_gates, H);
  if (relu) {
    da = (h > S(0)).select(dh, S(0));
  } else {
    da = dh * (S(1) - h.square());
  }
}

// ---------------------------------------------------------------------- LSTM
// `gates` (4H) holds the summed pre-activations on entry and the activations i, f, g, o on exit.
template <typename S>
inline void lstm_forward_row(int64_t H, S* gates, const S* c_prev, S* c_new, S* tanh_c,
                             S* h_new) noexcept {
  Vec<S> i(gates, H), f(gates + H, H), g(gates + 2 * H, H), o(gates + 3 * H, H);
  i = sigmoid(i);
  f = sigmoid(f);
  g = g.tanh();
  o = sigmoid(o);
  Vec<S> c(c_new, H), tc(tanh_c, H);
  c = f * CVec<S>(c_prev, H) + i * g;
  tc = c.tanh();
  Vec<S>(h_new, H) = o * tc;
}

// grad_h, grad_c: dL/dh', dL/dc' at this step. Writes dL/d(pre-activations) into grad_gates and
// dL/dc into grad_c_prev (which may alias grad_c).
template <typename S>
inline void lstm_backward_row(int64_t H, const S* gates, const S* c_prev, const S* tanh_c,
                              const S* grad_h, const S* grad_c, S* grad_gates,
                              S* grad_c_prev) noexcept {
  CVec<S> i(gates, H), f(gates + H, H), g(gates + 2 * H, H), o(gates + 3 * H, H);
  CVec<S> tc(tanh_c, H), dh(grad_h, H), cp(c_prev, H);
  Vec<S> di(grad_gates, H), df(grad_gates + H, H), dg(grad_gates + 2 * H, H),
      dout(grad_gates + 3 * H, H);
  // dc is kept in a temporary because grad_c_prev may alias grad_c.
  const Eigen::Array<S, Eigen::Dynamic, 1> dc =
      CVec<S>(grad_c, H) + dh * o * (S(1) - tc.square());
  dout = dh * tc * o * (S(1) - o);
  di = dc * g * i * (S(1) - i);
  df = dc * cp * f * (S(1) - f);
  dg = dc * i * (S(1) - g.square());
  Vec<S>(grad_c_prev, H) = dc * f;
}

// ----------------------------------------------------------------------- GRU
// gates (3H): on entry W_i x + b_i (with b_hr, b_hz already added to the r and z rows);
// on exit the activations r, z, n. hidden_proj (3H): W_h h (no bias). hn_out (H) receives
// W_hn h + b_hn, which BPTT needs for dL/dr.
template <typename S>
inline void gru_forward_row(int64_t H, S* gates, const S* hidden_proj, const S* b_hn,
                            const S* h_prev, S* hn_out, S* h_new) noexcept {
  Vec<S> r(gates, H), z(gates + H, H), n(gates + 2 * H, H);
  CVec<S> hr(hidden_proj, H), hz(hidden_proj + H, H), hn_raw(hidden_proj + 2 * H, H);
  Vec<S> hn(hn_out, H);
  if (b_hn != nullptr) {
    hn = hn_raw + CVec<S>(b_hn, H);
  } else {
    hn = hn_raw;
  }
  r = sigmoid(r + hr);
  z = sigmoid(z + hz);
  n = (n + r * hn).tanh();
  CVec<S> hp(h_prev, H);
  Vec<S>(h_new, H) = n + z * (hp - n);
}

// Writes the gradient of the input-side pre-activations into grad_input_gates (r, z, n rows),
// that of the hidden-side ones (W_h h + b_h) into grad_hidden_gates, and the part of dL/dh that
// does not go through W_hh (the z * h term) into grad_h_prev_direct.
template <typename S>
inline void gru_backward_row(int64_t H, const S* gates, const S* hn_in, const S* h_prev,
                             const S* grad_h, S* grad_input_gates, S* grad_hidden_gates,
                             S* grad_h_prev_direct) noexcept {
  CVec<S> r(gates, H), z(gates + H, H), n(gates + 2 * H, H), hn(hn_in, H), hp(h_prev, H),
      dh(grad_h, H);
  Vec<S> dxr(grad_input_gates, H), dxz(grad_input_gates + H, H), dxn(grad_input_gates + 2 * H, H);
  const Eigen::Array<S, Eigen::Dynamic, 1> dn_pre = dh * (S(1) - z) * (S(1) - n.square());
  dxn = dn_pre;
  dxz = dh * (hp - n) * z * (S(1) - z);
  dxr = dn_pre * hn * r * (S(1) - r);
  Vec<S>(grad_hidden_gates, H) = dxr;
  Vec<S>(grad_hidden_gates + H, H) = dxz;
  Vec<S>(grad_hidden_gates + 2 * H, H) = dn_pre * r;
  Vec<S>(grad_h_prev_direct, H) = dh * z;
}

}  // namespace cell
}  // namespace rnncore
