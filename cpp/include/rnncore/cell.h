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
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "rnncore/cell_unit.h"
#include "rnncore/config.h"

namespace rnncore {

namespace cell {

template <typename S>
using Vec = Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>;
template <typename S>
using CVec = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;

// The scalar logistic of the Eigen-expression paths (float tails, float64). It has no packet form
// on purpose: Eigen's packet logistic rounds differently from its scalar one, and which elements
// take which path would then depend on the alignment of the arrays, making results vary in the
// last bit from call to call. 1 / (1 + exp(-a)) saturates to 0 and 1 without overflow traps.
struct ScalarLogistic {
  template <typename T>
  T operator()(T a) const {
    return T(1) / (T(1) + std::exp(-a));
  }
};

template <typename S>
inline auto sigmoid(const Eigen::ArrayBase<S>& a) {
  return a.unaryExpr(ScalarLogistic());
}

// The activations that the scalar paths hand to cell_unit.h's formulas: the scalar functions of
// Eigen's array expressions (numext::tanh is the same fast tanh as the float packets use).
struct ScalarActivation {
  template <typename T>
  static T tanh(T a) {
    return Eigen::numext::tanh(a);
  }
  template <typename T>
  static T logistic(T a) {
    return ScalarLogistic()(a);
  }
};

// Fused forward pointwise passes: whole SIMD packets of units go through every gate in registers
// (one pass instead of one Eigen expression per gate, which matters at H = 32..256 where each
// expression's loop overhead is comparable to its work). Float only, where Eigen has vectorised
// tanh and logistic; the tail and double use the Eigen expressions below.
namespace fused {
template <typename S>
constexpr bool enabled() {
  return std::is_same<S, float>::value && Eigen::internal::packet_traits<S>::Vectorizable &&
         Eigen::internal::packet_traits<S>::HasTanh;
}
template <typename S>
using Packet = typename Eigen::internal::packet_traits<S>::type;
template <typename S>
constexpr int64_t width() {
  return Eigen::internal::unpacket_traits<Packet<S>>::size;
}
template <typename P>
inline P logistic(const P& x) {
  return Eigen::internal::scalar_logistic_op<typename Eigen::internal::unpacket_traits<P>::type>()
      .packetOp(x);
}

// The forward cell math of one packet of units, in registers: the LSTM's i, f, g, o
// (pre-activations in, activations out), c' = f c_prev + i g, tanh(c') and h' = o tanh(c'); the
// GRU's r, z, n from the input-side sums x_* (biases included) and hidden-side ones h_* (W_hn h +
// b_hn in h_n), and h'. The row passes below and the stream's one-pass step (stream.cpp) both
// call these, so both give the same bits.
template <typename P>
inline void lstm_forward(P& i, P& f, P& g, P& o, const P& c_prev, P& c, P& tanh_c, P& h) {
  using namespace Eigen::internal;
  i = logistic(i);
  f = logistic(f);
  g = ptanh(g);
  o = logistic(o);
  c = padd(pmul(f, c_prev), pmul(i, g));
  tanh_c = ptanh(c);
  h = pmul(o, tanh_c);
}

template <typename P>
inline void gru_forward(const P& x_r, const P& x_z, const P& x_n, const P& h_r, const P& h_z,
                        const P& h_n, const P& h_prev, P& r, P& z, P& n, P& h) {
  using namespace Eigen::internal;
  r = logistic(padd(x_r, h_r));
  z = logistic(padd(x_z, h_z));
  n = ptanh(padd(x_n, pmul(r, h_n)));
  h = padd(n, pmul(z, psub(h_prev, n)));
}

// A packet of units with the arithmetic that cell_unit.h's backward formulas use (+, -, * and
// constants), so that the backward passes evaluate those same formulas on a whole packet at a
// time. Element by element they were scalar code: 9% of an LSTM 64x8x200 training call on AVX2.
template <typename P>
struct Lanes {
  using Scalar = typename Eigen::internal::unpacket_traits<P>::type;
  P v;
  explicit Lanes(const P& p) : v(p) {}
  template <typename T, typename = std::enable_if_t<std::is_arithmetic<T>::value>>
  explicit Lanes(T constant) : v(Eigen::internal::pset1<P>(Scalar(constant))) {}
  Lanes() : v(Eigen::internal::pset1<P>(Scalar(0))) {}
  friend Lanes operator+(const Lanes& a, const Lanes& b) { return Lanes(Eigen::internal::padd(a.v, b.v)); }
  friend Lanes operator-(const Lanes& a, const Lanes& b) { return Lanes(Eigen::internal::psub(a.v, b.v)); }
  friend Lanes operator*(const Lanes& a, const Lanes& b) { return Lanes(Eigen::internal::pmul(a.v, b.v)); }
};

template <typename S>
inline Lanes<Packet<S>> load(const S* p) {
  return Lanes<Packet<S>>(Eigen::internal::ploadu<Packet<S>>(p));
}

template <typename S>
inline void store(S* p, const Lanes<Packet<S>>& x) {
  Eigen::internal::pstoreu(p, x.v);
}

// AVX2's mask for lanes [0, count) of a float packet (load_first, store_first).
#if defined(EIGEN_VECTORIZE_AVX2)
inline __m256i first_lanes_avx2(int64_t count) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// The first `count` (< width) values at p in a packet, the lanes past them zero; and the
// first `count` lanes of a packet stored to p. The forward passes below run their last units
// (H not a multiple of the packet: 12, 20, 40, ...) through the same packet math as the others,
// so each unit gets the same bits wherever it sits, and a small layer is not left to scalar exp
// and tanh: an LSTM 1 -> 12 streaming step took 4x the time of a 1 -> 16 one with the scalar
// tail (the 2-vCPU Zen 4 VM; bench/README.md, "Hidden sizes that are not whole SIMD registers").
// Masked loads and stores where the packet is AVX-512's or AVX2's float packet (a copy through
// the stack, element by element, stalled on store forwarding: the 1 -> 12 step took 2.4x the
// time of the 1 -> 16 one); elsewhere such a copy. No lane past `count` is read or written.
// P: Packet<S>, or a narrower packet of S (the streaming step's half-width slices).
template <typename S, typename P = Packet<S>>
inline P load_first(const S* p, int64_t count) noexcept {
#if defined(EIGEN_VECTORIZE_AVX512)
  if constexpr (std::is_same<P, __m512>::value) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << count) - 1u), p);
  }
