// Whole-sequence kernels through the C++ API (sequence.h): the wavefront over stacked layers
// against the layer-by-layer path, the time loop split by sequences or by hidden units against
// one thread, and when each is chosen; the layout of a call with variable lengths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "batch_layout.h"
#include "parallel.h"
#include "rnncore/sequence.h"
#include "scoped_setting.h"

namespace {

using rnncore::CellKind;
using rnncore::ModelConfig;

// RNNCORE_WAVEFRONT (unless nullptr) and the OpenMP thread count for one scope.
class Setting : public rnncore_test::ScopedSetting {
 public:
  Setting(const char* wavefront, int threads)
      : ScopedSetting("RNNCORE_WAVEFRONT", wavefront, threads) {}
};

struct Result {
  std::vector<float> y, h_n, c_n, grad_x, grad_h0, grad_c0;
  std::vector<std::vector<float>> grads;  // per layer: w_ih, w_hh, b_ih, b_hh
};

Result run(const ModelConfig& config, int64_t T, int64_t N, const std::vector<int64_t>& lengths) {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  const auto random = [&](int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& e : v) e = normal(gen);
    return v;
  };
  const int64_t L = config.num_layers, H = config.hidden_size, gh = config.gates() * H;
  std::vector<std::vector<float>> params;
  std::vector<rnncore::DirectionWeights<float>> weights;
  for (int64_t k = 0; k < L; ++k) {
    params.push_back(random(gh * config.layer_input_size(k)));
    params.push_back(random(gh * H));
    params.push_back(random(gh));
    params.push_back(random(gh));
  }
  for (int64_t k = 0; k < L; ++k) {
    weights.push_back({params[4 * k].data(), params[4 * k + 1].data(), params[4 * k + 2].data(),
                       params[4 * k + 3].data()});
  }
  const std::vector<float> x = random(T * N * config.input_size), h0 = random(L * N * H),
                           c0 = random(L * N * H), grad_y = random(T * N * H),
                           grad_h_n = random(L * N * H);
  Result r;
  r.y.resize(static_cast<std::size_t>(T * N * H));
  r.h_n.resize(static_cast<std::size_t>(L * N * H));
  r.c_n.resize(r.h_n.size());
  rnncore::TrainingCache<float> cache;
  const int64_t* lens = lengths.empty() ? nullptr : lengths.data();
  rnncore::sequence_forward(config, weights, T, N, x.data(), h0.data(), c0.data(), lens,
                            r.y.data(), r.h_n.data(), r.c_n.data(), &cache);
  r.grad_x.resize(x.size());
  r.grad_h0.resize(h0.size());
  r.grad_c0.resize(c0.size());
  std::vector<rnncore::DirectionGrads<float>> grads;
  for (int64_t k = 0; k < L; ++k) {
    for (int i = 0; i < 4; ++i) r.grads.emplace_back(params[4 * k + i].size());
  }
  for (int64_t k = 0; k < L; ++k) {
    grads.push_back({r.grads[4 * k].data(), r.grads[4 * k + 1].data(), r.grads[4 * k + 2].data(),
                     r.grads[4 * k + 3].data()});
  }
  rnncore::sequence_backward(config, weights, cache, grad_y.data(), grad_h_n.data(),
                             static_cast<const float*>(nullptr),
                             r.grad_x.data(), r.grad_h0.data(), r.grad_c0.data(), grads);
  // Inference (no cache; with lengths its first layer reads x's rows where they lie, where
  // training reads the cache's packed copy): the same bits as the training forward. y is filled
  // with NaNs first: every element, zeros past each length included, must be written.
  std::vector<float> y(r.y.size(), std::numeric_limits<float>::quiet_NaN()), h_n(r.h_n.size()),
      c_n(r.c_n.size());
  rnncore::TrainingCache<float>* no_cache = nullptr;
  rnncore::sequence_forward(config, weights, T, N, x.data(), h0.data(), c0.data(), lens, y.data(),
                            h_n.data(), c_n.data(), no_cache);
  EXPECT_EQ(y, r.y) << "inference y against the training forward's";
  EXPECT_EQ(h_n, r.h_n) << "inference h_n against the training forward's";
  EXPECT_EQ(c_n, r.c_n) << "inference c_n against the training forward's";
  return r;
}

