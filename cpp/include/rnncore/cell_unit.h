// The pointwise formulas of each cell for ONE hidden unit of one batch row: the single
// definition that the CPU kernels (cell.h's scalar and float64 paths and every backward pass)
// and the CUDA kernels (cpp/cuda/) both call, so the CPU tests exercise the formulas the GPU
// runs. No Eigen and no standard library beyond <cmath>, so that nvcc compiles it for the device.
//
// RNNCORE_HD marks a function for both compilers: __host__ __device__ under nvcc, nothing for a
// host compiler.
//
// The activations come in through a policy `A` (A::tanh, A::logistic): the CPU passes Eigen's
// scalar functions (the ones its SIMD packets match, cell.h's ScalarActivation), the device
// passes CUDA's (cpp/cuda/device_math.cuh). Everything else, the gate algebra forward and
// backward, is here once. Operations are written in the order the CPU's former Eigen
// expressions evaluated them, so that float64 results did not change.
//
// Conventions are PyTorch's, as in cell.h: LSTM gates i, f, g, o; GRU gates r, z, n with
// n = tanh(x_n + r * (W_hn h + b_hn)).
#pragma once

#if defined(__CUDACC__)
#define RNNCORE_HD __host__ __device__ __forceinline__
#else
#define RNNCORE_HD inline
#endif

namespace rnncore {
namespace cell {
namespace unit {

// ---------------------------------------------------------------- vanilla RNN
// a: the summed pre-activation. Returns h' = act(a).
template <typename A, typename S>
RNNCORE_HD S rnn_forward(S a, bool relu) {
  return relu ? (a > S(0) ? a : S(0)) : A::tanh(a);
}

// h: h' = act(a) from the forward pass; dh: dL/dh'. Returns dL/da.
template <typename S>
RNNCORE_HD S rnn_backward(S h, S dh, bool relu) {
  return relu ? (h > S(0) ? dh : S(0)) : dh * (S(1) - h * h);
}

// ---------------------------------------------------------------------- LSTM
// i, f, g, o: pre-activations on entry, activations on exit. Writes c', tanh(c') and h'.
template <typename A, typename S>
RNNCORE_HD void lstm_forward(S& i, S& f, S& g, S& o, S c_prev, S& c, S& tanh_c, S& h) {
  i = A::logistic(i);
  f = A::logistic(f);
  g = A::tanh(g);
  o = A::logistic(o);
  c = f * c_prev + i * g;
  tanh_c = A::tanh(c);
  h = o * tanh_c;
}

// i, f, g, o: activations; dh, dc: dL/dh', dL/dc'. Writes the gradients of the four
// pre-activations and dL/dc (through f).
template <typename S>
RNNCORE_HD void lstm_backward(S i, S f, S g, S o, S c_prev, S tanh_c, S dh, S dc_next, S& di,
                              S& df, S& dg, S& d_o, S& dc_prev) {
  d_o = dh * tanh_c * o * (S(1) - o);
  const S dc = dc_next + dh * o * (S(1) - tanh_c * tanh_c);
  di = dc * g * i * (S(1) - i);
  df = dc * c_prev * f * (S(1) - f);
  dg = dc * i * (S(1) - g * g);
  dc_prev = dc * f;
}

// ----------------------------------------------------------------------- GRU
// r, z, n: on entry the input-side pre-activations (b_hr, b_hz already added to r and z); on
// exit the activations. hr, hz: W_hr h, W_hz h; hn: W_hn h + b_hn. Returns h'.
template <typename A, typename S>
RNNCORE_HD S gru_forward(S& r, S& z, S& n, S hr, S hz, S hn, S h_prev) {
  r = A::logistic(r + hr);
  z = A::logistic(z + hz);
  n = A::tanh(n + r * hn);
  return n + z * (h_prev - n);
}

// Gradients of the input-side pre-activations (dxr, dxz, dxn), of the hidden-side ones
// (W_h h + b_h: dhr = dxr, dhz = dxz, so only dhn is written) and the part of dL/dh that does
// not pass through W_hh (z * dh).
template <typename S>
RNNCORE_HD void gru_backward(S r, S z, S n, S hn, S h_prev, S dh, S& dxr, S& dxz, S& dxn,
                             S& dhn, S& dh_direct) {
  dxn = dh * (S(1) - z) * (S(1) - n * n);
  dxz = dh * (h_prev - n) * z * (S(1) - z);
  dxr = dxn * hn * r * (S(1) - r);
  dhn = dxn * r;
  dh_direct = dh * z;
}

}  // namespace unit
}  // namespace cell
}  // namespace rnncore
