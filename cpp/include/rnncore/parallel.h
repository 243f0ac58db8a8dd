// Thread helpers shared by the kernels. OpenMP is optional: without it everything runs serially.
#pragma once

#include <exception>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rnncore {

inline int max_threads() noexcept {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Runs fn(0) .. fn(directions - 1). The two directions of a bidirectional layer are independent,
// so they run on two threads when there are two; Eigen then keeps each GEMM on its own thread
// (it does not nest inside an active parallel region). An exception thrown by fn is rethrown
// here rather than escaping the parallel region, which would terminate the process.
// `flops` is the work of one direction: waking a second thread costs microseconds (far more on a
// loaded machine), so small layers stay on the calling thread.
constexpr double kMinParallelFlops = 4.0e6;

template <typename Fn>
void parallel_directions(int directions, double flops, Fn&& fn) {
#ifdef _OPENMP
  if (directions > 1 && flops >= kMinParallelFlops && omp_get_max_threads() > 1 &&
      !omp_in_parallel()) {
    std::exception_ptr failures[2] = {nullptr, nullptr};
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int d = 0; d < directions; ++d) {
      try {
        fn(d);
      } catch (...) {
        failures[d] = std::current_exception();
      }
    }
    for (auto& failure : failures) {
      if (failure) std::rethrow_exception(failure);
    }
    return;
  }
#endif
  for (int d = 0; d < directions; ++d) fn(d);
}

}  // namespace rnncore
