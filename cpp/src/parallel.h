// The mechanics of the kernels' threads (how many: thread_policy.h): a team, the two directions
// of a layer, a step barrier, subnormal flushing on every thread. OpenMP is optional: without
// it everything runs serially.
#pragma once

#include <atomic>
#include <exception>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64) || defined(__SSE__)
#include <xmmintrin.h>
#define RNNCORE_HAS_MXCSR 1
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rnncore/thread_plan.h"
#include "thread_policy.h"

namespace rnncore {

// Whether the caller already runs inside an active OpenMP team (then kernels stay serial).
inline bool in_parallel() noexcept {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

// Flushes subnormals on the current thread for its lifetime (when flush_denormals()), then puts
// the thread's previous floating-point control state back. A team's worker threads take a
// second form: a thread inherits the control state of the thread that created it, so a pool
// thread started during a flushing call would otherwise flush for good. A worker runs the
// region with the caller's pre-call state (flushing added when flush_denormals()) and is left
// with the caller's pre-call flush bits.
class FlushDenormals {
 public:
  // worker_of: nullptr on the thread that calls a kernel; on a team's worker thread, the
  // caller_state() read on the thread that started the team.
  explicit FlushDenormals(const unsigned* worker_of = nullptr) noexcept {
#ifdef RNNCORE_HAS_MXCSR
    saved_ = _mm_getcsr();
    if (depth()++ == 0) outer() = saved_;
    after_ = worker_of == nullptr ? saved_ : (saved_ & ~kBits) | (*worker_of & kBits);
    _mm_setcsr(flush_denormals() ? (after_ | kBits) : after_);
#else
    (void)worker_of;
#endif
  }
  ~FlushDenormals() {
#ifdef RNNCORE_HAS_MXCSR
    --depth();
    _mm_setcsr(after_);
#endif
  }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

  // The current thread's control state before the outermost FlushDenormals alive on it.
  static unsigned caller_state() noexcept {
#ifdef RNNCORE_HAS_MXCSR
    return depth() > 0 ? outer() : _mm_getcsr();
#else
    return 0;
#endif
  }

 private:
  static constexpr unsigned kBits = 0x8040;  // flush to zero (bit 15), denormals are zero (bit 6)
  static int& depth() noexcept {
    thread_local int d = 0;
    return d;
  }
  static unsigned& outer() noexcept {
    thread_local unsigned state = 0;
    return state;
  }
  unsigned saved_ = 0, after_ = 0;
};

// Runs fn(0) .. fn(directions - 1). The two directions of a bidirectional layer are independent,
// so they run on two threads when there are two; Eigen then keeps each GEMM on its own thread
// (it does not nest inside an active parallel region). An exception thrown by fn is rethrown
// here rather than escaping the parallel region, which would terminate the process.
// `flops` is the work of one direction (from detail::kMinParallelFlops on two threads).

template <typename Fn>
void parallel_directions(int directions, double flops, Fn&& fn) {
#ifdef _OPENMP
  if (directions > 1 && flops >= detail::kMinParallelFlops && max_threads() > 1 &&
      !omp_in_parallel()) {
    std::exception_ptr failures[2] = {nullptr, nullptr};
    const unsigned caller = FlushDenormals::caller_state();
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int d = 0; d < directions; ++d) {
      try {
        FlushDenormals flush(omp_get_thread_num() == 0 ? nullptr : &caller);
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


namespace detail {
// Pauses a waiter spins through before it starts yielding the CPU: some tens of microseconds,
// longer than the imbalance of a step between two threads that each have a core, far shorter
// than a scheduler time slice.
constexpr int kSpinsBeforeYield = 2000;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}
}  // namespace detail

// Waits until ready() is true: kSpinsBeforeYield pauses, then yielding the CPU between checks,
// for the reasons StepBarrier gives below.
template <typename Ready>
void spin_until(Ready&& ready) noexcept {
  for (int spin = 0; !ready(); ++spin) {
    if (spin < detail::kSpinsBeforeYield) {
      detail::cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

// The per-step barrier of a time loop run by parallel_team: a sense-reversing counter barrier
// that spins briefly and then yields the CPU. Not `#pragma omp barrier`: libgomp's waiters spin
// for milliseconds, which stalls the team whenever both threads share one CPU
// (bench/README.md, "Why the time loop has its own barrier").
class StepBarrier {
 public:
  explicit StepBarrier(int threads) noexcept : threads_(threads) {}
  // Only while no thread is waiting.
  void reset(int threads) noexcept { threads_ = threads; }
  StepBarrier(const StepBarrier&) = delete;
  StepBarrier& operator=(const StepBarrier&) = delete;

  // Every thread of the team calls wait() once per step; no thread passes before all arrive,
  // and each one's writes before wait() are visible to all after it.
  void wait() noexcept {
    if (threads_ <= 1) return;
    const unsigned generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == threads_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(generation + 1, std::memory_order_release);
      return;
    }
    spin_until([&] { return generation_.load(std::memory_order_acquire) != generation; });
  }

 private:
  int threads_;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
};

// Runs fn(thread, team, barrier) on `threads` threads (inline when 1), where team is the number
// of threads OpenMP actually gave (it may give fewer) and barrier a StepBarrier for all of them.
// With more than one thread fn must not throw (a barrier cannot be left early, and an exception
// leaving an OpenMP region terminates the process); inline, an exception reaches the caller.
template <typename Fn>
void parallel_team(int threads, Fn&& fn) {
#ifdef _OPENMP
  if (threads > 1) {
    StepBarrier barrier(1);
    const unsigned caller = FlushDenormals::caller_state();
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
      barrier.reset(omp_get_num_threads());
      // (the implicit barrier after `single` publishes the team size to every thread)
      FlushDenormals flush(omp_get_thread_num() == 0 ? nullptr : &caller);
      fn(omp_get_thread_num(), omp_get_num_threads(), barrier);
    }
    return;
  }
#endif
  (void)threads;
  StepBarrier alone(1);
  fn(0, 1, alone);
}

}  // namespace rnncore
