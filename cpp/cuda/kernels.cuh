// The pointwise kernels of one step (forward and backward) and the persistent small-batch
// forward kernel. Every gate formula comes from cell_unit.h (shared with the CPU); these kernels
// only gather the operands, add the biases and store what BPTT needs.
#pragma once

#include <cooperative_groups.h>

#include "common.cuh"

namespace rnncore {
namespace cuda {
namespace detail {

// gate_count for device code (a constexpr host function is not callable there).
template <CellKind Cell>
constexpr int kGates = Cell == CellKind::Lstm ? 4 : Cell == CellKind::Gru ? 3 : 1;

template <typename S>
struct ForwardStepArgs {
  int N = 0, H = 0, steps = 0, s = 0;
  bool reverse = false, relu = false;
  const int64_t* lengths = nullptr;  // device [N], or nullptr
  S* gates = nullptr;                // [T, N, G*H]: W_ih x on entry, activations on exit
  const S* hproj = nullptr;          // [N, G*H]: W_hh h of this step
  const S* b_ih = nullptr;           // [G*H] or nullptr
  const S* b_hh = nullptr;
  S* h = nullptr;                    // [N, H] state, updated in place
  S* c = nullptr;                    // [N, H] LSTM
  S* y = nullptr;                    // [T, N, y_stride] at column y_offset
  int y_stride = 0, y_offset = 0;
  S* cache_h_prev = nullptr;         // [T, N, H] each, or nullptr (inference)
  S* cache_c_prev = nullptr;
  S* cache_tanh_c = nullptr;
  S* cache_hn = nullptr;
};

template <typename S>
__device__ __forceinline__ S bias_at(const S* b, int k) {
  return b != nullptr ? b[k] : S(0);
}

// The gate pre-activations of unit j of row b are gathered from the input projection (`x_side`,
// rows k*H + j), the hidden projection (`h_side`, the same rows) and the biases; then the cell's
// formula runs. Shared by the per-step kernel and the persistent kernel (whose hidden projection
// sits in shared memory with its own row stride).
template <CellKind Cell, typename S>
__device__ __forceinline__ void forward_unit(int H, int j, S* x_side, const S* h_side,
                                             int h_row_stride, const S* b_ih, const S* b_hh,
                                             bool relu, S h_prev, S& c, S& h_new, S& tanh_c,
                                             S& hn) {
  using A = DeviceActivation;
  if constexpr (Cell == CellKind::Lstm) {
    S g[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      g[k] = x_side[k * H] + h_side[k * h_row_stride] + bias_at(b_ih, k * H + j) +
             bias_at(b_hh, k * H + j);
    }
    const S c_prev = c;
    cell::unit::lstm_forward<A>(g[0], g[1], g[2], g[3], c_prev, c, tanh_c, h_new);
#pragma unroll
    for (int k = 0; k < 4; ++k) x_side[k * H] = g[k];
  } else if constexpr (Cell == CellKind::Gru) {
    S r = x_side[0] + bias_at(b_ih, j) + bias_at(b_hh, j);
    S z = x_side[H] + bias_at(b_ih, H + j) + bias_at(b_hh, H + j);
    S n = x_side[2 * H] + bias_at(b_ih, 2 * H + j);
    hn = h_side[2 * h_row_stride] + bias_at(b_hh, 2 * H + j);
    h_new = cell::unit::gru_forward<A>(r, z, n, h_side[0], h_side[h_row_stride], hn, h_prev);
    x_side[0] = r;
    x_side[H] = z;
    x_side[2 * H] = n;
  } else {
    const S a = x_side[0] + h_side[0] + bias_at(b_ih, j) + bias_at(b_hh, j);
    h_new = cell::unit::rnn_forward<A>(a, relu);
    x_side[0] = h_new;
  }
}

// One step of one direction: a thread per (row, unit).
template <CellKind Cell, typename S>
__global__ void forward_step_kernel(ForwardStepArgs<S> a) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= a.N * a.H) return;
  const int b = idx / a.H, j = idx - b * a.H;
  const RowStep at = row_step(a.lengths, b, a.steps, a.s, a.reverse);
  const size_t row = static_cast<size_t>(at.t) * a.N + b;
  S* y = a.y + row * a.y_stride + a.y_offset + j;
  if (!at.active) {  // a step past this row's length: y is zero there, the state carries
    *y = S(0);
    return;
  }
  constexpr int G = kGates<Cell>;
  const S h_prev = a.h[idx];
  S c = Cell == CellKind::Lstm ? a.c[idx] : S(0);
  if (a.cache_h_prev != nullptr) {
    a.cache_h_prev[row * a.H + j] = h_prev;
    if (Cell == CellKind::Lstm) a.cache_c_prev[row * a.H + j] = c;
  }
  S h_new, tanh_c = S(0), hn = S(0);
  forward_unit<Cell>(a.H, j, a.gates + row * G * a.H + j, a.hproj + static_cast<size_t>(b) * G * a.H + j,
                     a.H, a.b_ih, a.b_hh, a.relu, h_prev, c, h_new, tanh_c, hn);
  a.h[idx] = h_new;
  *y = h_new;
  if (Cell == CellKind::Lstm) a.c[idx] = c;
  if (a.cache_h_prev != nullptr) {
    if (Cell == CellKind::Lstm) a.cache_tanh_c[row * a.H + j] = tanh_c;
    if (Cell == CellKind::Gru) a.cache_hn[row * a.H + j] = hn;
  }
}

template <typename S>
struct BackwardStepArgs {
  int N = 0, H = 0, steps = 0, s = 0;
  bool reverse = false, relu = false;
  const int64_t* lengths = nullptr;
  const S* gates = nullptr;          // [T, N, G*H] activations
  const S* h_prev = nullptr;         // [T, N, H]
  const S* c_prev = nullptr;         // LSTM
  const S* tanh_c = nullptr;         // LSTM
  const S* hn = nullptr;             // GRU
  const S* grad_out = nullptr;       // [T, N, stride] at column offset, or nullptr
  int grad_stride = 0, grad_offset = 0;
  S* dh = nullptr;                   // [N, H] carried dL/dh; on exit the part not through W_hh
  S* dc = nullptr;                   // [N, H] carried dL/dc (LSTM)
  S* d_input_gates = nullptr;        // [T, N, G*H] (zeroed beforehand)
  S* d_hidden_gates = nullptr;       // [T, N, G*H] GRU only (zeroed beforehand)
  S* d_step = nullptr;               // [N, G*H] this step's hidden-side gradient, for the GEMM
};

template <CellKind Cell, typename S>
__global__ void backward_step_kernel(BackwardStepArgs<S> a) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= a.N * a.H) return;
  const int b = idx / a.H, j = idx - b * a.H;
  constexpr int G = kGates<Cell>;
  const int GH = G * a.H;
  S* d_step = a.d_step + static_cast<size_t>(b) * GH + j;
  const RowStep at = row_step(a.lengths, b, a.steps, a.s, a.reverse);
  if (!at.active) {  // nothing flows through W_hh; the carried gradients stay
#pragma unroll
    for (int k = 0; k < G; ++k) d_step[k * a.H] = S(0);
    return;
  }
  const size_t row = static_cast<size_t>(at.t) * a.N + b;
  const S* g = a.gates + row * GH + j;
  S* dx = a.d_input_gates + row * GH + j;
  S dh = a.dh[idx];
  if (a.grad_out != nullptr) dh += a.grad_out[row * a.grad_stride + a.grad_offset + j];
  if constexpr (Cell == CellKind::Lstm) {
    S d[4], dc_prev;
    cell::unit::lstm_backward(g[0], g[a.H], g[2 * a.H], g[3 * a.H], a.c_prev[row * a.H + j],
                              a.tanh_c[row * a.H + j], dh, a.dc[idx], d[0], d[1], d[2], d[3],
                              dc_prev);
#pragma unroll
    for (int k = 0; k < 4; ++k) dx[k * a.H] = d_step[k * a.H] = d[k];
    a.dc[idx] = dc_prev;
    a.dh[idx] = S(0);
  } else if constexpr (Cell == CellKind::Gru) {
    S dxr, dxz, dxn, dhn, direct;
    cell::unit::gru_backward(g[0], g[a.H], g[2 * a.H], a.hn[row * a.H + j],
                             a.h_prev[row * a.H + j], dh, dxr, dxz, dxn, dhn, direct);
    dx[0] = dxr;
    dx[a.H] = dxz;
    dx[2 * a.H] = dxn;
    S* dhid = a.d_hidden_gates + row * GH + j;
    dhid[0] = d_step[0] = dxr;
    dhid[a.H] = d_step[a.H] = dxz;
    dhid[2 * a.H] = d_step[2 * a.H] = dhn;
    a.dh[idx] = direct;
  } else {
    const S da = cell::unit::rnn_backward(g[0], dh, a.relu);
    dx[0] = d_step[0] = da;
    a.dh[idx] = S(0);
  }
}

