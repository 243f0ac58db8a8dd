# RNNCORE_CUDA=ON: compiles cpp/cuda/ into librnncore (rnncore_kernels) for sm_80 and sm_90 plus
# PTX (CMAKE_CUDA_ARCHITECTURES overrides), links the CUDA runtime statically and defines
# RNNCORE_WITH_CUDA for everything that links the library. cuBLAS is loaded at run time (see
# cpp/cuda/cublas_loader.h), so a toolkit without cuBLAS builds it too; where a cublas_v2.h is
# found (the toolkit's, or RNNCORE_CUBLAS_INCLUDE_DIR, e.g. the nvidia-cublas wheel's
# nvidia/cu13/include), the loader's declarations are checked against it at compile time.
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR
    "RNNCORE_CUDA=ON needs the CUDA compiler nvcc, and CMake found none. Put nvcc on PATH (it is "
    "usually /usr/local/cuda/bin/nvcc) or pass -DCMAKE_CUDA_COMPILER=/path/to/nvcc, or build "
    "without CUDA (RNNCORE_CUDA=OFF, the default).")
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80-real 90-real 90-virtual)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

# An object library, so that g++'s -march flags (RNNCORE_ARCH_FLAGS) never reach nvcc, and the
# objects still end up in librnncore.a.
add_library(rnncore_cuda OBJECT
  cpp/cuda/context.cu
  cpp/cuda/sequence.cu
  cpp/cuda/stream.cu
  cpp/cuda/cublas_loader.cpp)
target_include_directories(rnncore_cuda PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cpp/include)
target_link_libraries(rnncore_cuda PRIVATE Eigen3::Eigen CUDA::cudart_static)
# Eigen (included through sequence.h, host code only) must not declare device functions.
target_compile_definitions(rnncore_cuda PRIVATE RNNCORE_WITH_CUDA EIGEN_NO_CUDA)
target_compile_options(rnncore_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --Werror=all-warnings>)
set_target_properties(rnncore_cuda PROPERTIES POSITION_INDEPENDENT_CODE ON)

target_sources(rnncore_kernels PRIVATE $<TARGET_OBJECTS:rnncore_cuda>)
target_compile_definitions(rnncore_kernels PUBLIC RNNCORE_WITH_CUDA)
# The installed package of a CUDA build leaves linking the CUDA runtime to its user.
target_link_libraries(rnncore_kernels PUBLIC $<BUILD_INTERFACE:CUDA::cudart_static> ${CMAKE_DL_LIBS})

find_path(RNNCORE_CUBLAS_INCLUDE_DIR cublas_v2.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
if(RNNCORE_CUBLAS_INCLUDE_DIR)
  add_library(rnncore_cublas_abi_check OBJECT cpp/cuda/cublas_abi_check.cpp)
  target_include_directories(rnncore_cublas_abi_check PRIVATE ${RNNCORE_CUBLAS_INCLUDE_DIR})
  target_link_libraries(rnncore_cublas_abi_check PRIVATE CUDA::cudart_static)
  message(STATUS "rnncore CUDA: checking the cuBLAS declarations against ${RNNCORE_CUBLAS_INCLUDE_DIR}")
else()
  message(STATUS "rnncore CUDA: no cublas_v2.h found; the cuBLAS declarations go unchecked "
                 "(set RNNCORE_CUBLAS_INCLUDE_DIR)")
endif()
message(STATUS "rnncore CUDA: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

# bench/cuda_compare.py's timer for the rnncore side (built on request: it needs a GPU to run).
add_executable(rnncore_cuda_bench EXCLUDE_FROM_ALL bench/cuda_bench.cpp)
target_link_libraries(rnncore_cuda_bench PRIVATE rnncore_kernels CUDA::cudart_static)