#endif
#if defined(EIGEN_VECTORIZE_AVX2)
  if constexpr (std::is_same<P, __m256>::value) {
    return _mm256_maskload_ps(p, first_lanes_avx2(count));
  }
#endif
  alignas(64) S lanes[Eigen::internal::unpacket_traits<P>::size] = {};
  for (int64_t j = 0; j < count; ++j) lanes[j] = p[j];
  return Eigen::internal::pload<P>(lanes);
}
template <typename S, typename P>
inline void store_first(S* p, const P& v, int64_t count) noexcept {
#if defined(EIGEN_VECTORIZE_AVX512)
  if constexpr (std::is_same<P, __m512>::value) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << count) - 1u), v);
    return;
  }
#endif
#if defined(EIGEN_VECTORIZE_AVX2)
  if constexpr (std::is_same<P, __m256>::value) {
    _mm256_maskstore_ps(p, first_lanes_avx2(count), v);
    return;
  }
#endif
  alignas(64) S lanes[Eigen::internal::unpacket_traits<P>::size];
  Eigen::internal::pstore(lanes, v);
  for (int64_t j = 0; j < count; ++j) p[j] = lanes[j];
}

// The first `count` (1..size) units of a packet at p, read and written: a whole packet with
// plain unaligned loads and stores, fewer with load_first / store_first. Where count is the
// packet's size as a constant the choice folds away.
template <typename S, typename P = Packet<S>>
struct PacketUnits {
  static constexpr int64_t kSize = Eigen::internal::unpacket_traits<P>::size;
  int64_t count;
  P load(const S* p) const noexcept {
    return count == kSize ? Eigen::internal::ploadu<P>(p) : load_first<S, P>(p, count);
  }
  void store(S* p, const P& v) const noexcept {
    if (count == kSize) {
      Eigen::internal::pstoreu(p, v);
    } else {
      store_first(p, v, count);
    }
  }
};

