// Build and device queries, the Context (streams, cuBLAS handles, scratch) and DeviceCache.
#include <climits>
#include <stdexcept>
#include <string>

#include "common.cuh"

namespace rnncore {
namespace cuda {

namespace detail {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string("rnncore CUDA: ") + what + ": " + cudaGetErrorString(e));
  }
}

void check_blas(blas::Status s, const char* what) {
  if (s != 0) {
    throw std::runtime_error(std::string("rnncore CUDA: ") + what + " failed with cuBLAS status " +
                             std::to_string(s));
  }
}

int to_int(int64_t v, const char* what) {
  if (v > INT_MAX) {
    throw std::length_error(std::string(what) + ": " + std::to_string(v) +
                            " elements exceed the CUDA kernels' int indexing");
  }
  return static_cast<int>(v);
}

void gemm(blas::Handle h, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
          const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  check_blas(blas::api().sgemm(h, trans_a ? blas::kTrans : blas::kNoTrans,
                               trans_b ? blas::kTrans : blas::kNoTrans, m, n, k, &alpha, a, lda, b,
                               ldb, &beta, c, ldc),
             "cublasSgemm");
}

void gemm(blas::Handle h, bool trans_a, bool trans_b, int m, int n, int k, double alpha,
          const double* a, int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  check_blas(blas::api().dgemm(h, trans_a ? blas::kTrans : blas::kNoTrans,
                               trans_b ? blas::kTrans : blas::kNoTrans, m, n, k, &alpha, a, lda, b,
                               ldb, &beta, c, ldc),
             "cublasDgemm");
}

}  // namespace detail

bool built() noexcept { return true; }

std::string compiled_version() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
}

std::optional<DeviceInfo> device(std::string* why) {
  const auto fail = [&](const std::string& reason) -> std::optional<DeviceInfo> {
    if (why != nullptr) *why = reason;
    return std::nullopt;
  };
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return fail(cudaGetErrorString(e));
  if (count == 0) return fail("no CUDA device");
  DeviceInfo info;
  if ((e = cudaGetDevice(&info.index)) != cudaSuccess) return fail(cudaGetErrorString(e));
  cudaDeviceProp prop{};
  if ((e = cudaGetDeviceProperties(&prop, info.index)) != cudaSuccess) {
    return fail(cudaGetErrorString(e));
  }
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.shared_bytes_per_block = prop.sharedMemPerBlockOptin;
  info.total_bytes = prop.totalGlobalMem;
  cudaRuntimeGetVersion(&info.runtime_version);
  cudaDriverGetVersion(&info.driver_version);
  return info;
}

void Context::Impl::join(int to, int from) {
  detail::check(cudaEventRecord(done[from], streams[from]), "cudaEventRecord");
  detail::check(cudaStreamWaitEvent(streams[to], done[from], 0), "cudaStreamWaitEvent");
}

Context::Context(int device_index) : impl_(std::make_unique<Impl>()) {
  Impl& c = *impl_;
  c.device = device_index;
  detail::check(cudaSetDevice(device_index), "cudaSetDevice");
  std::string why;
  const std::optional<DeviceInfo> info = device(&why);
  if (!info) throw std::runtime_error("rnncore CUDA: no usable device: " + why);
  c.info = *info;
  const blas::Api& api = blas::api();
  for (int d = 0; d < 2; ++d) {
    detail::check(cudaStreamCreateWithFlags(&c.streams[d], cudaStreamNonBlocking),
                  "cudaStreamCreate");
    detail::check(cudaEventCreateWithFlags(&c.done[d], cudaEventDisableTiming), "cudaEventCreate");
    detail::check_blas(api.create(&c.handles[d]), "cublasCreate");
    detail::check_blas(api.set_stream(c.handles[d], c.streams[d]), "cublasSetStream");
  }
}

Context::~Context() {
  if (!impl_) return;
  Impl& c = *impl_;
  cudaSetDevice(c.device);
  for (int d = 0; d < 2; ++d) {
    if (c.streams[d] != nullptr) cudaStreamSynchronize(c.streams[d]);
    if (c.handles[d] != nullptr) blas::api().destroy(c.handles[d]);
    if (c.done[d] != nullptr) cudaEventDestroy(c.done[d]);
    if (c.streams[d] != nullptr) cudaStreamDestroy(c.streams[d]);
  }
}

const DeviceInfo& Context::info() const noexcept { return impl_->info; }

void Context::synchronize() {
  for (cudaStream_t s : impl_->streams) detail::check(cudaStreamSynchronize(s), "a queued kernel");
}

template <typename S>
DeviceCache<S>::DeviceCache() : impl_(std::make_unique<Impl>()) {}
template <typename S>
DeviceCache<S>::~DeviceCache() = default;

template <typename S>
std::size_t DeviceCache<S>::nbytes() const noexcept {
  std::size_t n = impl_->lengths_device.nbytes();
  for (const auto& a : impl_->layer_inputs) n += a.nbytes();
  for (const auto& d : impl_->directions) {
    n += d.gates.nbytes() + d.h_prev.nbytes() + d.c_prev.nbytes() + d.tanh_c.nbytes() +
         d.hn.nbytes();
  }
  return n;
}

template class DeviceCache<float>;
template class DeviceCache<double>;

}  // namespace cuda
}  // namespace rnncore