ModelConfig stack(CellKind cell, int64_t input, int64_t hidden, int64_t layers) {
  ModelConfig c;
  c.cell = cell;
  c.input_size = input;
  c.hidden_size = hidden;
  c.num_layers = layers;
  return c;
}

// Every output, final state and gradient equal bit for bit (c_n and grad_c0 stay zero but for
// the LSTM).
void expect_bitwise_equal(const Result& got, const Result& want, const std::string& what) {
  EXPECT_EQ(got.y, want.y) << what;
  EXPECT_EQ(got.h_n, want.h_n) << what;
  EXPECT_EQ(got.c_n, want.c_n) << what;
  EXPECT_EQ(got.grad_x, want.grad_x) << what;
  EXPECT_EQ(got.grad_h0, want.grad_h0) << what;
  EXPECT_EQ(got.grad_c0, want.grad_c0) << what;
  ASSERT_EQ(got.grads.size(), want.grads.size()) << what;
  for (std::size_t i = 0; i < want.grads.size(); ++i) {
    EXPECT_EQ(got.grads[i], want.grads[i]) << what << ", gradient " << i;
  }
}

TEST(Wavefront, BitwiseEqualToLayerByLayer) {
#ifndef _OPENMP
  GTEST_SKIP() << "built without OpenMP: there is no second thread";
#endif
  for (CellKind cell : {CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru}) {
    for (int64_t layers : {2, 3}) {
      const ModelConfig config = stack(cell, 7, 19, layers);
      const int64_t T = 33, N = 2;
      for (const std::vector<int64_t>& lengths : {std::vector<int64_t>{}, {33, 12}}) {
        Result serial, wave;
        {
          Setting s("0", 1);
          ASSERT_EQ(rnncore::detail::wavefront_threads<float>(config, T, N), 1);
          serial = run(config, T, N, lengths);
        }
        {
          Setting s("1", 2);
          ASSERT_EQ(rnncore::detail::wavefront_threads<float>(config, T, N), 2);
          wave = run(config, T, N, lengths);
        }
        const std::string what = "cell " + std::to_string(static_cast<int>(cell)) + ", " +
                                 std::to_string(layers) + " layers, lengths " +
                                 std::to_string(lengths.size());
        expect_bitwise_equal(wave, serial, what);
      }
    }
  }
}

TEST(Wavefront, ChosenOnlyWhereItCanRun) {
  Setting s("", 2);
  const ModelConfig lstm = stack(CellKind::Lstm, 64, 64, 2);
#ifndef _OPENMP
  // One thread only: the layers always run one after the other.
  EXPECT_EQ(rnncore::detail::wavefront_threads<float>(lstm, 96, 1), 1);
  return;
#endif
  EXPECT_EQ(rnncore::detail::wavefront_threads<float>(lstm, 96, 1), 2);
  EXPECT_EQ(rnncore::detail::wavefront_threads<float>(lstm, 4, 1), 1);  // too few steps to pipeline
  ModelConfig bidirectional = lstm;
  bidirectional.bidirectional = true;
  EXPECT_EQ(rnncore::detail::wavefront_threads<float>(bidirectional, 96, 1), 1);
  EXPECT_EQ(rnncore::detail::wavefront_threads<float>(stack(CellKind::Lstm, 64, 64, 1), 96, 1), 1);
  EXPECT_THROW(rnncore::detail::wavefront_threads<float>(lstm, 0, 1), std::invalid_argument);
}

// RNNCORE_TIME_LOOP and the OpenMP thread count for one scope.
class LoopSetting : public rnncore_test::ScopedSetting {
 public:
  LoopSetting(const char* split, int threads)
      : ScopedSetting("RNNCORE_TIME_LOOP", split, threads) {}
};

