// The threading policy's settings and size rules (thread_policy.h). Each threshold below was
// measured; the runs and their numbers are in bench/README.md under the section named.
#include "thread_policy.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#include "parallel.h"

namespace rnncore {
namespace detail {
namespace {

bool is_set(const char* value) noexcept { return value != nullptr && value[0] != '\0'; }

double detected_l2_bytes() noexcept {
  static const double detected = [] {
#ifdef _SC_LEVEL2_CACHE_SIZE
    const long bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (bytes > 0) return static_cast<double>(bytes);
#endif
    return 1024.0 * 1024.0;
  }();
  return detected;
}

ThreadSettings read_thread_settings() noexcept {
  ThreadSettings s;
  const char* loop = std::getenv("RNNCORE_TIME_LOOP");
  const char* wave = std::getenv("RNNCORE_WAVEFRONT");
  if (loop != nullptr) {
    if (std::strcmp(loop, "one") == 0) s.time_loop = ThreadSettings::TimeLoop::One;
    if (std::strcmp(loop, "units") == 0) s.time_loop = ThreadSettings::TimeLoop::Units;
    if (std::strcmp(loop, "rows") == 0) s.time_loop = ThreadSettings::TimeLoop::Rows;
  }
  if (wave != nullptr && (std::strcmp(wave, "0") == 0 || std::strcmp(wave, "1") == 0)) {
    s.wavefront = wave[0] - '0';
  }
  s.split_forced = is_set(loop) || is_set(wave);
  s.l2_bytes = detected_l2_bytes();
  if (const char* value = std::getenv("RNNCORE_L2_BYTES")) {
    char* end = nullptr;
    const double bytes = std::strtod(value, &end);
    if (end != value && *end == '\0' && bytes > 0) s.l2_bytes = bytes;
  }
  const char* pack = std::getenv("RNNCORE_PARALLEL_PACK");
  s.parallel_pack = pack == nullptr || std::strcmp(pack, "0") != 0;
  const char* flush = std::getenv("RNNCORE_FLUSH_DENORMALS");
  s.flush_denormals = flush == nullptr || std::strcmp(flush, "0") != 0;
  const char* plan = std::getenv("RNNCORE_THREAD_PLAN");
  s.measured_plan = plan == nullptr || std::strcmp(plan, "fixed") != 0;
  return s;
}

ThreadSettings& settings_storage() noexcept {
  static ThreadSettings settings = read_thread_settings();
  return settings;
}

std::atomic<int>& flush_setting() noexcept {
  static std::atomic<int> setting{thread_settings().flush_denormals ? 1 : 0};
  return setting;
}

// A thread per 16 MFLOP of a product (~150 us on one core; "Products on two threads").
constexpr double kMinProductFlopsPerThread = 16.0e6;
// A packing thread per 256 KB of panels ("Packing on two threads").
constexpr std::size_t kPackBytesPerThread = std::size_t{1} << 18;

// Time loop splits ("Splitting the time loop by sequences", "The split by sequences weighs W_hh
// against the L2"): by units only from this much work per step (a barrier every step), by rows
// only from kRowSplitMinStepFlops (neighbouring rows share cache lines), one sequence per
// thread only while W_hh is this small, and no split at all for a loop under kSplitMinLoopFlops.
constexpr double kUnitSplitMinStepFlops = 24.0e3;
constexpr double kRowSplitMinStepFlops = 8.0e3;
constexpr double kOneRowSplitMaxWeightBytes = 40.0 * 1024.0;
constexpr double kSplitMinLoopFlops = 2.0e6;

// Wavefront ("Wavefront across stacked layers"): chunks of at least a micro-kernel row block of
// rows and ~8 per layer; not for calls estimated under kWavefrontMinSeconds on one thread (at
// kWavefrontStepSeconds a step plus the work at kWavefrontFlopRate), nor where each layer's own
// time loop already splits, unless its steps are small and the layers divide evenly.
constexpr int64_t kWavefrontMinRows = 8;
constexpr double kWavefrontMinSeconds = 100e-6;
constexpr double kWavefrontStepSeconds = 0.15e-6;
constexpr double kWavefrontFlopRate = 50e9;
constexpr double kWavefrontMaxStepFlops = 4e6;

// The split RNNCORE_TIME_LOOP asks for (rows only where N >= 2, capped at OpenMP's threads), or
// {0, false} where it asks for none.
TimeLoopSplit forced_time_loop(int64_t batch, int64_t slots) noexcept {
  const ThreadSettings::TimeLoop forced = thread_settings().time_loop;
  if (forced == ThreadSettings::TimeLoop::BySize || in_parallel()) return {0, false};
  const auto team = [](int64_t parts) {
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(parts, max_threads())));
  };
  switch (forced) {
    case ThreadSettings::TimeLoop::One: return {1, false};
    case ThreadSettings::TimeLoop::Units: return {team(slots), false};
    default: return {team(batch), batch >= 2};
  }
}

}  // namespace