// The persistent forward kernel (inference, at most kPersistentMaxBatch rows): a cooperative
// grid in which block k owns hidden units [k*U, k*U + U) and keeps their G rows of W_hh in shared
// memory for all steps; per step each warp takes rows of that slice and dots them with every
// row's h (read through L2: other blocks wrote it), then the block applies the cell to its
// units, and the grid synchronises before the next step. h alternates between two buffers.
template <typename S>
struct PersistentArgs {
  int N = 0, H = 0, steps = 0, units = 0;  // units per block
  bool reverse = false, relu = false;
  const int64_t* lengths = nullptr;
  const S* w_hh = nullptr;                 // [G*H, H]
  const S* b_ih = nullptr;
  const S* b_hh = nullptr;
  S* gates = nullptr;                      // [T, N, G*H] W_ih x; overwritten with activations
  S* h = nullptr;                          // [2, N, H]: h0 in the first half; the final state
                                           // ends in half steps % 2
  S* c = nullptr;                          // [N, H]
  S* y = nullptr;
  int y_stride = 0, y_offset = 0;
};

template <CellKind Cell, typename S>
__global__ void persistent_forward_kernel(PersistentArgs<S> a) {
  namespace cg = cooperative_groups;
  constexpr int G = kGates<Cell>;
  constexpr int B = static_cast<int>(kPersistentMaxBatch);
  extern __shared__ __align__(16) unsigned char shared_raw[];
  S* w = reinterpret_cast<S*>(shared_raw);  // [G*U, H]
  const int U = a.units, H = a.H, N = a.N, rows = G * U;
  S* proj = w + static_cast<size_t>(rows) * H;  // [B, G*U]
  const int u0 = blockIdx.x * U;
  const int owned = min(U, H - u0);
  for (int i = threadIdx.x; i < rows * H; i += blockDim.x) {
    const int r = i / H, k = i - r * H, gate = r / U, u = r - gate * U;
    w[i] = u < owned ? a.w_hh[static_cast<size_t>(gate * H + u0 + u) * H + k] : S(0);
  }
  __syncthreads();
  cg::grid_group grid = cg::this_grid();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int s = 0; s < a.steps; ++s) {
    const S* h = a.h + static_cast<size_t>(s % 2) * N * H;
    S* h_next = a.h + static_cast<size_t>((s + 1) % 2) * N * H;
    for (int r = warp; r < rows; r += warps) {
      S acc[B];
#pragma unroll
      for (int b = 0; b < B; ++b) acc[b] = S(0);
      const S* wr = w + static_cast<size_t>(r) * H;
      for (int k = lane; k < H; k += 32) {
        const S wk = wr[k];
#pragma unroll
        for (int b = 0; b < B; ++b) {
          if (b < N) acc[b] += wk * __ldcg(h + static_cast<size_t>(b) * H + k);
        }
      }
#pragma unroll
      for (int b = 0; b < B; ++b) {
        for (int off = 16; off > 0; off /= 2) acc[b] += __shfl_down_sync(0xffffffffu, acc[b], off);
        if (lane == 0 && b < N) proj[b * rows + r] = acc[b];
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < owned * N; i += blockDim.x) {
      const int b = i / owned, u = i - b * owned, j = u0 + u;
      const RowStep at = row_step(a.lengths, b, a.steps, s, a.reverse);
      const size_t row = static_cast<size_t>(at.t) * N + b;
      S* y = a.y + row * a.y_stride + a.y_offset + j;
      const S h_prev = __ldcg(h + static_cast<size_t>(b) * H + j);
      if (!at.active) {
        *y = S(0);
        h_next[static_cast<size_t>(b) * H + j] = h_prev;
        continue;
      }
      S c = Cell == CellKind::Lstm ? a.c[static_cast<size_t>(b) * H + j] : S(0);
      S h_new, tanh_c, hn;
      forward_unit<Cell>(H, j, a.gates + row * G * H + j, proj + b * rows + u, U, a.b_ih, a.b_hh,
                         a.relu, h_prev, c, h_new, tanh_c, hn);
      h_next[static_cast<size_t>(b) * H + j] = h_new;
      *y = h_new;
      if (Cell == CellKind::Lstm) a.c[static_cast<size_t>(b) * H + j] = c;
    }
    grid.sync();
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace rnncore