// Calls body(j, units) for each packet of units [j, j + units.count) in [0, count): whole
// packets, then the last units, if any, as one packet part full (PacketUnits), so that every unit
// gets the same packet arithmetic wherever it sits.
template <typename S, typename Body>
inline void each_packet_with_tail(int64_t count, Body&& body) {
  constexpr int64_t W = width<S>();
  int64_t j = 0;
  for (; j + W <= count; j += W) body(j, PacketUnits<S>{W});
  if (j < count) body(j, PacketUnits<S>{count - j});
}

// Calls body(j) for each whole packet [j, j + width) of units in [0, count) where the fused
// passes are enabled for S, and returns the first unit left to the caller's scalar loop.
template <typename S, typename Body>
inline int64_t each_packet(int64_t count, Body&& body) {
  int64_t j = 0;
  if constexpr (enabled<S>()) {
    for (; j + width<S>() <= count; j += width<S>()) body(j);
  }
  return j;
}
}  // namespace fused

// Each cell has a `_part` form and a `_row` form. The part form works on `count` consecutive
// hidden units of one batch row: gate k of unit j sits at gates[k * gate_stride + j] (so a caller
// passes pointers already offset to its first unit, and gate_stride = H for PyTorch's layout);
// every other array holds those `count` units contiguously. The sequence kernels give each thread
// a range of hidden units; the row form (count = gate_stride = H) serves whole rows.

// ---------------------------------------------------------------- vanilla RNN
// `gates` holds a = W_ih x + b_ih + W_hh h + b_hh on entry and h' = act(a) on exit; BPTT reads
// the activation back from it, so it doubles as the cache.
template <typename S>
inline void rnn_forward_part(int64_t count, bool relu, S* gates, S* h_new) noexcept {
  if constexpr (fused::enabled<S>()) {
    using namespace Eigen::internal;
    using P = fused::Packet<S>;
    fused::each_packet_with_tail<S>(count, [&](int64_t j, const auto& units) {
      const P a = units.load(gates + j);
      const P h = relu ? pmax(a, pset1<P>(S(0))) : ptanh(a);
      units.store(gates + j, h);
      units.store(h_new + j, h);
    });
    return;
  }
  for (int64_t j = 0; j < count; ++j) {
    gates[j] = unit::rnn_forward<ScalarActivation>(gates[j], relu);
    h_new[j] = gates[j];
  }
}

template <typename S>
inline void rnn_forward_row(int64_t H, bool relu, S* gates, S* h_new) noexcept {
  rnn_forward_part(H, relu, gates, h_new);
}

// grad_h: dL/dh' (output gradient plus the carried state gradient). Writes dL/da into grad_gates.
template <typename S>
inline void rnn_backward_part(int64_t count, bool relu, const S* gates, const S* grad_h,
                              S* grad_gates) noexcept {
  for (int64_t j = 0; j < count; ++j) {
    grad_gates[j] = unit::rnn_backward(gates[j], grad_h[j], relu);
  }
}

template <typename S>
inline void rnn_backward_row(int64_t H, bool relu, const S* gates, const S* grad_h,
                             S* grad_gates) noexcept {
  rnn_backward_part(H, relu, gates, grad_h, grad_gates);
}

