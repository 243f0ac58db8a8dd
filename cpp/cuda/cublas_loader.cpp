#include "cublas_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace rnncore {
namespace cuda {
namespace blas {

namespace {

template <typename F>
void resolve(void* lib, const char* name, F& fn, const std::string& path) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (fn == nullptr) throw std::runtime_error("cuBLAS (" + path + ") has no symbol " + name);
}

Api load() {
  std::vector<std::string> names;
  if (const char* env = std::getenv("RNNCORE_CUBLAS_LIBRARY"); env != nullptr && *env != '\0') {
    names.emplace_back(env);
  }
  names.emplace_back("libcublas.so.13");
  names.emplace_back("libcublas.so");
  std::string tried;
  for (const std::string& name : names) {
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* err = dlerror();
      tried += "\n  " + name + ": " + (err != nullptr ? err : "not found");
      continue;
    }
    Api a;
    a.library = name;
    resolve(lib, "cublasCreate_v2", a.create, name);
    resolve(lib, "cublasDestroy_v2", a.destroy, name);
    resolve(lib, "cublasSetStream_v2", a.set_stream, name);
    resolve(lib, "cublasSgemm_v2", a.sgemm, name);
    resolve(lib, "cublasDgemm_v2", a.dgemm, name);
    return a;  // the library stays loaded for the life of the process
  }
  throw std::runtime_error(
      "rnncore CUDA: cannot load cuBLAS; set RNNCORE_CUBLAS_LIBRARY to libcublas.so.13's path "
      "(a CUDA toolkit's lib64, or the nvidia-cublas wheel's nvidia/cu13/lib). Tried:" + tried);
}

}  // namespace

const Api& api() {
  static std::once_flag once;
  static Api loaded;
  static std::string error;
  std::call_once(once, [] {
    try {
      loaded = load();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  if (!error.empty()) throw std::runtime_error(error);
  return loaded;
}

}  // namespace blas
}  // namespace cuda
}  // namespace rnncore
