// Latency of Stream::step: p50 and p99 per step over RTNeural's benchmark sizes and a few batches.
// (bench/rtneural_compare times RTNeural itself beside rnncore in one run.)
//
//   bench_stream [--reps N] [--quick] [--threads N]
//
// Steps are timed in blocks of B consecutive calls (B chosen so a block lasts ~2 us, since a
// clock read costs ~20 ns, as much as a whole small step); the per-step time of each block is one
// sample, and p50 / p99 are taken over the samples. The state is carried between calls, as in a
// real stream.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "random_model.h"
#include "rnncore/stream.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double p50_us, p99_us;
};

Result time_steps(rnncore::Stream<float>& stream, int reps) {
  const int64_t N = stream.batch_size();
  std::vector<float> x(static_cast<std::size_t>(N * stream.input_size()));
  std::mt19937 rng(0);
  std::normal_distribution<float> g;
  for (float& v : x) v = g(rng);
  std::vector<float> y(static_cast<std::size_t>(N * stream.output_size()));
  // Warm up, and pick the block size.
  auto t0 = Clock::now();
  int warm = 0;
  while (Clock::now() - t0 < std::chrono::milliseconds(50)) {
    stream.step(x.data(), y.data());
    ++warm;
  }
  const double per_step = std::chrono::duration<double>(Clock::now() - t0).count() / warm;
  const int block = std::max(1, static_cast<int>(2e-6 / per_step));
  std::vector<double> samples(static_cast<std::size_t>(reps));
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    for (int i = 0; i < block; ++i) stream.step(x.data(), y.data());
    samples[static_cast<std::size_t>(r)] =
        std::chrono::duration<double, std::micro>(Clock::now() - start).count() / block;
  }
  std::sort(samples.begin(), samples.end());
  auto pct = [&](double q) { return samples[static_cast<std::size_t>(q * (samples.size() - 1))]; };
  return {pct(0.5), pct(0.99)};
}

struct Case {
  rnncore::CellKind cell;
  int64_t input_size, hidden_size, batch;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 3000, threads = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::max(10, std::atoi(argv[++i]));
    } else if (a == "--quick") {
      reps = 300;
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));  // Stream's threads per step
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--quick] [--threads N]\n", argv[0]);
      return 2;
    }
  }
  using rnncore::CellKind;
  const Case cases[] = {
      {CellKind::Lstm, 1, 16, 1},    {CellKind::Lstm, 1, 32, 1},   {CellKind::Lstm, 1, 64, 1},
      {CellKind::Lstm, 1, 128, 1},   {CellKind::Lstm, 128, 128, 1}, {CellKind::Lstm, 256, 256, 1},
      {CellKind::Gru, 1, 16, 1},     {CellKind::Gru, 1, 32, 1},    {CellKind::Gru, 1, 64, 1},
      {CellKind::Gru, 1, 128, 1},    {CellKind::Gru, 128, 128, 1}, {CellKind::Gru, 256, 256, 1},
      {CellKind::Lstm, 1, 16, 64},   {CellKind::Lstm, 1, 64, 64},  {CellKind::Lstm, 128, 128, 64},
      {CellKind::Gru, 1, 64, 64},
  };
  std::printf("%-5s %5s %5s %5s %10s %10s %8s %10s %9s\n", "cell", "in", "H", "batch", "p50_us",
              "p99_us", "GFLOP/s", "weights_kB", "GB/s");
  for (const Case& k : cases) {
    const auto model = rnncore_bench::random_model(k.cell, k.input_size, k.hidden_size, 0.2f);
    rnncore::Stream<float> stream(model, k.batch, threads);
    const Result r = time_steps(stream, reps);
    const double gh = rnncore::gate_count(k.cell) * k.hidden_size;
    const double weights = gh * (k.input_size + k.hidden_size) * sizeof(float);
    const double flops = 2.0 * gh * (k.input_size + k.hidden_size) * k.batch;
    std::printf("%-5s %5lld %5lld %5lld %10.3f %10.3f %8.1f %10.1f %9.1f\n",
                rnncore::cell_name(k.cell), static_cast<long long>(k.input_size),
                static_cast<long long>(k.hidden_size), static_cast<long long>(k.batch), r.p50_us,
                r.p99_us, flops / (r.p50_us * 1e3), weights / 1e3,
                weights / (r.p50_us * 1e3));
  }
  return 0;
}
