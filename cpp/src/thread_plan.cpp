// The measured thread plan (rnncore/thread_plan.h): TeamOrAlone's choice per kind of call and
// the registry of kinds that MeasuredCall consults (thread_policy.h).
#include "rnncore/thread_plan.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <tuple>

#include "parallel.h"
#include "thread_policy.h"

namespace rnncore {
namespace detail {

TeamOrAlone::Option TeamOrAlone::next() const noexcept {
  if (calls_ == 0) return Team;  // the warm-up call
  if (!decided_) return count_[Alone] <= count_[Team] ? Alone : Team;
  const Option other = choice_ == Team ? Alone : Team;
  if (probe_warmed_ || probe_run_ > 0 || since_probe_ >= probe_interval()) return other;
  return choice_;
}

double TeamOrAlone::probe_interval() const noexcept {
  const double scheduled = choice_ == Team ? kTeamProbeInterval : probe_interval_;
  const Option other_option = choice_ == Team ? Alone : Team;
  const double chosen = estimate(choice_), other = estimate(other_option);
  // One sample may be a fluke (a wake-up that took milliseconds): it alone never spaces the
  // probes out.
  if (count_[other_option] < 2 || !(chosen > 0.0) || !(other > chosen)) return scheduled;
  const double calls = choice_ == Alone ? 2.0 : 1.0;  // a probe of the team starts with a warm-up
  return std::max(scheduled, std::min<double>(kMaxCostProbeInterval,
                                              calls * (other - chosen) / (kProbeShare * chosen)));
}

double TeamOrAlone::estimate(Option option) const noexcept {
  const int n = std::min(count_[option], kSamples);
  if (n == 0) return 0.0;
  double sorted[kSamples];
  std::copy(samples_[option], samples_[option] + n, sorted);
  std::sort(sorted, sorted + n);
  if (n < 3) return sorted[0];
  double sum = 0.0;
  for (int i = 0; i + 1 < n; ++i) sum += sorted[i];
  return sum / (n - 1);
}

TeamOrAlone::Option TeamOrAlone::better() const noexcept {
  return estimate(Team) * kTeamMargin < estimate(Alone) ? Team : Alone;
}

void TeamOrAlone::record(Option option, double seconds_per_step) noexcept {
  const bool warm_up = calls_ == 0;
  ++calls_;
  if (option == Alone) ++alone_calls_;
  if (warm_up) return;
  const bool probe = decided_ && option != choice_;
  if (probe && option == Team && !probe_warmed_) {
    // The first call of a probe of the team wakes threads that slept through the calls on one
    // thread (on a loaded VM that alone can take milliseconds): not what the team costs when
    // it runs call after call.
    probe_warmed_ = true;
    return;
  }
  samples_[option][count_[option] % kSamples] = seconds_per_step;
  ++count_[option];
  if (!decided_) {
    const double team = estimate(Team), alone = estimate(Alone);
    const bool clear = team > 0.0 && alone > 0.0 &&
                       (team > kClearlySlower * alone || alone > kClearlySlower * team);
    if (clear || (count_[Team] >= kFirstSamples && count_[Alone] >= kFirstSamples)) {
      decided_ = true;
      choice_ = better();
      since_probe_ = 0;
    }
    return;
  }
  if (probe) {
    // A probe that beats the chosen option's estimate goes on, up to kSamples - 1 samples in a
    // row, so that the other option's estimate rests on fresh samples rather than on the ones
    // from when it was set aside.
    const bool promising = option == Team ? seconds_per_step * kTeamMargin < estimate(Alone)
                                          : !(estimate(Team) * kTeamMargin < seconds_per_step);
    if (promising && ++probe_run_ < kSamples - 1) return;
    probe_run_ = 0;
    probe_warmed_ = false;
    since_probe_ = 0;
    if (choice_ == Alone) probe_interval_ = std::min(2 * probe_interval_, kMaxProbeInterval);
    choice_ = better();
    return;
  }
  // The chosen option's own times can overturn it at once (its second core got busy).
  ++since_probe_;
  const Option now = better();
  if (now != choice_) {
    choice_ = now;
    since_probe_ = 0;
  }
}

namespace {

// Work (multiply-adds count 2) from which a call can get a second thread by size (a time loop
// of >= 2 MFLOP splits, sequence.cpp); smaller calls run on one thread anyway.
constexpr double kMinMeasuredFlops = 2.0e6;
// Kinds of call remembered at most; past it the registry starts afresh.
constexpr std::size_t kMaxEntries = 4096;

struct Key {
  int pass, cell, scalar_bytes;
  int64_t input_size, hidden_size, num_layers;
  bool bidirectional, lengths;
  int64_t batch, steps_class;
  int threads;
  bool operator<(const Key& o) const noexcept {
    return std::tie(pass, cell, scalar_bytes, input_size, hidden_size, num_layers, bidirectional,
                    lengths, batch, steps_class, threads) <
           std::tie(o.pass, o.cell, o.scalar_bytes, o.input_size, o.hidden_size, o.num_layers,
                    o.bidirectional, o.lengths, o.batch, o.steps_class, o.threads);
  }
};

struct Registry {
  std::mutex mutex;
  std::map<Key, TeamOrAlone> entries;
  uint64_t generation = 0;  // counts the clears: an entry of an older generation is gone
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: calls may run during exit
  return *r;
}

// 1..1: 0, 2..3: 1, 4..7: 2, ...: calls whose steps differ less than 2x share their times per
// step.
int64_t steps_class(int64_t steps) noexcept {
  int64_t c = 0;
  while (steps > 1) {
    steps >>= 1;
    ++c;
  }
  return c;
}

std::atomic<int>& mode() {
  static std::atomic<int> m{static_cast<int>(thread_settings().measured_plan ? ThreadPlan::Measured
                                                                             : ThreadPlan::Fixed)};
  return m;
}

const char* pass_name(int pass) noexcept {
  switch (pass) {
    case 0: return "inference";
    case 1: return "training forward";
    default: return "backward";
  }
}

}  // namespace

MeasuredCall::MeasuredCall(PassKind pass, const ModelConfig& config, int scalar_bytes,
                           int64_t steps, int64_t batch, bool lengths)
    : steps_(steps), saved_cap_(thread_cap()), exceptions_(std::uncaught_exceptions()) {
  if (thread_plan() != ThreadPlan::Measured || in_parallel() || steps < 1 || batch < 1) return;
  const int threads = max_threads();
  if (threads < 2 || thread_settings().split_forced) return;
  const double work = forward_flops(config, steps, batch) * (pass == PassKind::Backward ? 2.0 : 1.0);
  if (!(work >= kMinMeasuredFlops)) return;
  const Key key{static_cast<int>(pass), static_cast<int>(config.cell), scalar_bytes,
                config.input_size, config.hidden_size, config.num_layers, config.bidirectional,
                lengths, batch, steps_class(steps), threads};
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    auto found = r.entries.find(key);
    if (found == r.entries.end()) {
      if (r.entries.size() >= kMaxEntries) {
        r.entries.clear();
        ++r.generation;
      }
      found = r.entries.emplace(key, TeamOrAlone()).first;
    }
    entry_ = &found->second;  // std::map nodes stay put until the registry is cleared
    generation_ = r.generation;
    option_ = found->second.next();
  }
  if (option_ == TeamOrAlone::Alone) thread_cap() = 1;
  start_ = std::chrono::steady_clock::now();
}

MeasuredCall::~MeasuredCall() {
  if (std::uncaught_exceptions() == exceptions_) report();
  thread_cap() = saved_cap_;
}

void MeasuredCall::report() noexcept {
  if (entry_ == nullptr) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  // The registry may have been cleared meanwhile (reset_thread_plan, or it filled up).
  if (r.generation == generation_) {
    entry_->record(option_, seconds / static_cast<double>(steps_));
  }
}

}  // namespace detail

