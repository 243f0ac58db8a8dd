// Threads: how many a call may use, the measured thread plan (whether a whole-sequence call
// gets its threads, decided by timing it) and flushing subnormal floats.
//
// By default sequence_forward and sequence_backward time themselves: per kind of call (pass,
// cell, scalar, sizes, batch, steps within a factor of two, lengths or not, threads) they keep
// the recent times per step with the call's threads and on the calling thread alone, and run the
// faster (the team only where it is >= 5% faster), probing the other now and then. On a shared
// machine a second core is not always free; no rule on sizes can tell, the call's own time can
// (bench/README.md, "The measured thread plan"). Every split gives the same bits, so the choice
// changes only the time. Calls under 2 MFLOP, inside an OpenMP team, on one thread, or with
// RNNCORE_TIME_LOOP / RNNCORE_WAVEFRONT set run as planned by size without timing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rnncore/config.h"

namespace rnncore {

// The threads a kernel called from this thread may use: OpenMP's (omp_set_num_threads), or 1
// inside a measured call that the plan runs on one thread; 1 without OpenMP.
int max_threads() noexcept;

// Subnormal floats cost x86 cores ~100 cycles per operation (an RNN's BPTT with a small W_hh ran
// 8x slower), so while the kernels run, each of their threads flushes subnormal results to zero
// and reads subnormal inputs as zero (MXCSR's FTZ and DAZ, restored afterwards), as TensorFlow
// does by default. On unless RNNCORE_FLUSH_DENORMALS=0; no effect on other CPUs than x86.
void set_flush_denormals(bool flush) noexcept;
bool flush_denormals() noexcept;

enum class ThreadPlan { Measured, Fixed };

// The mode for calls from now on. Initially Measured unless RNNCORE_THREAD_PLAN=fixed.
void set_thread_plan(ThreadPlan plan) noexcept;
ThreadPlan thread_plan() noexcept;

// What the measured plan has learned about one kind of call.
struct ThreadPlanEntry {
  std::string pass;  // "inference", "training forward" or "backward"
  CellKind cell = CellKind::Lstm;
  int scalar_bytes = 4;
  int64_t input_size = 0, hidden_size = 0, num_layers = 0;
  bool bidirectional = false, lengths = false;
  int64_t batch = 0;
  int64_t steps_from = 0, steps_to = 0;  // calls of steps_from..steps_to steps share the entry
  int threads = 0;                       // the threads the call may use ("team")
  int64_t calls = 0, alone_calls = 0;    // calls timed, and how many ran on one thread
  bool decided = false, team = true;     // the current choice (once both have been timed)
  double team_seconds_per_step = 0.0;    // estimated time per step (0: not timed yet)
  double alone_seconds_per_step = 0.0;
};
// Every kind of call timed so far, and forgetting them (the next calls measure afresh).
std::vector<ThreadPlanEntry> thread_plan_report();
void reset_thread_plan() noexcept;

}  // namespace rnncore
