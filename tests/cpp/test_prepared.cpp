// PreparedWeights (sequence.h): inference over weights packed once gives what sequence_forward
// gives on the weights themselves, bit for bit, through every split of the time loop, the
// wavefront and variable lengths; it keeps its own copy of the weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/model.h"
#include "rnncore/sequence.h"
#include "scoped_setting.h"

namespace {

using rnncore::CellKind;
using rnncore::ModelConfig;

template <typename S>
std::vector<S> random_vector(int64_t n, std::mt19937& gen) {
  std::normal_distribution<double> normal(0.0, 0.5);
  std::vector<S> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = static_cast<S>(normal(gen));
  return v;
}

// A model's parameters and the views sequence_forward takes.
template <typename S>
struct Params {
  std::vector<std::vector<S>> arrays;  // per (layer, direction): w_ih, w_hh, b_ih, b_hh
  std::vector<rnncore::DirectionWeights<S>> views;

  Params(const ModelConfig& c, unsigned seed) {
    std::mt19937 gen(seed);
    const int64_t gh = c.gates() * c.hidden_size, slots = c.num_layers * c.directions();
    for (int64_t slot = 0; slot < slots; ++slot) {
      arrays.push_back(random_vector<S>(gh * c.layer_input_size(slot / c.directions()), gen));
      arrays.push_back(random_vector<S>(gh * c.hidden_size, gen));
      arrays.push_back(random_vector<S>(gh, gen));
      arrays.push_back(random_vector<S>(gh, gen));
    }
    for (int64_t slot = 0; slot < slots; ++slot) {
      const auto at = [&](int i) { return arrays[static_cast<std::size_t>(4 * slot + i)].data(); };
      views.push_back({at(0), at(1), c.bias ? at(2) : nullptr, c.bias ? at(3) : nullptr});
    }
  }
};

template <typename S>
struct Outputs {
  std::vector<S> y, h_n, c_n;
  bool operator==(const Outputs& o) const { return y == o.y && h_n == o.h_n && c_n == o.c_n; }
};

// One inference call, on the weights (prepared == nullptr) or on prepared weights.
template <typename S>
Outputs<S> infer(const ModelConfig& c, const Params<S>& params,
                 const rnncore::PreparedWeights<S>* prepared, int64_t T, int64_t N,
                 const std::vector<int64_t>& lengths) {
  std::mt19937 gen(11);
  const int64_t states = c.num_layers * c.directions(), H = c.hidden_size;
  const auto x = random_vector<S>(T * N * c.input_size, gen);
  const auto h0 = random_vector<S>(states * N * H, gen);
  const auto c0 = random_vector<S>(states * N * H, gen);
  Outputs<S> out;
  out.y.resize(static_cast<std::size_t>(T * N * c.directions() * H));
  out.h_n.resize(h0.size());
  out.c_n.resize(c0.size());
  const int64_t* lens = lengths.empty() ? nullptr : lengths.data();
  if (prepared != nullptr) {
    rnncore::sequence_forward<S>(*prepared, T, N, x.data(), h0.data(), c0.data(), lens,
                                 out.y.data(), out.h_n.data(), out.c_n.data());
  } else {
    rnncore::sequence_forward<S>(c, params.views, T, N, x.data(), h0.data(), c0.data(), lens,
                                 out.y.data(), out.h_n.data(), out.c_n.data(), nullptr);
  }
  return out;
}

ModelConfig config_of(CellKind cell, int64_t I, int64_t H, int64_t layers, bool bidirectional,
                      bool bias = true) {
  ModelConfig c;
  c.cell = cell;
  c.input_size = I;
  c.hidden_size = H;
  c.num_layers = layers;
  c.bidirectional = bidirectional;
  c.bias = bias;
  return c;
}

using Setting = rnncore_test::ScopedSetting;

template <typename S>
void check_prepared_matches(CellKind cell, int64_t H, int64_t layers, bool bidirectional,
                            bool bias, const std::string& what) {
  const ModelConfig c = config_of(cell, 7, H, layers, bidirectional, bias);
  const Params<S> params(c, 5);
  const rnncore::PreparedWeights<S> prepared(c, params.views);
  // T = 1 with N = 7 (no unpacked single-step path), T = 9 with N = 5 (rows split 2 + 3).
  for (const auto& shape : {std::pair<int64_t, int64_t>{1, 7}, {9, 5}}) {
    const int64_t T = shape.first, N = shape.second;
    std::vector<std::vector<int64_t>> all_lengths = {{}};
    if (T > 1) all_lengths.push_back({9, 3, 1, 9, 6});
    for (const auto& lengths : all_lengths) {
      const std::string where = what + " T=" + std::to_string(T) + " N=" + std::to_string(N) +
                                " lengths=" + std::to_string(lengths.size());
      EXPECT_TRUE(infer<S>(c, params, &prepared, T, N, lengths) ==
                  infer<S>(c, params, nullptr, T, N, lengths))
          << where;
    }
  }
}

}  // namespace

