# Chooses RNNCORE_ARCH_FLAGS (see RNNCORE_ARCH in CMakeLists.txt).
set(RNNCORE_ARCH_FLAGS "")
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(_arch "${RNNCORE_ARCH}")
  if(_arch STREQUAL "auto")
    set(_arch "generic")
    if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64" AND NOT CMAKE_CROSSCOMPILING)
      include(CheckCXXSourceRuns)
      set(CMAKE_REQUIRED_FLAGS "-mavx2 -mfma")
      check_cxx_source_runs("
        int main() {
          __builtin_cpu_init();
          return (__builtin_cpu_supports(\"avx2\") && __builtin_cpu_supports(\"fma\")) ? 0 : 1;
        }" RNNCORE_HOST_HAS_AVX2_FMA)
      unset(CMAKE_REQUIRED_FLAGS)
      if(RNNCORE_HOST_HAS_AVX2_FMA)
        set(_arch "x86-64-v3")
      endif()
    endif()
  endif()
  if(_arch STREQUAL "x86-64-v3")
    set(RNNCORE_ARCH_FLAGS -mavx2 -mfma -mf16c -mbmi2)
  elseif(_arch STREQUAL "native")
    set(RNNCORE_ARCH_FLAGS -march=native)
  elseif(NOT _arch STREQUAL "generic")
    message(FATAL_ERROR "RNNCORE_ARCH: expected auto, generic, native or x86-64-v3, got ${_arch}")
  endif()
  message(STATUS "rnncore: RNNCORE_ARCH=${RNNCORE_ARCH} -> ${_arch} (${RNNCORE_ARCH_FLAGS})")
endif()
