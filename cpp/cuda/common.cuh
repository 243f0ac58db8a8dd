// What the CUDA sources share: error checks, a grow-only device array, row-major GEMM over the
// run-time-loaded cuBLAS, the activations handed to cell_unit.h, and the Impl structs of cuda.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cublas_loader.h"
#include "rnncore/cell_unit.h"
#include "rnncore/cuda.h"

namespace rnncore {
namespace cuda {
namespace detail {

// Throws std::runtime_error "rnncore CUDA: <what>: <CUDA's message>" unless e is cudaSuccess.
void check(cudaError_t e, const char* what);
void check_blas(blas::Status s, const char* what);
// v as int (cuBLAS's and the kernels' index type); std::length_error naming `what` past INT_MAX.
int to_int(int64_t v, const char* what);

// Device memory that only grows (contents are not kept across a resize).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  ~DeviceArray() { release(); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  void reserve(std::size_t n) {
    if (n <= n_) return;
    release();
    check(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)), "cudaMalloc");
    n_ = n;
  }
  T* data() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }
  std::size_t nbytes() const noexcept { return n_ * sizeof(T); }

 private:
  void release() noexcept {
    if (p_ != nullptr) cudaFree(p_);
    p_ = nullptr, n_ = 0;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// C = alpha * op(A) * op(B) + beta * C in cuBLAS's column-major terms (callers translate their
// row-major arrays: a row-major [r, c] array is a column-major [c, r] one).
void gemm(blas::Handle h, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);
void gemm(blas::Handle h, bool trans_a, bool trans_b, int m, int n, int k, double alpha,
          const double* a, int lda, const double* b, int ldb, double beta, double* c, int ldc);

// The activations of the device kernels (cell_unit.h's policy): CUDA's tanh and exp.
struct DeviceActivation {
  template <typename T>
  __device__ __forceinline__ static T tanh(T a) {
    return ::tanh(a);
  }
  template <typename T>
  __device__ __forceinline__ static T logistic(T a) {
    return T(1) / (T(1) + ::exp(-a));
  }
};

// Where one sequence row is at processing step s: the CPU path's semantics for lengths.
struct RowStep {
  bool active;
  int t;  // the time index processed (active), or s (inactive: a step past the row's length)
};
__device__ __forceinline__ RowStep row_step(const int64_t* lengths, int b, int steps, int s,
                                            bool reverse) {
  const int len = lengths != nullptr ? static_cast<int>(lengths[b]) : steps;
  if (s >= len) return {false, s};
  return {true, reverse ? len - 1 - s : s};
}

}  // namespace detail

struct Context::Impl {
  int device = 0;
  DeviceInfo info;
  cudaStream_t streams[2] = {nullptr, nullptr};
  blas::Handle handles[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  // Scratch for one call at a time (a call waits for the previous one before growing it).
  detail::DeviceArray<unsigned char> scratch;
  detail::DeviceArray<int64_t> lengths;
  // Makes stream `to` wait for what is queued on stream `from` so far.
  void join(int to, int from);
};

template <typename S>
struct DeviceCache<S>::Impl {
  struct Direction {
    detail::DeviceArray<S> gates, h_prev, c_prev, tanh_c, hn;
  };
  ModelConfig config;
  int64_t steps = 0, batch = 0;
  std::vector<int64_t> lengths;                // host copy; empty: all full length
  detail::DeviceArray<int64_t> lengths_device;
  std::vector<detail::DeviceArray<S>> layer_inputs;  // [L] each [T, N, I_k]
  std::vector<Direction> directions;                 // [L*D]
  bool filled = false;
};

}  // namespace cuda
}  // namespace rnncore
