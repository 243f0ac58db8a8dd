// Thread helpers shared by the kernels. OpenMP is optional: without it everything runs serially.
#pragma once

#include <exception>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rnncore {

// Whether the caller already runs inside an active OpenMP team (then kernels stay serial).
inline bool in_parallel() noexcept {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

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


// Threads for a time loop whose steps each do `step_flops` of recurrent product split into
// `parts` independent column chunks. Every step ends in a barrier (the next step reads the whole
// state), which costs about a microsecond when both cores are free and much more when another
// process holds one, so a thread is only added per kMinStepFlopsPerThread of work per step
// (about 10 us on one core of this machine).
constexpr double kMinStepFlopsPerThread = 0.25e6;

inline int time_loop_threads(double step_flops, long long parts) noexcept {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
  long long n = static_cast<long long>(step_flops / kMinStepFlopsPerThread);
  n = n < parts ? n : parts;
  const long long cap = omp_get_max_threads();
  n = n < cap ? n : cap;
  return n < 1 ? 1 : static_cast<int>(n);
#else
  (void)step_flops;
  (void)parts;
  return 1;
#endif
}

// Runs fn(thread, threads) on `threads` threads (inline when 1). fn may use team_barrier().
// fn must not throw: a barrier cannot be left early, so exceptions are not supported here.
template <typename Fn>
void parallel_team(int threads, Fn&& fn) noexcept {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    fn(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  (void)threads;
  fn(0, 1);
}

// Waits for the team of parallel_team (a no-op with one thread).
inline void team_barrier(int threads) noexcept {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp barrier
  }
#else
  (void)threads;
#endif
}

}  // namespace rnncore
