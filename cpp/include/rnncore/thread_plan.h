// The measured thread plan: whether a whole-sequence call gets its threads, decided by timing.
//
// Why: the size rules that split a call across threads (sequence.cpp) assume that every core
// they use is free. On a shared machine it is not always so: on this project's 2-vCPU VM there
// are stretches of tens of seconds in which any call that wakes the second vCPU runs at
// 0.5-0.9x of one thread, whatever the split, while the same calls run 1.2-1.8x faster than one
// thread the rest of the time (bench/README.md, "The measured thread plan"). No rule on sizes
// can tell the two apart; the call's own time can.
//
// So, by default, sequence_forward and sequence_backward time themselves. Per kind of call
// (pass, cell, scalar, sizes, batch, steps within a factor of two, lengths or not, threads) a
// TeamOrAlone below keeps the recent times per step of the call run with its threads ("team")
// and on the calling thread alone, runs each a few times first, then the faster (the team only
// where it is >= 5% faster), and now and then the other again, to notice when the machine has
// changed.
// Every split gives the same bits (sequence.h), so the choice changes only the time.
//
// Calls too small to get a second thread by size (< 2 MFLOP) run as planned without timing; so
// do calls inside an OpenMP team, with one thread, or with RNNCORE_TIME_LOOP / RNNCORE_WAVEFRONT
// set (experiments that ask for a split). Once a choice is made, probes of the other option
// cost ~3% of the time or less (TeamOrAlone::kProbeShare). RNNCORE_THREAD_PLAN=fixed (or
// set_thread_plan) turns the measuring off: every call then takes the threads the size rules
// give it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rnncore/cell.h"

namespace rnncore {

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
  double team_seconds_per_step = 0.0;    // TeamOrAlone::estimate of each (0: not timed yet)
  double alone_seconds_per_step = 0.0;
};
// Every kind of call timed so far, and forgetting them (the next calls measure afresh).
std::vector<ThreadPlanEntry> thread_plan_report();
void reset_thread_plan() noexcept;

namespace detail {

// The choice for one kind of call, from the times reported to it. Not thread-safe: the caller
// serialises next() and record().
class TeamOrAlone {
 public:
  enum Option { Team = 0, Alone = 1 };
  // Recent samples kept per option. An option's estimate is the mean of all but the largest of
  // them (of the smallest, with fewer than 3): a one-off delay (a page fault, a wake-up) does
  // not condemn an option, while a second core that is busy half of the time, making every
  // other call of the team slow, shows in the mean. The smallest alone would favour the team
  // exactly then: its fast calls are as fast as ever.
  static constexpr int kSamples = 4;
  // The team must be this much faster than one thread to be used.
  static constexpr double kTeamMargin = 1.05;
  // Samples of each option before the first choice; one each where one option already takes
  // kClearlySlower times the other's (a second core busy elsewhere can make the team 10-50x
  // slower than one thread: every sample of it is expensive).
  static constexpr int kFirstSamples = 2;
  static constexpr double kClearlySlower = 1.5;
  // Calls on one thread between two probes of the team, doubling from the first to the last
  // with every probe: a second core that was busy is found free again soon at first, and
  // probing costs little once settled. A probe of the team is a call that wakes its threads (not
  // timed: waking them after calls on one thread can cost more than the call) and then one to
  // kSamples - 1 timed calls.
  static constexpr int kFirstProbeInterval = 8;
  static constexpr int kMaxProbeInterval = 256;
  // Calls of the team between two runs on one thread. The team's own times show when its
  // second core gets busy; the time on one thread hardly depends on the other core, so it is
  // only refreshed now and then (a wrong switch to one thread that a stale time would cause is
  // undone by the first probe of the team).
  static constexpr int kTeamProbeInterval = 256;
  // Whatever the interval above, a probe waits until the time spent on the chosen option since
  // the last probe is 1 / kProbeShare times what the probe is expected to cost extra (judged
  // from >= 2 samples of the other option), but never more than kMaxCostProbeInterval calls:
  // a team 2x slower than one thread is probed every ~70 calls, so that the end of a busy
  // stretch is found within a few hundred calls.
  static constexpr double kProbeShare = 0.03;
  static constexpr int kMaxCostProbeInterval = 1024;

  // The option to run next. The first call runs the team and is not counted (it pays for first
  // touches of memory); then one thread and the team alternate until each has kFirstSamples.
  Option next() const noexcept;
  // The time per step of a call run with `option`.
  void record(Option option, double seconds_per_step) noexcept;

  bool decided() const noexcept { return decided_; }
  Option choice() const noexcept { return choice_; }
  // The estimate of the time per step from the option's recent samples, 0 when it has none.
  double estimate(Option option) const noexcept;
  int64_t calls() const noexcept { return calls_; }
  int64_t alone_calls() const noexcept { return alone_calls_; }

 private:
  Option better() const noexcept;
  // Calls of the chosen option before the next probe of the other.
  double probe_interval() const noexcept;

  double samples_[2][kSamples] = {};
  int count_[2] = {0, 0};  // samples recorded (the ring holds the last kSamples)
  int64_t calls_ = 0, alone_calls_ = 0;
  bool decided_ = false;
  Option choice_ = Team;
  int since_probe_ = 0, probe_interval_ = kFirstProbeInterval;
  int probe_run_ = 0;  // probe samples taken in a row so far, while they look promising
  bool probe_warmed_ = false;  // a probe of the team has run its waking call
};

}  // namespace detail
}  // namespace rnncore