TEST(TimeLoop, SplitsAreBitwiseEqualToOneThread) {
#ifndef _OPENMP
  GTEST_SKIP() << "built without OpenMP: there is no second thread";
#endif
  // N = 5: rows split 2 + 3; H = 37: units split mid-panel. Lengths mask rows on both threads.
  for (CellKind cell : {CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
    const ModelConfig config = stack(cell, 11, 37, 1);
    const int64_t T = 17, N = 5;
    for (const std::vector<int64_t>& lengths :
         {std::vector<int64_t>{}, {17, 3, 9, 17, 1}}) {
      Result one;
      {
        LoopSetting s("one", 2);
        const rnncore::detail::TimeLoopSplit split = rnncore::detail::time_loop_split<float>(config, T, N);
        ASSERT_EQ(split.threads, 1);
        one = run(config, T, N, lengths);
      }
      for (const char* how : {"units", "rows"}) {
        LoopSetting s(how, 2);
        const rnncore::detail::TimeLoopSplit split = rnncore::detail::time_loop_split<float>(config, T, N);
        ASSERT_EQ(split.threads, 2) << how;
        ASSERT_EQ(split.by_rows, std::string(how) == "rows");
        const Result got = run(config, T, N, lengths);
        const std::string what = std::string(how) + ", cell " +
                                 std::to_string(static_cast<int>(cell)) + ", lengths " +
                                 std::to_string(lengths.size());
        expect_bitwise_equal(got, one, what);
      }
    }
  }
}

TEST(TimeLoop, SplitChosenBySize) {
  LoopSetting s("", 2);
  const auto split = [](CellKind cell, int64_t H, int64_t T, int64_t N) {
    const rnncore::detail::TimeLoopSplit got = rnncore::detail::time_loop_split<float>(stack(cell, H, H, 1), T, N);
    return got.threads == 1 ? std::string("one") : got.by_rows ? "rows" : "units";
  };
#ifndef _OPENMP
  EXPECT_EQ(split(CellKind::Lstm, 256, 100, 32), "one");
  return;
#endif
  // The choices depend on the L2 size (rnncore::detail::l2_cache_bytes): 1 MiB as on the Zen 4.
  setenv("RNNCORE_L2_BYTES", "1048576", 1);
  rnncore::detail::reload_thread_settings();
  EXPECT_EQ(rnncore::detail::l2_cache_bytes(), 1048576.0);
  EXPECT_EQ(split(CellKind::Lstm, 256, 100, 32), "rows");   // compute-bound: sequences
  EXPECT_EQ(split(CellKind::Lstm, 64, 200, 4), "rows");     // W_hh (64 KB) fits in L2
  EXPECT_EQ(split(CellKind::Lstm, 256, 100, 4), "units");   // W_hh 1 MB: half each
  EXPECT_EQ(split(CellKind::Lstm, 256, 100, 8), "rows");    // 4 each, W_hh fits in L2
  EXPECT_EQ(split(CellKind::Lstm, 384, 100, 8), "units");   // 4 each, W_hh 2.3 MB does not
  EXPECT_EQ(split(CellKind::Lstm, 384, 100, 16), "rows");   // 8 each: compute-bound
  EXPECT_EQ(split(CellKind::Lstm, 256, 150, 1), "units");
  // 2 MiB, as on the Xeon: an LSTM 256's 1 MB W_hh fits in half of it.
  setenv("RNNCORE_L2_BYTES", "2097152", 1);
  rnncore::detail::reload_thread_settings();
  EXPECT_EQ(split(CellKind::Lstm, 256, 100, 4), "rows");
  EXPECT_EQ(split(CellKind::Gru, 384, 100, 8), "rows");     // 1.7 MB
  EXPECT_EQ(split(CellKind::Lstm, 384, 100, 8), "units");
  setenv("RNNCORE_L2_BYTES", "not a size", 1);  // ignored: the system's L2
  rnncore::detail::reload_thread_settings();
  EXPECT_GT(rnncore::detail::l2_cache_bytes(), 0.0);
  unsetenv("RNNCORE_L2_BYTES");
  rnncore::detail::reload_thread_settings();
  EXPECT_EQ(split(CellKind::Lstm, 48, 200, 2), "rows");     // one sequence each, W_hh 36 KB
  EXPECT_EQ(split(CellKind::RnnTanh, 32, 200, 1), "one");   // a step too small for a barrier
  EXPECT_EQ(split(CellKind::RnnTanh, 16, 2000, 8), "one");  // too small even without one
  EXPECT_EQ(split(CellKind::Lstm, 256, 1, 1), "one");       // too few steps to start a team
  {
    LoopSetting rows("rows", 2);
    EXPECT_EQ(split(CellKind::Lstm, 256, 100, 1), "one");  // one sequence cannot split by rows
  }
  EXPECT_THROW(rnncore::detail::time_loop_split<float>(stack(CellKind::Lstm, 8, 8, 1), 0, 1),
               std::invalid_argument);
}

}  // namespace

