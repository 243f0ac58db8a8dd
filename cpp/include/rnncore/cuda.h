// Optional CUDA kernels: forward (with a training cache), backpropagation through time and a
// streaming step for RNN (tanh, relu), LSTM and GRU stacks whose arrays live in GPU memory.
//
// Built only with the CMake option RNNCORE_CUDA=ON (cpp/cuda/). This header is the same in every
// build and needs no CUDA headers: in a build without CUDA, built() is false, device() is empty,
// and making a Context throws std::runtime_error; the argument checks, the choice of kernel and
// the sizes below are plain C++ and work (and are tested) everywhere.
//
// Layouts, conventions and semantics are sequence.h's (PyTorch's): x [T, N, I], y [T, N, D*H],
// h0 / h_n / c0 / c_n [L*D, N, H], one DirectionWeights per (layer, direction), variable lengths
// with the CPU path's meaning (y zero past a sequence's length, its final state the one after
// its own last step, the reverse direction starting at its last step). Every array pointer given
// to forward, backward and DeviceStream is a DEVICE pointer (cudaMalloc, or a CUDA tensor's
// data), except `lengths`, which is host memory (like torch's pack_padded_sequence).
//
// How it runs (the structure of cuDNN and haste): per (layer, direction) one cuBLAS GEMM projects
// the input of all steps; then per step one GEMM for W_hh h and one fused pointwise kernel that
// applies the gates (cell_unit.h's formulas, shared with the CPU) and writes what BPTT needs.
// BPTT mirrors it, and each weight gradient is one GEMM over all steps. The two directions of a
// layer run on two CUDA streams. For at most 8 sequences, where the per-step launches cost more
// than the work, an inference forward runs one persistent cooperative kernel per (layer,
// direction) that keeps W_hh in shared memory across all steps, where W_hh fits (choose_path).
//
// NOT YET RUN ON A GPU: these kernels compile (nvcc 13, sm_80 and sm_90 plus PTX) and their
// host-side logic is tested, but no GPU has executed them yet; see README "CUDA (optional)".
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rnncore/sequence.h"

namespace rnncore {
namespace cuda {

// ---------------------------------------------------------------- build and device
// Whether this library was built with RNNCORE_CUDA=ON.
bool built() noexcept;
// The CUDA toolkit version the library was compiled with ("13.0"), or "" without CUDA.
std::string compiled_version();

struct DeviceInfo {
  int index = 0;
  std::string name;                  // "NVIDIA H200"
  int major = 0, minor = 0;          // compute capability
  int multiprocessors = 0;
  std::size_t shared_bytes_per_block = 0;  // the opt-in maximum of dynamic shared memory
  std::size_t total_bytes = 0;
  int runtime_version = 0;           // cudaRuntimeGetVersion, e.g. 13000
  int driver_version = 0;            // cudaDriverGetVersion
};
// The current CUDA device, or std::nullopt when CUDA was not built, no driver or no device is
// present (then `why`, when given, receives the reason).
std::optional<DeviceInfo> device(std::string* why = nullptr);

// ---------------------------------------------------------------- checks and choices (host only)
// The persistent small-batch kernel: one cooperative grid per (layer, direction); each block owns
// `units_per_block` hidden units and keeps their G rows of W_hh in shared memory for all steps.
struct PersistentPlan {
  bool fits = false;
  int blocks = 0;
  int64_t units_per_block = 0;
  std::size_t shared_bytes = 0;  // per block
  std::string why_not;           // when !fits
};
// The largest batch the persistent kernel takes (its per-lane accumulators are fixed at this).
constexpr int64_t kPersistentMaxBatch = 8;
// The plan for hidden size H of `cell` on a device with `multiprocessors` SMs and
// `shared_bytes_per_block` of opt-in shared memory, with `directions` grids running at once
// (each gets multiprocessors / directions blocks). Plain arithmetic: testable without a GPU.
PersistentPlan persistent_plan(CellKind cell, int64_t hidden_size, int64_t batch,
                               std::size_t scalar_bytes, int directions, int multiprocessors,
                               std::size_t shared_bytes_per_block);

enum class ForwardPath { Auto, Launches, Persistent };
// What Auto resolves to: Persistent for an inference call (no cache) of at most
// kPersistentMaxBatch sequences whose W_hh fits (persistent_plan), else Launches. A forced
// Persistent that does not fit throws std::invalid_argument saying why.
ForwardPath choose_path(const ModelConfig& config, int64_t batch, std::size_t scalar_bytes,
                        bool training, ForwardPath requested, int multiprocessors,
                        std::size_t shared_bytes_per_block);

// The checks of forward, backward and DeviceStream, done on the host before anything runs:
// throws std::invalid_argument naming the argument (a config size not positive, steps or batch
// < 1, a null required pointer, a weights vector of the wrong length, a null weight, a null bias
// in a model with bias, c0 / c_n missing for an LSTM when h0 / h_n is given is allowed (zeros /
// not written), lengths outside 1..steps) and std::length_error when an element count overflows.
template <typename S>
void check_forward_args(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                        int64_t steps, int64_t batch, const S* x, const int64_t* lengths,
                        const S* y);
template <typename S>
void check_backward_grads(const ModelConfig& config, const std::vector<DirectionGrads<S>>& grads,
                          const S* grad_x, const S* grad_h0);

// ---------------------------------------------------------------- running
// A device, its two streams (one per direction) with a cuBLAS handle each, and a workspace that
// grows to the largest call. Not thread-safe: one Context per host thread. Throws
// std::runtime_error when CUDA is not built, or when the device, cuBLAS (loaded at run time:
// libcublas.so.13, or RNNCORE_CUBLAS_LIBRARY) or a stream cannot be had.
class Context {
 public:
  explicit Context(int device_index = 0);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  const DeviceInfo& info() const noexcept;
  // Waits for everything queued on this context's streams; rethrows a kernel's error.
  void synchronize();

