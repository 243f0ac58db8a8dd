// Whole-sequence forward pass and backpropagation through time for stacked, optionally
// bidirectional RNN / LSTM / GRU layers. Usable from C++ without Python.
//
// Layout (all arrays dense, C order, PyTorch's conventions so weights move unchanged):
//   x        [T, N, I]            time-major input
//   y        [T, N, D*H]          top layer's output, [forward, reverse] on the last axis
//   h0, h_n  [L*D, N, H]          ordered layer0-fwd, layer0-rev, layer1-fwd, ...
//   c0, c_n  [L*D, N, H]          LSTM only
//   lengths  [N]                  each in 1..T, or nullptr for all T; sequence b runs steps
//                                 0..lengths[b]-1 (the reverse direction starts at lengths[b]-1),
//                                 y is zero past its length, its final state is the state after
//                                 its own last step.
//   weights  one DirectionWeights per (layer, direction), layer-major: l0-fwd, l0-rev, l1-fwd...
//            w_ih [G*H, I_k], w_hh [G*H, H], b_ih [G*H], b_hh [G*H] (biases nullptr = no bias),
//            I_0 = I, I_k = D*H for k > 0, G = gate_count(cell).
// No argument may alias another unless stated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/config.h"
#include "rnncore/memory.h"

namespace rnncore {

// A model's weights packed once for repeated inference calls: what sequence_forward otherwise
// packs on every call (W_ih^T and W_hh^T of every layer and direction, a read and a write of
// every weight; for a short call, such as one step of a decoder, most of its time). It keeps its
// own copy: the weights it was made from may change or go away afterwards. Holds about 2x the
// weights' bytes (3x for W_hh where the hidden size is not a multiple of the SIMD panel width,
// which has two layouts). Immutable once made: calls from several threads may share one.
// Throws std::invalid_argument like sequence_forward for inconsistent sizes or null weights.
template <typename S>
class PreparedWeights {
 public:
  PreparedWeights(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights);
  const ModelConfig& config() const noexcept { return config_; }
  // Bytes of packed weights and biases held.
  std::size_t nbytes() const noexcept;

  struct Impl;  // sequence.cpp
  const Impl& impl() const noexcept { return *impl_; }

 private:
  ModelConfig config_;
  std::shared_ptr<const Impl> impl_;
};

template <typename S>
class TrainingCache;

namespace detail {
// sequence_forward's body (sequence.cpp); `prepared`, when given, holds the packed weights and
// `weights` only the biases.
template <typename S>
void forward_layers(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                    const typename PreparedWeights<S>::Impl* prepared, int64_t steps,
                    int64_t batch, const S* x, const S* h0, const S* c0, const int64_t* lengths,
                    S* y, S* h_n, S* c_n, TrainingCache<S>* cache, const S* dropout_masks);
}  // namespace detail

// What BPTT needs from a forward pass, owned here so that the caller's arrays may change after
// the forward call. Per (layer, direction), in time order t (not processing order):
//   gates     [T, N, G*H]  activations (RNN: h'; LSTM: i f g o; GRU: r z n)
//   h_prev    [T, N, H]    the state each step started from
//   c_prev    [T, N, H]    LSTM
//   tanh_c    [T, N, H]    LSTM: tanh(c')
//   hn        [T, N, H]    GRU: W_hn h + b_hn
// plus every layer's input (x for layer 0, the previous layer's output above it).
template <typename S>
class TrainingCache {
 public:
  struct Direction {
    Buffer<S> gates, h_prev, c_prev, tanh_c, hn;
  };

  const ModelConfig& config() const noexcept { return config_; }
  int64_t steps() const noexcept { return steps_; }
  int64_t batch() const noexcept { return batch_; }
  const std::vector<int64_t>& lengths() const noexcept { return lengths_; }
  bool has_lengths() const noexcept { return !lengths_.empty(); }
  std::size_t nbytes() const noexcept;

 private:
  template <typename T>
  friend void detail::forward_layers(const ModelConfig&, const std::vector<DirectionWeights<T>>&,
                                     const typename PreparedWeights<T>::Impl*, int64_t, int64_t,
                                     const T*, const T*, const T*, const int64_t*, T*, T*, T*,
                                     TrainingCache<T>*, const T*);
  template <typename T>
  friend void sequence_backward(const ModelConfig&, const std::vector<DirectionWeights<T>>&,
                                const TrainingCache<T>&, const T*, const T*, const T*, T*, T*,
                                T*, const std::vector<DirectionGrads<T>>&);