#ifdef RNNCORE_HAS_MXCSR
// Subnormal results are flushed on every thread of a call (parallel.h, FlushDenormals), the
// caller's control state is the same after the call, and with flushing off a team's worker
// threads (which may have been started while the caller was flushing) keep IEEE subnormals.
TEST(FlushDenormals, EveryThreadFlushesAndTheCallerIsRestored) {
  ModelConfig config = stack(CellKind::RnnRelu, 1, 64, 1);
  const int64_t T = 3, N = 2, H = 64;
  const float tiny = 1e-20f;
  std::vector<float> w_ih(H, tiny), w_hh(H * H, 0.0f), b(H, 0.0f), x(T * N, 4 * tiny);
  const std::vector<rnncore::DirectionWeights<float>> weights = {
      {w_ih.data(), w_hh.data(), b.data(), b.data()}};
  std::vector<float> y(T * N * H), h_n(N * H);
  const auto run = [&] {
    rnncore::sequence_forward<float>(config, weights, T, N, x.data(), nullptr, nullptr, nullptr,
                                     y.data(), h_n.data(), nullptr, nullptr);
  };
  LoopSetting split("units", 2);  // each thread computes outputs of its own units
  const unsigned before = _mm_getcsr();
  rnncore::set_flush_denormals(true);
  run();
  EXPECT_EQ(_mm_getcsr(), before);
  for (float v : y) ASSERT_EQ(v, 0.0f);  // 4e-40 flushed
  rnncore::set_flush_denormals(false);
  run();
  EXPECT_EQ(_mm_getcsr(), before);
  for (float v : y) ASSERT_GT(v, 0.0f);  // the exact 4e-40, subnormal
  rnncore::set_flush_denormals(true);
}
#endif

namespace {

// BatchLayout with variable lengths: each packed row maps to the caller's row of a sequence still
// running at its step (each running (step, sequence) pair once), and a time loop split by
// sequences hands its threads shares of about equal work (sequences sorted longest first: even
// shares of sequences would give the first thread most of it); without lengths, even shares.
TEST(BatchLayout, CallerRowsAndSharesOfEqualWork) {
  const int64_t T = 50, N = 40;
  std::mt19937 rng(5);
  std::vector<int64_t> lengths(N);
  for (auto& l : lengths) l = std::uniform_int_distribution<int64_t>(T / 10, T)(rng);
  const rnncore::detail::BatchLayout layout(T, N, lengths.data());
  ASSERT_TRUE(layout.packed());
  std::vector<int> seen(static_cast<std::size_t>(T * N), 0);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < layout.count(t); ++j) {
      const int64_t row = layout.caller_rows()[layout.row0(t) + j];
      ASSERT_EQ(row / N, t);
      ASSERT_LT(t, lengths[static_cast<std::size_t>(row % N)]) << "a sequence past its end";
      ++seen[static_cast<std::size_t>(row)];
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < N; ++b) {
      ASSERT_EQ(seen[static_cast<std::size_t>(t * N + b)], t < lengths[static_cast<std::size_t>(b)] ? 1 : 0);
    }
  }
  // Work of sorted sequences [begin, end): the steps they run.
  const auto work = [&](int64_t begin, int64_t end) {
    int64_t w = 0;
    for (int64_t t = 0; t < T; ++t) w += std::max<int64_t>(0, std::min(end, layout.count(t)) - begin);
    return w;
  };
  for (int team : {1, 2, 3}) {
    EXPECT_EQ(layout.share_begin(0, team), 0);
    EXPECT_EQ(layout.share_begin(team, team), N);
    for (int thread = 0; thread < team; ++thread) {
      const int64_t begin = layout.share_begin(thread, team), end = layout.share_begin(thread + 1, team);
      ASSERT_LE(begin, end);
      // Within one sequence's length of an even share, at each boundary.
      EXPECT_NEAR(static_cast<double>(work(begin, end)), static_cast<double>(layout.rows()) / team, T)
          << "thread " << thread << " of " << team;
    }
  }
  const rnncore::detail::BatchLayout dense(T, N, nullptr);
  EXPECT_FALSE(dense.packed());
  EXPECT_EQ(dense.caller_rows(), nullptr);
  EXPECT_EQ(dense.share_begin(1, 2), N / 2);
  EXPECT_EQ(dense.share_begin(1, 3), N / 3);
}

}  // namespace