// ---------------------------------------------------------------------- LSTM
// `gates` (4 gate rows) holds the summed pre-activations on entry and the activations i, f, g, o
// on exit.
template <typename S>
inline void lstm_forward_part(int64_t count, int64_t gate_stride, S* gates, const S* c_prev,
                              S* c_new, S* tanh_c, S* h_new) noexcept {
  if constexpr (fused::enabled<S>()) {
    using P = fused::Packet<S>;
    fused::each_packet_with_tail<S>(count, [&](int64_t j, const auto& units) {
      S* a = gates + j;
      P i = units.load(a), f = units.load(a + gate_stride), g = units.load(a + 2 * gate_stride),
        o = units.load(a + 3 * gate_stride), c, tc, h;
      fused::lstm_forward(i, f, g, o, units.load(c_prev + j), c, tc, h);
      units.store(a, i);
      units.store(a + gate_stride, f);
      units.store(a + 2 * gate_stride, g);
      units.store(a + 3 * gate_stride, o);
      units.store(c_new + j, c);
      units.store(tanh_c + j, tc);
      units.store(h_new + j, h);
    });
    return;
  }
  for (int64_t j = 0; j < count; ++j) {
    unit::lstm_forward<ScalarActivation>(gates[j], gates[j + gate_stride],
                                         gates[j + 2 * gate_stride], gates[j + 3 * gate_stride],
                                         c_prev[j], c_new[j], tanh_c[j], h_new[j]);
  }
}

template <typename S>
inline void lstm_forward_row(int64_t H, S* gates, const S* c_prev, S* c_new, S* tanh_c,
                             S* h_new) noexcept {
  lstm_forward_part(H, H, gates, c_prev, c_new, tanh_c, h_new);
}

// grad_h, grad_c: dL/dh', dL/dc' at this step. Writes dL/d(pre-activations) into grad_gates (gate
// rows gate_stride apart, like gates) and dL/dc into grad_c_prev (which may alias grad_c).
template <typename S>
inline void lstm_backward_part(int64_t count, int64_t gate_stride, const S* gates,
                               const S* c_prev, const S* tanh_c, const S* grad_h,
                               const S* grad_c, S* grad_gates, S* grad_c_prev) noexcept {
  // A packet's inputs are all loaded before its results are stored, and the tail goes element
  // by element, so grad_c_prev may alias grad_c.
  using fused::load;
  using fused::store;
  int64_t j = fused::each_packet<S>(count, [&](auto j) {
    fused::Lanes<fused::Packet<S>> di, df, dg, d_o, dc_prev;
    unit::lstm_backward(load(gates + j), load(gates + j + gate_stride),
                        load(gates + j + 2 * gate_stride), load(gates + j + 3 * gate_stride),
                        load(c_prev + j), load(tanh_c + j), load(grad_h + j), load(grad_c + j), di,
                        df, dg, d_o, dc_prev);
    store(grad_gates + j, di);
    store(grad_gates + j + gate_stride, df);
    store(grad_gates + j + 2 * gate_stride, dg);
    store(grad_gates + j + 3 * gate_stride, d_o);
    store(grad_c_prev + j, dc_prev);
  });
  for (; j < count; ++j) {
    unit::lstm_backward(gates[j], gates[j + gate_stride], gates[j + 2 * gate_stride],
                        gates[j + 3 * gate_stride], c_prev[j], tanh_c[j], grad_h[j], grad_c[j],
                        grad_gates[j], grad_gates[j + gate_stride],
                        grad_gates[j + 2 * gate_stride], grad_gates[j + 3 * gate_stride],
                        grad_c_prev[j]);
  }
}

template <typename S>
inline void lstm_backward_row(int64_t H, const S* gates, const S* c_prev, const S* tanh_c,
                              const S* grad_h, const S* grad_c, S* grad_gates,
                              S* grad_c_prev) noexcept {
  lstm_backward_part(H, H, gates, c_prev, tanh_c, grad_h, grad_c, grad_gates, grad_c_prev);
}

