// Test helper: an environment variable and OpenMP's thread count set for one scope (the
// library reads its RNNCORE_* settings once: the helper has it read them again).
#pragma once

#include <cstdlib>
#include <string>

#include "thread_policy.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rnncore_test {

// Sets `name` to `value` (nullptr: leaves it as it is) and the OpenMP threads to `threads`;
// the destructor unsets the variable (if it set it) and restores the thread count.
class ScopedSetting {
 public:
  ScopedSetting(const char* name, const char* value, int threads)
      : name_(name), set_(value != nullptr) {
    if (set_) setenv(name, value, 1);
    rnncore::detail::reload_thread_settings();
#ifdef _OPENMP
    before_ = omp_get_max_threads();
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
  }
  ~ScopedSetting() {
    if (set_) unsetenv(name_.c_str());
    rnncore::detail::reload_thread_settings();
#ifdef _OPENMP
    omp_set_num_threads(before_);
#endif
  }
  ScopedSetting(const ScopedSetting&) = delete;
  ScopedSetting& operator=(const ScopedSetting&) = delete;

 private:
  std::string name_;
  bool set_;
  int before_ = 1;
};

}  // namespace rnncore_test
