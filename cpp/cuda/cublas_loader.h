// cuBLAS, loaded at run time (dlopen) rather than linked: the CUDA build then needs only the CUDA
// runtime to compile and link (CI's toolkit has no cuBLAS), and a machine whose cuBLAS is the
// one in NVIDIA's Python wheels (nvidia-cublas) works without a toolkit install. The few entry
// points used are declared here with the ABI of cublas_api.h (the *_v2 symbols, unchanged since
// CUDA 4); cublas_abi_check.cpp checks these declarations against the real header wherever one
// is found at configure time.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

namespace rnncore {
namespace cuda {
namespace blas {

struct Opaque;
using Handle = Opaque*;  // cublasHandle_t
using Status = int;      // cublasStatus_t; 0 = CUBLAS_STATUS_SUCCESS
enum Operation : int { kNoTrans = 0, kTrans = 1 };  // cublasOperation_t

using CreateFn = Status (*)(Handle*);
using DestroyFn = Status (*)(Handle);
using SetStreamFn = Status (*)(Handle, cudaStream_t);
using SgemmFn = Status (*)(Handle, Operation, Operation, int, int, int, const float*, const float*,
                           int, const float*, int, const float*, float*, int);
using DgemmFn = Status (*)(Handle, Operation, Operation, int, int, int, const double*,
                           const double*, int, const double*, int, const double*, double*, int);

struct Api {
  CreateFn create = nullptr;
  DestroyFn destroy = nullptr;
  SetStreamFn set_stream = nullptr;
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
  std::string library;  // the path or name that was loaded
};

// Loads cuBLAS once (RNNCORE_CUBLAS_LIBRARY if set, else libcublas.so.13, libcublas.so); throws
// std::runtime_error naming what was tried when none loads or a symbol is missing.
const Api& api();

}  // namespace blas
}  // namespace cuda
}  // namespace rnncore