// ----------------------------------------------------------------------- GRU
// gates (3 gate rows): on entry W_i x + b_i (with b_hr, b_hz already added to the r and z rows);
// on exit the activations r, z, n. hidden_proj (3 gate rows, the same gate_stride): W_h h (no
// bias). hn_out receives W_hn h + b_hn, which BPTT needs for dL/dr. b_hn may be nullptr.
template <typename S>
inline void gru_forward_part(int64_t count, int64_t gate_stride, S* gates, const S* hidden_proj,
                             const S* b_hn, const S* h_prev, S* hn_out, S* h_new) noexcept {
  if constexpr (fused::enabled<S>()) {
    using namespace Eigen::internal;
    using P = fused::Packet<S>;
    fused::each_packet_with_tail<S>(count, [&](int64_t j, const auto& units) {
      S* a = gates + j;
      const S* hp = hidden_proj + j;
      P hn = units.load(hp + 2 * gate_stride);
      if (b_hn != nullptr) hn = padd(hn, units.load(b_hn + j));
      P r, z, n, h;
      fused::gru_forward(units.load(a), units.load(a + gate_stride), units.load(a + 2 * gate_stride),
                         units.load(hp), units.load(hp + gate_stride), hn, units.load(h_prev + j),
                         r, z, n, h);
      units.store(a, r);
      units.store(a + gate_stride, z);
      units.store(a + 2 * gate_stride, n);
      units.store(hn_out + j, hn);
      units.store(h_new + j, h);
    });
    return;
  }
  for (int64_t j = 0; j < count; ++j) {
    const S hn_raw = hidden_proj[j + 2 * gate_stride];
    hn_out[j] = b_hn != nullptr ? hn_raw + b_hn[j] : hn_raw;
    h_new[j] = unit::gru_forward<ScalarActivation>(gates[j], gates[j + gate_stride],
                                                   gates[j + 2 * gate_stride], hidden_proj[j],
                                                   hidden_proj[j + gate_stride], hn_out[j],
                                                   h_prev[j]);
  }
}

template <typename S>
inline void gru_forward_row(int64_t H, S* gates, const S* hidden_proj, const S* b_hn,
                            const S* h_prev, S* hn_out, S* h_new) noexcept {
  gru_forward_part(H, H, gates, hidden_proj, b_hn, h_prev, hn_out, h_new);
}

// Writes the gradient of the input-side pre-activations into grad_input_gates (r, z, n rows),
// that of the hidden-side ones (W_h h + b_h) into grad_hidden_gates (both gate_stride apart), and
// the part of dL/dh that does not go through W_hh (the z * h term) into grad_h_prev_direct.
template <typename S>
inline void gru_backward_part(int64_t count, int64_t gate_stride, const S* gates, const S* hn_in,
                              const S* h_prev, const S* grad_h, S* grad_input_gates,
                              S* grad_hidden_gates, S* grad_h_prev_direct) noexcept {
  using fused::load;
  using fused::store;
  int64_t j = fused::each_packet<S>(count, [&](auto j) {
    fused::Lanes<fused::Packet<S>> dxr, dxz, dxn, dhn, dh_direct;
    unit::gru_backward(load(gates + j), load(gates + j + gate_stride),
                       load(gates + j + 2 * gate_stride), load(hn_in + j), load(h_prev + j),
                       load(grad_h + j), dxr, dxz, dxn, dhn, dh_direct);
    store(grad_input_gates + j, dxr);
    store(grad_input_gates + j + gate_stride, dxz);
    store(grad_input_gates + j + 2 * gate_stride, dxn);
    store(grad_hidden_gates + j, dxr);
    store(grad_hidden_gates + j + gate_stride, dxz);
    store(grad_hidden_gates + j + 2 * gate_stride, dhn);
    store(grad_h_prev_direct + j, dh_direct);
  });
  for (; j < count; ++j) {
    S& dxr = grad_input_gates[j];
    S& dxz = grad_input_gates[j + gate_stride];
    unit::gru_backward(gates[j], gates[j + gate_stride], gates[j + 2 * gate_stride], hn_in[j],
                       h_prev[j], grad_h[j], dxr, dxz, grad_input_gates[j + 2 * gate_stride],
                       grad_hidden_gates[j + 2 * gate_stride], grad_h_prev_direct[j]);
    grad_hidden_gates[j] = dxr;
    grad_hidden_gates[j + gate_stride] = dxz;
  }
}

template <typename S>
inline void gru_backward_row(int64_t H, const S* gates, const S* hn_in, const S* h_prev,
                             const S* grad_h, S* grad_input_gates, S* grad_hidden_gates,
                             S* grad_h_prev_direct) noexcept {
  gru_backward_part(H, H, gates, hn_in, h_prev, grad_h, grad_input_gates, grad_hidden_gates,
                    grad_h_prev_direct);
}

}  // namespace cell
}  // namespace rnncore