  ModelConfig config_;
  int64_t steps_ = 0, batch_ = 0;
  std::vector<int64_t> lengths_;
  std::vector<Buffer<S>> layer_inputs_;  // [L] each [T, N, I_k]
  std::vector<Direction> directions_;         // [L*D]
  std::vector<Buffer<S>> dropout_masks_;      // [L-1] each [T, N, D*H] (rows as layer_inputs_), or none
};

// Runs the whole stack. h0/c0 may be nullptr (zeros); c0/c_n are used only by the LSTM (c_n may
// be nullptr for other cells). When `cache` is non-null it is filled for sequence_backward.
// dropout_masks, when given, is [L-1, T, N, D*H]: the output of layer k < L-1 is multiplied
// element-wise by mask k before layer k+1 reads it (dropout between layers, the masks already
// scaled by 1/(1-p)); drawing them is the caller's (rnncore.torch uses torch's generator). The
// cache keeps a copy, and sequence_backward multiplies the gradient by the same masks. Entries
// at steps past a sequence's length are not read.
// Throws std::invalid_argument on inconsistent sizes or lengths outside 1..T.
// Threads: up to OpenMP's; with two or more, this and sequence_backward follow the measured
// thread plan (thread_plan.h) unless it is set to Fixed: a kind of call timed faster on one
// thread runs on one. The results are the same bit for bit.
template <typename S>
void sequence_forward(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                      int64_t steps, int64_t batch, const S* x, const S* h0, const S* c0,
                      const int64_t* lengths, S* y, S* h_n, S* c_n, TrainingCache<S>* cache,
                      const S* dropout_masks = nullptr);

// sequence_forward over prepared weights (inference: no cache). The same results bit for bit as
// sequence_forward on the weights they were made from, except for a single step of at most 4
// sequences, which sequence_forward runs as matrix-vector products on the unpacked weights
// (summed in another order: within float rounding, ~1e-7 relative in float32).
template <typename S>
void sequence_forward(const PreparedWeights<S>& weights, int64_t steps, int64_t batch, const S* x,
                      const S* h0, const S* c0, const int64_t* lengths, S* y, S* h_n, S* c_n);

// Backpropagation through time. grad_y [T, N, D*H] may be nullptr (zero); grad_h_n, grad_c_n
// [L*D, N, H] may be nullptr (zero). Writes grad_x [T, N, I], grad_h0 and (LSTM) grad_c0
// [L*D, N, H] and every DirectionGrads. The weights must be those of the forward call.
// grad_x, grad_h0 and grad_c0 may be nullptr: not wanted (for grad_x, the first layer's
// input-gradient product is then skipped).
template <typename S>
void sequence_backward(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                       const TrainingCache<S>& cache, const S* grad_y, const S* grad_h_n,
                       const S* grad_c_n, S* grad_x, S* grad_h0, S* grad_c0,
                       const std::vector<DirectionGrads<S>>& grads);

// The instruction set this library's kernels were compiled for: fixed at build time by
// RNNCORE_ARCH (the compiler's target macros), whatever CPU later runs them. A CPU without one of
// `features` stops with an illegal instruction.
struct KernelIsa {
  std::string arch;                   // "x86-64", "aarch64" or "other"
  std::vector<std::string> features;  // x86: "SSE2" ... "AVX", "AVX2", "FMA", "F16C", "BMI2",
                                      // "AVX512F", "AVX512BW", "AVX512VL", "AVX512DQ", "AVX512CD"
  int vector_bytes = 0;               // one SIMD register as the kernels use it (Eigen's packet)
  int panel_floats = 0;               // floats per packed weight panel (two registers): hidden
                                      // sizes that are multiples of it pack without padding
};
KernelIsa kernel_isa();

// Which of the x86 extensions that KernelIsa::features can name the running CPU (and OS)
// supports (cpuid); std::nullopt where that cannot be asked (not x86, or not g++/clang).
std::optional<std::vector<std::string>> cpu_isa_features();


}  // namespace rnncore
