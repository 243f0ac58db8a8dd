# Eigen 3.4: a system copy when CMake finds one (Debian: libeigen3-dev; or any prefix on
# CMAKE_PREFIX_PATH), else the cmeel-eigen wheel in the Python that CMake finds (pyproject.toml
# lists it as a build requirement, so pip installs it into the isolated build environment).
find_package(Eigen3 3.4 CONFIG QUIET)
if(NOT Eigen3_FOUND)
  find_package(Python QUIET COMPONENTS Interpreter)
  set(_rnncore_cmeel_prefixes "")
  if(Python_EXECUTABLE)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c
              "import os, sys; print(';'.join(os.path.join(p, 'cmeel.prefix') for p in sys.path if os.path.isdir(os.path.join(p, 'cmeel.prefix'))))"
      OUTPUT_VARIABLE _rnncore_cmeel_prefixes OUTPUT_STRIP_TRAILING_WHITESPACE)
    list(APPEND CMAKE_PREFIX_PATH ${_rnncore_cmeel_prefixes})
  endif()
  find_package(Eigen3 3.4 CONFIG QUIET)
  if(NOT Eigen3_FOUND)
    if(Python_EXECUTABLE)
      string(CONCAT _rnncore_searched "CMAKE_PREFIX_PATH, the system, and the cmeel-eigen "
                    "wheel in ${Python_EXECUTABLE} (not installed there)")
    else()
      string(CONCAT _rnncore_searched "CMAKE_PREFIX_PATH and the system (no Python found to "
                    "look for the cmeel-eigen wheel in)")
    endif()
    message(FATAL_ERROR
      "rnncore needs Eigen 3.4 (headers and its CMake package, Eigen3Config.cmake); searched "
      "${_rnncore_searched}. Either\n"
      "  apt-get install libeigen3-dev     (Debian / Ubuntu; found with no option)\n"
      "or\n"
      "  python -m pip install cmeel-eigen\n"
      "  cmake ... -DCMAKE_PREFIX_PATH=\"$(python -m cmeel cmake)\"\n"
      "(or -DPython_EXECUTABLE=/path/to/that/python, whose cmeel-eigen is then found by itself), "
      "or -DEigen3_DIR=/path/to/share/eigen3/cmake for an Eigen 3.4 anywhere else.")
  endif()
endif()
message(STATUS "rnncore: Eigen ${Eigen3_VERSION} from ${Eigen3_DIR}")

if(RNNCORE_OPENMP)
  find_package(OpenMP COMPONENTS CXX)
  if(NOT OpenMP_CXX_FOUND)
    message(WARNING "rnncore: OpenMP not found; kernels will run on one thread")
  endif()
endif()
