// Microbenchmarks of the sequence kernels over the shapes of issue 3, with the float32 GEMM rate
// of Eigen at the same thread count as the yardstick.
//
//   build-bench/bench/rnncore_bench                                 # everything (long)
//   build-bench/bench/rnncore_bench --benchmark_filter='lstm/h256'  # a subset
//
// Names: <kind>/<cell>/h<H>/n<N>/t<T>/<uni|bi>[/l<layers>]/threads:<k>, kind = forward (inference),
// train (forward + BPTT with every gradient), step (one step, T = 1), gemm (Eigen float32);
// product/h<H>/g<G>/rows<N>: one time step's recurrent product alone (W_hh^T packed once, G*H
// columns, depth H, N rows of state; one thread, weights in cache: the kernel's own rate).
// Counters: GFLOPs = the model's multiply-add work (training counts 3x the forward) per second.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "recurrent_gemm.h"
#include "parallel.h"
#include "rnncore/sequence.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using rnncore::CellKind;
using rnncore::ModelConfig;

struct Shape {
  int64_t hidden, batch, steps;
};

// Issue 3's set: (H, N, T), input size = H.
const Shape kShapes[] = {{256, 32, 100}, {512, 64, 50}, {1024, 16, 25}, {128, 1, 1000},
                         {64, 8, 200},   {32, 1, 672},  {64, 1, 96},    {256, 1, 150}};

