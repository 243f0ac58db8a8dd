// parallel.h moved out of the public headers (it is internal); stream.cpp, being changed on
// another branch, still includes it under its old name. Once that include reads "parallel.h",
// this file and its include directory (CMakeLists.txt) go.
#pragma once
#include "../../parallel.h"