TEST(Prepared, MatchesSequenceForwardBitwise) {
  for (CellKind cell : {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
    // H = 37: the per-gate layout differs from the one-group one; 32: they coincide.
    for (int64_t H : {37, 32}) {
      for (bool bidirectional : {false, true}) {
        const std::string what = std::string(rnncore::cell_name(cell)) + " H=" +
                                 std::to_string(H) + (bidirectional ? " bi" : " uni");
        check_prepared_matches<float>(cell, H, 2, bidirectional, true, what);
        check_prepared_matches<double>(cell, H, 1, bidirectional, false, what + " f64 no bias");
      }
    }
  }
}

TEST(Prepared, MatchesThroughEveryThreadSplit) {
#ifndef _OPENMP
  GTEST_SKIP() << "built without OpenMP: there is no second thread";
#endif
  for (const char* split : {"one", "units", "rows"}) {
    Setting s("RNNCORE_TIME_LOOP", split, 2);
    for (CellKind cell : {CellKind::Lstm, CellKind::Gru}) {
      check_prepared_matches<float>(cell, 37, 1, false, true, std::string("split ") + split);
    }
  }
  for (const char* wavefront : {"0", "1"}) {
    Setting s("RNNCORE_WAVEFRONT", wavefront, 2);
    check_prepared_matches<float>(CellKind::Lstm, 37, 3, false, true,
                                  std::string("wavefront ") + wavefront);
  }
}

TEST(Prepared, KeepsItsOwnCopyOfTheWeights) {
  const ModelConfig c = config_of(CellKind::Gru, 7, 21, 2, true);
  Params<float> params(c, 8);
  const auto before = infer<float>(c, params, nullptr, 6, 3, {});
  const rnncore::PreparedWeights<float> prepared(c, params.views);
  for (auto& array : params.arrays) {
    for (auto& v : array) v = -v;  // every weight and bias changed after preparing
  }
  EXPECT_TRUE(infer<float>(c, params, &prepared, 6, 3, {}) == before);
  EXPECT_FALSE(infer<float>(c, params, nullptr, 6, 3, {}) == before);
}

TEST(Prepared, SingleFewRowStepAgreesWithTheUnpackedPath) {
  // sequence_forward runs one step of <= 4 sequences on the weights as they are (another
  // summation order); prepared weights always use the packed kernels.
  for (CellKind cell : {CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru}) {
    const ModelConfig c = config_of(cell, 19, 45, 2, false);
    const Params<float> params(c, 9);
    const rnncore::PreparedWeights<float> prepared(c, params.views);
    for (int64_t N = 1; N <= 4; ++N) {
      const auto got = infer<float>(c, params, &prepared, 1, N, {});
      const auto want = infer<float>(c, params, nullptr, 1, N, {});
      for (std::size_t i = 0; i < want.y.size(); ++i) {
        ASSERT_NEAR(got.y[i], want.y[i], 1e-5 * (1 + std::abs(want.y[i])))
            << rnncore::cell_name(cell) << " N=" << N << " y[" << i << "]";
      }
    }
  }
}

TEST(Prepared, RefusesWrongWeights) {
  const ModelConfig c = config_of(CellKind::Lstm, 3, 4, 2, false);
  Params<float> params(c, 1);
  auto one_short = params.views;
  one_short.pop_back();
  EXPECT_THROW(rnncore::PreparedWeights<float>(c, one_short), std::invalid_argument);
  auto null_weight = params.views;
  null_weight[1].w_hh = nullptr;
  EXPECT_THROW(rnncore::PreparedWeights<float>(c, null_weight), std::invalid_argument);
  ModelConfig bad = c;
  bad.hidden_size = 0;
  EXPECT_THROW(rnncore::PreparedWeights<float>(bad, params.views), std::invalid_argument);
}

TEST(Prepared, ReportsItsSize) {
  const ModelConfig aligned = config_of(CellKind::Lstm, 32, 32, 1, false);
  const ModelConfig odd = config_of(CellKind::Lstm, 32, 37, 1, false);
  const rnncore::PreparedWeights<float> a(aligned, Params<float>(aligned, 2).views);
  const rnncore::PreparedWeights<float> b(odd, Params<float>(odd, 2).views);
  // At least the weights and biases themselves; the odd size holds a second W_hh layout.
  EXPECT_GE(a.nbytes(), sizeof(float) * (4 * 32 * (32 + 32) + 2 * 4 * 32));
  EXPECT_GT(b.nbytes(), sizeof(float) * (4 * 37 * (32 + 2 * 37) + 2 * 4 * 37));
}