void set_threads(int threads) {
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

std::vector<float> random_vector(std::size_t n, unsigned seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = dist(rng);
  return v;
}

// A model's parameters and the arrays of one call.
struct Problem {
  ModelConfig config;
  int64_t steps, batch;
  std::vector<std::vector<float>> params;
  std::vector<rnncore::DirectionWeights<float>> weights;
  std::vector<rnncore::DirectionGrads<float>> grads;
  std::vector<float> x, y, h_n, c_n, grad_y, grad_x, grad_h0, grad_c0;

  Problem(CellKind cell, int64_t hidden, int64_t batch_, int64_t steps_, bool bidirectional,
          int64_t layers)
      : steps(steps_), batch(batch_) {
    config.cell = cell;
    config.input_size = hidden;
    config.hidden_size = hidden;
    config.num_layers = layers;
    config.bidirectional = bidirectional;
    const int64_t gh = config.gates() * hidden, slots = layers * config.directions();
    const float bound = 1.0f / std::sqrt(static_cast<float>(hidden));
    params.reserve(static_cast<std::size_t>(8 * slots));
    for (int64_t slot = 0; slot < slots; ++slot) {
      const int64_t in = config.layer_input_size(slot / config.directions());
      const auto add = [&](std::size_t n) -> float* {
        params.push_back(random_vector(n, static_cast<unsigned>(params.size() + 1), bound));
        return params.back().data();
      };
      rnncore::DirectionWeights<float> w;
      w.w_ih = add(static_cast<std::size_t>(gh * in));
      w.w_hh = add(static_cast<std::size_t>(gh * hidden));
      w.b_ih = add(static_cast<std::size_t>(gh));
      w.b_hh = add(static_cast<std::size_t>(gh));
      weights.push_back(w);
      rnncore::DirectionGrads<float> g;
      g.w_ih = add(static_cast<std::size_t>(gh * in));
      g.w_hh = add(static_cast<std::size_t>(gh * hidden));
      g.b_ih = add(static_cast<std::size_t>(gh));
      g.b_hh = add(static_cast<std::size_t>(gh));
      grads.push_back(g);
    }
    const int64_t out = config.directions() * hidden, states = slots * batch * hidden;
    x = random_vector(static_cast<std::size_t>(steps * batch * hidden), 7, 1.0f);
    y.resize(static_cast<std::size_t>(steps * batch * out));
    grad_y = random_vector(y.size(), 11, 1.0f);
    grad_x.resize(x.size());
    h_n.resize(static_cast<std::size_t>(states));
    c_n.resize(h_n.size());
    grad_h0.resize(h_n.size());
    grad_c0.resize(h_n.size());
  }

  void forward(rnncore::TrainingCache<float>* cache) {
    rnncore::sequence_forward<float>(config, weights, steps, batch, x.data(), nullptr, nullptr,
                                     nullptr, y.data(), h_n.data(), c_n.data(), cache);
  }
  void backward(const rnncore::TrainingCache<float>& cache) {
    rnncore::sequence_backward<float>(config, weights, cache, grad_y.data(), nullptr, nullptr,
                                      grad_x.data(), grad_h0.data(), grad_c0.data(), grads);
  }
};

// Step: one step (T = 1) through sequence_forward, which packs the weights on every call (or,
// for N <= 4, runs on them unpacked); StepPrepared: the same over PreparedWeights packed once.
enum class Kind { Forward, Train, Step, StepPrepared };

void run_model(benchmark::State& state, Kind kind, CellKind cell, Shape shape, bool bidirectional,
               int64_t layers, int threads) {
  set_threads(threads);
  const bool step = kind == Kind::Step || kind == Kind::StepPrepared;
  const int64_t steps = step ? 1 : shape.steps;
  Problem p(cell, shape.hidden, shape.batch, steps, bidirectional, layers);
  rnncore::TrainingCache<float> cache;
  const rnncore::PreparedWeights<float> prepared(p.config, p.weights);
  for (auto _ : state) {
    if (kind == Kind::Train) {
      p.forward(&cache);
      p.backward(cache);
    } else if (kind == Kind::StepPrepared) {
      rnncore::sequence_forward<float>(prepared, steps, p.batch, p.x.data(), nullptr, nullptr,
                                       nullptr, p.y.data(), p.h_n.data(), p.c_n.data());
    } else {
      p.forward(nullptr);
    }
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  const double flops = rnncore::forward_flops(p.config, steps, shape.batch) *
                       (kind == Kind::Train ? 3.0 : 1.0);
  state.counters["GFLOPs"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (step) {
    state.counters["us_per_step"] = benchmark::Counter(
        1e6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  }
  if (kind == Kind::Train) {
    state.counters["cache_bytes_per_step_layer"] = static_cast<double>(cache.nbytes()) /
                                                   static_cast<double>(steps * layers);
  }
  set_threads(1);
}

// C[m, n] = A[m, k] * B[n, k]^T in float32 through Eigen: the yardstick ("GEMM peak").
void run_gemm(benchmark::State& state, int64_t m, int64_t n, int64_t k, int threads) {
  set_threads(threads);
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Mat a = Mat::Random(m, k), b = Mat::Random(n, k);
  Mat c(m, n);
  for (auto _ : state) {
    c.noalias() = a * b.transpose();
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * m * n * k * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
  set_threads(1);
}

// The time loop's product out[rows, G*H] += h[rows, H] * W_hh^T, W_hh packed as one run of
// G*H columns (as a one-thread time loop packs it).
void run_product(benchmark::State& state, int64_t hidden, int64_t gates, int64_t rows) {
  set_threads(1);
  const auto w = random_vector(static_cast<std::size_t>(gates * hidden * hidden), 1, 0.1f);
  const auto h = random_vector(static_cast<std::size_t>(rows * hidden), 2, 1.0f);
  std::vector<float> out(static_cast<std::size_t>(rows * gates * hidden), 0.0f);
  rnncore::detail::PackedPanels<float> packed;
  packed.pack(w.data(), hidden, true, hidden, 1, gates * hidden);
  std::vector<float> scratch(static_cast<std::size_t>(packed.scratch_size(rows)));
  for (auto _ : state) {
    packed.multiply(h.data(), hidden, rows, out.data(), gates * hidden, true, 0, packed.slots(),
                    scratch.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * rows * gates * hidden * hidden * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

const char* cell_name(CellKind c) {
  switch (c) {
    case CellKind::RnnTanh: return "rnn";
    case CellKind::RnnRelu: return "rnn_relu";
    case CellKind::Lstm: return "lstm";
    case CellKind::Gru: return "gru";
  }
  return "?";
}

void register_all() {
  // The recurrent product alone: few rows (the kernel for 1-3 rows), row blocks, hidden sizes
  // on and off the 32-float panel grid.
  for (int64_t hidden : {100, 128, 200, 256}) {
    for (int64_t rows : {1, 2, 3, 4, 8, 10, 16}) {
      const std::string name = "product/h" + std::to_string(hidden) + "/g4/rows" +
                               std::to_string(rows);
      benchmark::RegisterBenchmark(name.c_str(), run_product, hidden, int64_t{4}, rows)
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
  }
  const int max_threads = rnncore::max_threads();
  std::vector<int> thread_counts = {1};
  if (max_threads >= 2) thread_counts.push_back(2);
  for (int threads : thread_counts) {
    const std::string suffix = "/threads:" + std::to_string(threads);
    // The GEMM yardstick: the hoisted projection of the (256, 32, 100) LSTM and a square one.
    benchmark::RegisterBenchmark(("gemm/m3200/n1024/k256" + suffix).c_str(), run_gemm, 3200, 1024,
                                 256, threads)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("gemm/m1024/n1024/k1024" + suffix).c_str(), run_gemm, 1024,
                                 1024, 1024, threads)->Unit(benchmark::kMillisecond)->UseRealTime();
    for (CellKind cell : {CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru}) {
      for (const Shape& s : kShapes) {
        for (bool bi : {false, true}) {
          for (Kind kind : {Kind::Forward, Kind::Train, Kind::Step, Kind::StepPrepared}) {
            const char* kind_name = kind == Kind::Forward ? "forward"
                                    : kind == Kind::Train ? "train"
                                    : kind == Kind::Step  ? "step"
                                                          : "step_prepared";
            const bool step = kind == Kind::Step || kind == Kind::StepPrepared;
            for (int64_t layers : {int64_t{1}, int64_t{2}}) {
              // Stacks for the (256, 32, 100) case, as the issue asks, and unidirectional ones
              // for the small shapes, where the wavefront over layers is what uses a second
              // thread (one step of a stack is no different from a layer's: not timed).
              if (layers == 2) {
                const bool issue_case = s.hidden == 256 && s.batch == 32;
                const bool small = s.hidden <= 128 && s.batch <= 8;
                if (step || !(issue_case || (small && !bi))) continue;
              }
              std::string name = std::string(kind_name) + "/" + cell_name(cell) + "/h" +
                                 std::to_string(s.hidden) + "/n" + std::to_string(s.batch) +
                                 "/t" + std::to_string(step ? 1 : s.steps) +
                                 (bi ? "/bi" : "/uni");
              if (layers > 1) name += "/l" + std::to_string(layers);
              name += suffix;
              benchmark::RegisterBenchmark(name.c_str(), run_model, kind, cell, s, bi, layers,
                                           threads)
                  ->Unit(step ? benchmark::kMicrosecond : benchmark::kMillisecond)
                  ->UseRealTime();
            }
          }
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