const ThreadSettings& thread_settings() noexcept { return settings_storage(); }

void reload_thread_settings() noexcept {
  ThreadSettings fresh = read_thread_settings();
  ThreadSettings& settings = settings_storage();
  fresh.flush_denormals = settings.flush_denormals;
  fresh.measured_plan = settings.measured_plan;
  settings = fresh;
}

int product_threads(double flops, double parts) noexcept {
  if (in_parallel()) return 1;
  return static_cast<int>(std::max(1.0, std::min({flops / kMinProductFlopsPerThread, parts,
                                                  static_cast<double>(max_threads())})));
}

int pack_threads(std::size_t bytes, int64_t panels) noexcept {
  const int64_t cap = in_parallel() || !thread_settings().parallel_pack ? 1 : max_threads();
  return static_cast<int>(
      std::min<int64_t>({panels, cap, 1 + static_cast<int64_t>(bytes / kPackBytesPerThread)}));
}

double l2_cache_bytes() noexcept { return thread_settings().l2_bytes; }

TimeLoopSplit plan_time_loop(int64_t gates, int64_t H, int64_t N, int64_t T, int64_t slots,
                             std::size_t scalar_bytes, bool forcible) noexcept {
  if (forcible) {
    const TimeLoopSplit forced = forced_time_loop(N, slots);
    if (forced.threads > 0) return forced;
  }
  const int cap = in_parallel() ? 1 : max_threads();
  const double step = 2.0 * static_cast<double>(N) * static_cast<double>(gates * H) *
                      static_cast<double>(H);
  if (cap < 2 || step * static_cast<double>(T) < kSplitMinLoopFlops) return {1, false};
  const double weight_bytes =
      static_cast<double>(gates * H * H) * static_cast<double>(scalar_bytes);
  const int64_t by_rows = std::min<int64_t>(cap, N / 2);  // >= 2 sequences each
  const double l2 = l2_cache_bytes();
  if (by_rows >= 2 && step >= kRowSplitMinStepFlops &&
      (weight_bytes <= l2 / 2 || (N >= 4 * by_rows && weight_bytes <= l2) || N >= 8 * by_rows)) {
    return {static_cast<int>(by_rows), true};
  }
  if (N >= 2 && step >= kRowSplitMinStepFlops && weight_bytes <= kOneRowSplitMaxWeightBytes) {
    return {static_cast<int>(std::min<int64_t>(cap, N)), true};
  }
  const int64_t by_units = std::min<int64_t>(
      {static_cast<int64_t>(step / (kUnitSplitMinStepFlops / 2.0)), slots, cap});
  if (by_units >= 2) return {static_cast<int>(by_units), false};
  return {1, false};
}

WavefrontPlan plan_wavefront(const ModelConfig& config, int64_t steps, int64_t batch,
                             int64_t slots, std::size_t scalar_bytes) noexcept {
  WavefrontPlan plan;
  const int64_t L = config.num_layers, H = config.hidden_size;
  if (config.directions() != 1 || L < 2 || in_parallel() || max_threads() < 2) return plan;
  const int setting = thread_settings().wavefront;
  if (setting == 0) return plan;
  const int team = static_cast<int>(std::min<int64_t>(L, max_threads()));
  const int64_t chunk_steps =
      std::max((kWavefrontMinRows + batch - 1) / batch, (steps + 8 * L - 1) / (8 * L));
  const int64_t chunks = (steps + chunk_steps - 1) / chunk_steps;
  if (chunks < 2 * L) return plan;
  if (setting != 1) {
    const double gh = static_cast<double>(config.gates()) * static_cast<double>(H);
    const double step_flops = 2.0 * static_cast<double>(batch) * gh * static_cast<double>(H);
    double one_thread = 0.0;
    for (int64_t k = 0; k < L; ++k) {
      one_thread += static_cast<double>(steps) * kWavefrontStepSeconds +
                    layer_flops(config, k, steps, batch) / kWavefrontFlopRate;
    }
    if (one_thread < kWavefrontMinSeconds) return plan;
    if (plan_time_loop(config.gates(), H, batch, steps, slots, scalar_bytes, false).threads >=
            team &&
        (L % team != 0 || step_flops > kWavefrontMaxStepFlops)) {
      return plan;
    }
  }
  plan.threads = team;
  plan.chunks = chunks;
  return plan;
}

}  // namespace detail

int max_threads() noexcept {
#ifdef _OPENMP
  const int threads = omp_get_max_threads(), cap = detail::thread_cap();
  return cap > 0 && cap < threads ? cap : threads;
#else
  return 1;
#endif
}

void set_flush_denormals(bool flush) noexcept {
  detail::flush_setting().store(flush ? 1 : 0, std::memory_order_relaxed);
}

bool flush_denormals() noexcept {
  return detail::flush_setting().load(std::memory_order_relaxed) != 0;
}

}  // namespace rnncore
