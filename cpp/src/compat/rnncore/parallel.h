// parallel.h moved out of the public headers (it is internal); stream.cpp and
// tests/cpp/test_stream.cpp, changed on the stream branch, still include it under its old name.
// Once those includes read "parallel.h", this file and its include directories go
// (CMakeLists.txt, tests/cpp/CMakeLists.txt).
#pragma once
#include "../../parallel.h"
