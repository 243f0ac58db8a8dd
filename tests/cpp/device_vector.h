// Device memory for the CUDA tests and drivers: a copy of a host vector (or n zeros) that
// host() copies back. Throws std::runtime_error when a CUDA call fails.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace rnncore_test {

inline void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename S>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<S>& v) : n_(v.size()) {
    ok(cudaMalloc(reinterpret_cast<void**>(&p_), (n_ > 0 ? n_ : 1) * sizeof(S)), "cudaMalloc");
    if (n_ > 0) ok(cudaMemcpy(p_, v.data(), n_ * sizeof(S), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  // n copies of `fill` (the tests poison outputs with a value no kernel writes).
  explicit DeviceVector(std::size_t n, S fill = S(0)) : DeviceVector(std::vector<S>(n, fill)) {}
  ~DeviceVector() { cudaFree(p_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  S* get() const { return p_; }
  std::vector<S> host() const {
    std::vector<S> v(n_);
    if (n_ > 0) ok(cudaMemcpy(v.data(), p_, n_ * sizeof(S), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return v;
  }

 private:
  S* p_ = nullptr;
  std::size_t n_;
};

}  // namespace rnncore_test