void set_thread_plan(ThreadPlan plan) noexcept { detail::mode().store(static_cast<int>(plan)); }

ThreadPlan thread_plan() noexcept { return static_cast<ThreadPlan>(detail::mode().load()); }

std::vector<ThreadPlanEntry> thread_plan_report() {
  detail::Registry& r = detail::registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<ThreadPlanEntry> out;
  out.reserve(r.entries.size());
  for (const auto& [key, choice] : r.entries) {
    ThreadPlanEntry e;
    e.pass = detail::pass_name(key.pass);
    e.cell = static_cast<CellKind>(key.cell);
    e.scalar_bytes = key.scalar_bytes;
    e.input_size = key.input_size;
    e.hidden_size = key.hidden_size;
    e.num_layers = key.num_layers;
    e.bidirectional = key.bidirectional;
    e.lengths = key.lengths;
    e.batch = key.batch;
    e.steps_from = int64_t{1} << key.steps_class;
    e.steps_to = (int64_t{2} << key.steps_class) - 1;
    e.threads = key.threads;
    e.calls = choice.calls();
    e.alone_calls = choice.alone_calls();
    e.decided = choice.decided();
    e.team = choice.choice() == detail::TeamOrAlone::Team;
    e.team_seconds_per_step = choice.estimate(detail::TeamOrAlone::Team);
    e.alone_seconds_per_step = choice.estimate(detail::TeamOrAlone::Alone);
    out.push_back(std::move(e));
  }
  return out;
}

void reset_thread_plan() noexcept {
  detail::Registry& r = detail::registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.entries.clear();
  ++r.generation;
}

}  // namespace rnncore