  struct Impl;
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// What BPTT needs from a forward pass, in device memory (as TrainingCache, sequence.h): each
// layer's input, and per (layer, direction) the activations, the state each step started from
// and (LSTM) c and tanh(c) / (GRU) W_hn h + b_hn, in time order. Owned here; freed with it.
template <typename S>
class DeviceCache {
 public:
  DeviceCache();
  ~DeviceCache();
  DeviceCache(const DeviceCache&) = delete;
  DeviceCache& operator=(const DeviceCache&) = delete;
  std::size_t nbytes() const noexcept;

  struct Impl;
  Impl& impl() noexcept { return *impl_; }
  const Impl& impl() const noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// The stack's forward pass on the GPU; the arguments are sequence_forward's (device pointers;
// lengths on the host). Queued on the context's streams: the call returns once the work is
// queued, and the outputs are ready after ctx.synchronize() (or on the context's first stream).
template <typename S>
void forward(Context& ctx, const ModelConfig& config,
             const std::vector<DirectionWeights<S>>& weights, int64_t steps, int64_t batch,
             const S* x, const S* h0, const S* c0, const int64_t* lengths, S* y, S* h_n, S* c_n,
             DeviceCache<S>* cache, ForwardPath path = ForwardPath::Auto);

// BPTT on the GPU; the arguments are sequence_backward's (device pointers). Each gradient is
// overwritten.
template <typename S>
void backward(Context& ctx, const ModelConfig& config,
              const std::vector<DirectionWeights<S>>& weights, const DeviceCache<S>& cache,
              const S* grad_y, const S* grad_h_n, const S* grad_c_n, S* grad_x, S* grad_h0,
              S* grad_c0, const std::vector<DirectionGrads<S>>& grads);

// Many concurrent sequences advanced one step at a time (serving): a unidirectional stack's
// state for `batch` streams, kept on the device. The weights (device pointers) must outlive it.
template <typename S>
class DeviceStream {
 public:
  DeviceStream(Context& ctx, const ModelConfig& config,
               const std::vector<DirectionWeights<S>>& weights, int64_t batch);
  ~DeviceStream();
  DeviceStream(const DeviceStream&) = delete;
  DeviceStream& operator=(const DeviceStream&) = delete;
  int64_t batch() const noexcept { return batch_; }
  // x [N, I] -> y [N, H] (device pointers); the state advances.
  void step(const S* x, S* y);
  // h [L, N, H] and (LSTM) c; nullptr for zeros (set_state) or not wanted (get_state).
  void set_state(const S* h, const S* c);
  void get_state(S* h, S* c) const;
  void reset() { set_state(nullptr, nullptr); }

  struct Impl;

 private:
  int64_t batch_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuda
}  // namespace rnncore
