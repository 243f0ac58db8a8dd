# RNNCORE_SANITIZE (e.g. "address,undefined"): builds with those sanitizers. The flags are usage
# requirements of rnncore::rnncore (PUBLIC, and exported with the installed package): a sanitized
# static library needs the sanitizer runtime in every program that links it, and the tests, the
# benchmarks and an outside project such as examples/ are then checked with the same flags.
# Undefined behaviour stops the program at its first report (-fno-sanitize-recover) instead of
# printing and going on, so a test under ctest fails on it.
set(RNNCORE_SANITIZE_FLAGS "")
if(RNNCORE_SANITIZE)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "RNNCORE_SANITIZE: needs GCC or Clang, got ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(RNNCORE_BUILD_PYTHON)
    message(WARNING "RNNCORE_SANITIZE with the Python module: Python then has to run with the "
                    "sanitizer runtime and libstdc++ preloaded, e.g. LD_PRELOAD=\"$(c++ "
                    "-print-file-name=libasan.so):$(c++ -print-file-name=libstdc++.so)\" (see "
                    "README.md, C++ tests)")
  endif()
  set(RNNCORE_SANITIZE_FLAGS -fsanitize=${RNNCORE_SANITIZE} -fno-sanitize-recover=all
      -fno-omit-frame-pointer)
  include(CheckCXXSourceCompiles)
  string(REPLACE ";" " " CMAKE_REQUIRED_FLAGS "${RNNCORE_SANITIZE_FLAGS}")
  set(CMAKE_REQUIRED_LINK_OPTIONS ${RNNCORE_SANITIZE_FLAGS})
  # The result is cached under a name of its own for each value of RNNCORE_SANITIZE.
  string(MAKE_C_IDENTIFIER "RNNCORE_SANITIZE_LINKS_${RNNCORE_SANITIZE}" _links)
  check_cxx_source_compiles("int main() { return 0; }" ${_links})
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NOT ${_links})
    message(FATAL_ERROR "RNNCORE_SANITIZE=${RNNCORE_SANITIZE}: the compiler cannot build and link a "
                        "program with ${CMAKE_REQUIRED_FLAGS} (an unknown sanitizer, or its "
                        "runtime, e.g. libasan / libubsan, not installed?)")
  endif()
  message(STATUS "rnncore: sanitizers ${CMAKE_REQUIRED_FLAGS}")
  unset(CMAKE_REQUIRED_FLAGS)
endif()
