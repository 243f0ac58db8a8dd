// The threading policy, in one place: the RNNCORE_* settings (read once), how many threads a
// product, a time loop, the two directions of a layer and a wavefront over layers get, the
// calling thread's cap, and the measured thread plan that times whole calls (thread_plan.cpp).
// The measurements behind each rule: bench/README.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "rnncore/config.h"
#include "rnncore/thread_plan.h"

namespace rnncore {
namespace detail {

// The environment variables that steer threads, read once, at the first call that asks. README
// ("Speed") documents those meant for users, bench/README.md the ones for measurements.
struct ThreadSettings {
  enum class TimeLoop { BySize, One, Units, Rows };
  TimeLoop time_loop = TimeLoop::BySize;  // RNNCORE_TIME_LOOP=one|units|rows (else by size)
  int wavefront = -1;          // RNNCORE_WAVEFRONT: 0 never, 1 wherever it can run, -1 by size
  bool split_forced = false;   // either of the two set (non-empty): an experiment asks for a split
  double l2_bytes = 0.0;       // RNNCORE_L2_BYTES when a positive number, else the system's L2
  bool parallel_pack = true;   // RNNCORE_PARALLEL_PACK=0: weights packed on the calling thread
  bool flush_denormals = true;  // RNNCORE_FLUSH_DENORMALS=0: the initial set_flush_denormals
  bool measured_plan = true;    // RNNCORE_THREAD_PLAN=fixed: the initial set_thread_plan
};
const ThreadSettings& thread_settings() noexcept;
// For tests, which change RNNCORE_* between calls: reads the environment again. Not while a
// kernel runs. (The flush and plan modes have their setters and are not re-read.)
void reload_thread_settings() noexcept;

// A cap on the threads of the calls the current thread makes (0: none). The measured thread
// plan sets it to 1 around a call it runs on one thread.
inline int& thread_cap() noexcept {
  thread_local int cap = 0;
  return cap;
}

// Multiply-add work of one direction of one layer's forward pass.
inline double layer_flops(const ModelConfig& config, int64_t layer, int64_t steps,
                          int64_t batch) noexcept {
  return 2.0 * static_cast<double>(steps) * static_cast<double>(batch) * config.gates() *
         static_cast<double>(config.hidden_size) *
         static_cast<double>(config.layer_input_size(layer) + config.hidden_size);
}

// The two directions of a bidirectional layer run on two threads from this much work per
// direction: waking a second thread costs microseconds (far more on a loaded machine).
constexpr double kMinParallelFlops = 4.0e6;

// Threads for a product of `flops` that splits into at most `parts` shares.
int product_threads(double flops, double parts) noexcept;

// Threads that pack `bytes` of weight panels, at most `panels`.
int pack_threads(std::size_t bytes, int64_t panels) noexcept;

// How a time loop's threads share its steps. By units: every thread takes all N sequences and a
// slice of the hidden units, and the threads meet at a barrier every step, since the next
// product reads every unit. By rows: every thread takes a slice of the N sequences and all the
// units; sequences never read each other's state, so the threads never wait for each other.
struct TimeLoopSplit {
  int threads = 1;
  bool by_rows = false;
};
// The split of a time loop of T steps, N sequences, H units in `slots` SIMD packets and `gates`
// gates per unit, in scalars of `scalar_bytes` (`forcible`: whether RNNCORE_TIME_LOOP applies).
TimeLoopSplit plan_time_loop(int64_t gates, int64_t H, int64_t N, int64_t T, int64_t slots,
                             std::size_t scalar_bytes, bool forcible = true) noexcept;

// Wavefront over stacked layers: layer k on thread k % threads, `chunks` chunks of steps
// pipelined from layer to layer. Only for unidirectional stacks: a reverse direction needs the
// whole sequence of the layer below before its first step.
struct WavefrontPlan {
  int threads = 1;     // 1: run the layers one after the other
  int64_t chunks = 0;  // of about equal steps
};
// `slots`, `scalar_bytes`: as for plan_time_loop, for the hidden size.
WavefrontPlan plan_wavefront(const ModelConfig& config, int64_t steps, int64_t batch,
                             int64_t slots, std::size_t scalar_bytes) noexcept;

// Checked queries of the two plans above for a call of this shape (sequence.cpp), for tests
// and benchmarks (bound in Python as _core.wavefront_threads and _core.time_loop_split).
// Throw std::invalid_argument / std::length_error like sequence_forward for bad sizes.
template <typename S>
int wavefront_threads(const ModelConfig& config, int64_t steps, int64_t batch);
template <typename S>
TimeLoopSplit time_loop_split(const ModelConfig& config, int64_t steps, int64_t batch);

// The size of one core's L2 cache in bytes, which the split by sequences is weighed against (a
// thread that takes whole sequences reads all of W_hh every step): RNNCORE_L2_BYTES, else what
// the system reports (sysconf), else 1 MiB.
double l2_cache_bytes() noexcept;

// The choice for one kind of call between its team of threads and the calling thread alone,
// from the times reported to it (bench/README.md, "The measured thread plan", says why). Not
// thread-safe: the caller serialises next() and record().
class TeamOrAlone {
 public:
  enum Option { Team = 0, Alone = 1 };
  // Recent samples kept per option. An option's estimate is the mean of all but the largest of
  // them (of the smallest, with fewer than 3): a one-off delay does not condemn an option, while
  // a second core busy half of the time shows in the mean.
  static constexpr int kSamples = 4;
  // The team must be this much faster than one thread to be used.
  static constexpr double kTeamMargin = 1.05;
  // Samples of each option before the first choice; one each where one option already takes
  // kClearlySlower times the other's (every sample of a team on a busy core is expensive).
  static constexpr int kFirstSamples = 2;
  static constexpr double kClearlySlower = 1.5;
  // Calls on one thread between two probes of the team, doubling with every probe. A probe of
  // the team is one untimed call that wakes its threads, then one to kSamples - 1 timed calls.
  static constexpr int kFirstProbeInterval = 8;
  static constexpr int kMaxProbeInterval = 256;
  // Calls of the team between two runs on one thread (whose time hardly depends on the other
  // core, so it is only refreshed now and then).
  static constexpr int kTeamProbeInterval = 256;
  // A probe waits until the time spent on the chosen option since the last probe is
  // 1 / kProbeShare times the probe's expected extra cost, but at most kMaxCostProbeInterval
  // calls.
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

enum class PassKind { Inference = 0, TrainingForward = 1, Backward = 2 };

// Times one whole-sequence call where the measured plan applies, for as long as it lives: the
// constructor picks team or alone (capping the calling thread to 1 for alone), the destructor
// reports the time and lifts the cap. A call left by an exception is not reported. Calls under
// 2 MFLOP, inside an OpenMP team, on one thread or with a forced split are not measured.
class MeasuredCall {
 public:
  MeasuredCall(PassKind pass, const ModelConfig& config, int scalar_bytes, int64_t steps,
               int64_t batch, bool lengths);
  ~MeasuredCall();
  MeasuredCall(const MeasuredCall&) = delete;
  MeasuredCall& operator=(const MeasuredCall&) = delete;

 private:
  void report() noexcept;

  TeamOrAlone* entry_ = nullptr;  // the registry's entry; nullptr: not measured
  uint64_t generation_ = 0;       // the registry's generation when entry_ was taken
  TeamOrAlone::Option option_ = TeamOrAlone::Team;
  int64_t steps_ = 0;
  int saved_cap_ = 0;
  int exceptions_ = 0;  // std::uncaught_exceptions() when the call started
  std::chrono::steady_clock::time_point start_;
};

}  // namespace detail
}  // namespace rnncore
