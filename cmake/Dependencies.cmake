# Eigen 3.4: a system copy when CMake finds one, else the cmeel-eigen wheel that pyproject.toml
# lists as a build requirement (pip installs it into the isolated build environment).
find_package(Eigen3 3.4 CONFIG QUIET)
if(NOT Eigen3_FOUND)
  find_package(Python QUIET COMPONENTS Interpreter)
  if(Python_EXECUTABLE)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c
              "import os, sys; print(';'.join(os.path.join(p, 'cmeel.prefix') for p in sys.path if os.path.isdir(os.path.join(p, 'cmeel.prefix'))))"
      OUTPUT_VARIABLE _rnncore_cmeel_prefixes OUTPUT_STRIP_TRAILING_WHITESPACE)
    list(APPEND CMAKE_PREFIX_PATH ${_rnncore_cmeel_prefixes})
  endif()
  find_package(Eigen3 3.4 CONFIG REQUIRED)
endif()
message(STATUS "rnncore: Eigen ${Eigen3_VERSION} from ${Eigen3_DIR}")

if(RNNCORE_OPENMP)
  find_package(OpenMP COMPONENTS CXX)
  if(NOT OpenMP_CXX_FOUND)
    message(WARNING "rnncore: OpenMP not found; kernels will run on one thread")
  endif()
endif()
