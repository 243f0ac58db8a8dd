# Chooses RNNCORE_ARCH_FLAGS (see RNNCORE_ARCH in CMakeLists.txt).
#
# Measured on this project's AMD EPYC (Zen 5, g++ 12, Eigen 3.4, one core, float32 GEMM
# 3200x1024x256): baseline SSE2 ~46 GFLOP/s, -mavx2 -mfma ~112, AVX-512 (F/BW/VL/DQ/CD) ~190-200,
# -march=native ~120-130 (2 threads: AVX2 ~190, AVX-512 ~270-330). On this Zen 5 part AVX-512
# runs at full width, so it is the default where the building CPU has it.
# -march=native tunes for znver3 in g++ 12 and costs Eigen's GEMM 1.3-1.6x, so the ISA flags are
# given one by one with generic tuning. "auto" picks the widest level the *building* CPU runs;
# "generic" (or a CPU without AVX2) gives the baseline x86-64 build that runs anywhere.
set(RNNCORE_ARCH_FLAGS "")
set(_rnncore_flags_x86_64_v3 -mavx2 -mfma -mf16c -mbmi2)
set(_rnncore_flags_x86_64_v4 ${_rnncore_flags_x86_64_v3} -mavx512f -mavx512bw -mavx512vl
    -mavx512dq -mavx512cd)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(_arch "${RNNCORE_ARCH}")
  if(_arch STREQUAL "auto")
    set(_arch "generic")
    if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64" AND NOT CMAKE_CROSSCOMPILING)
      include(CheckCXXSourceRuns)
      # Each check compiles with the flags (so the compiler must know them) and runs on the
      # building CPU (so it must execute them).
      string(REPLACE ";" " " CMAKE_REQUIRED_FLAGS "${_rnncore_flags_x86_64_v4}")
      check_cxx_source_runs("
        int main() {
          __builtin_cpu_init();
          return (__builtin_cpu_supports(\"avx512f\") && __builtin_cpu_supports(\"avx512bw\") &&
                  __builtin_cpu_supports(\"avx512vl\") && __builtin_cpu_supports(\"avx512dq\") &&
                  __builtin_cpu_supports(\"avx512cd\") && __builtin_cpu_supports(\"avx2\") &&
                  __builtin_cpu_supports(\"fma\")) ? 0 : 1;
        }" RNNCORE_HOST_HAS_AVX512)
      string(REPLACE ";" " " CMAKE_REQUIRED_FLAGS "${_rnncore_flags_x86_64_v3}")
      check_cxx_source_runs("
        int main() {
          __builtin_cpu_init();
          return (__builtin_cpu_supports(\"avx2\") && __builtin_cpu_supports(\"fma\")) ? 0 : 1;
        }" RNNCORE_HOST_HAS_AVX2_FMA)
      unset(CMAKE_REQUIRED_FLAGS)
      if(RNNCORE_HOST_HAS_AVX512)
        set(_arch "x86-64-v4")
      elseif(RNNCORE_HOST_HAS_AVX2_FMA)
        set(_arch "x86-64-v3")
      endif()
    endif()
  endif()
  if(_arch STREQUAL "x86-64-v4")
    set(RNNCORE_ARCH_FLAGS ${_rnncore_flags_x86_64_v4})
  elseif(_arch STREQUAL "x86-64-v3")
    set(RNNCORE_ARCH_FLAGS ${_rnncore_flags_x86_64_v3})
  elseif(_arch STREQUAL "native")
    set(RNNCORE_ARCH_FLAGS -march=native)
  elseif(NOT _arch STREQUAL "generic")
    message(FATAL_ERROR
      "RNNCORE_ARCH: expected auto, generic, native, x86-64-v3 or x86-64-v4, got ${_arch}")
  endif()
  # Results must not depend on where an array happens to be aligned: Eigen runs the elements
  # before the first aligned one through scalar code, and a compiler free to contract a*b+c into
  # an FMA there would round them differently from the packet code (explicit FMAs in the GEMM
  # kernels are unaffected).
  list(APPEND RNNCORE_ARCH_FLAGS -ffp-contract=off)
  message(STATUS "rnncore: RNNCORE_ARCH=${RNNCORE_ARCH} -> ${_arch} (${RNNCORE_ARCH_FLAGS})")
endif()
