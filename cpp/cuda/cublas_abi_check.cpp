// Compiled only where CMake finds a real cublas_v2.h (never linked into anything): fails to
// compile if cublas_loader.h's declarations differ from cuBLAS's own.
#include <cublas_v2.h>

#include <type_traits>

#include "cublas_loader.h"

namespace blas = rnncore::cuda::blas;

static_assert(std::is_same<blas::Status, std::underlying_type_t<cublasStatus_t>>::value ||
                  sizeof(blas::Status) == sizeof(cublasStatus_t),
              "cublasStatus_t");
static_assert(CUBLAS_STATUS_SUCCESS == 0, "CUBLAS_STATUS_SUCCESS");
static_assert(int(CUBLAS_OP_N) == blas::kNoTrans && int(CUBLAS_OP_T) == blas::kTrans,
              "cublasOperation_t");
static_assert(sizeof(cublasOperation_t) == sizeof(blas::Operation), "cublasOperation_t size");
static_assert(sizeof(cublasHandle_t) == sizeof(blas::Handle), "cublasHandle_t");

// The same parameter lists with cuBLAS's own types, shape for shape.
using RealSgemm = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                     int, int, const float*, const float*, int, const float*,
                                     int, const float*, float*, int);
using RealDgemm = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                     int, int, const double*, const double*, int, const double*,
                                     int, const double*, double*, int);
static_assert(std::is_same<decltype(&cublasSgemm_v2), RealSgemm>::value, "cublasSgemm_v2");
static_assert(std::is_same<decltype(&cublasDgemm_v2), RealDgemm>::value, "cublasDgemm_v2");
static_assert(std::is_same<decltype(&cublasCreate_v2), cublasStatus_t (*)(cublasHandle_t*)>::value,
              "cublasCreate_v2");
static_assert(std::is_same<decltype(&cublasDestroy_v2), cublasStatus_t (*)(cublasHandle_t)>::value,
              "cublasDestroy_v2");
static_assert(std::is_same<decltype(&cublasSetStream_v2),
                           cublasStatus_t (*)(cublasHandle_t, cudaStream_t)>::value,
              "cublasSetStream_v2");
