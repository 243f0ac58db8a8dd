// The host side of the CUDA kernels, tested in every build (no GPU needed): the shared pointwise
// formulas (cell_unit.h) that both the CPU and the CUDA kernels call, the argument checks, the
// persistent kernel's plan and the choice of path, and what a build without CUDA reports.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/cell.h"
#include "rnncore/cell_unit.h"
#include "rnncore/cuda.h"

namespace {

using rnncore::CellKind;
using rnncore::ModelConfig;
namespace cuda = rnncore::cuda;
namespace unit = rnncore::cell::unit;

// Plain std:: activations: the formulas are checked against independent textbook expressions.
struct StdActivation {
  static double tanh(double a) { return std::tanh(a); }
  static double logistic(double a) { return 1.0 / (1.0 + std::exp(-a)); }
};

double sig(double a) { return 1.0 / (1.0 + std::exp(-a)); }

std::vector<double> draws(int n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.5);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = normal(gen);
  return v;
}

TEST(CellUnit, LstmForwardAndBackwardMatchTheTextbookAndFiniteDifferences) {
  const auto v = draws(6, 1);
  double i = v[0], f = v[1], g = v[2], o = v[3], c, tc, h;
  unit::lstm_forward<StdActivation>(i, f, g, o, v[4], c, tc, h);
  EXPECT_DOUBLE_EQ(i, sig(v[0]));
  EXPECT_DOUBLE_EQ(g, std::tanh(v[2]));
  EXPECT_DOUBLE_EQ(c, sig(v[1]) * v[4] + sig(v[0]) * std::tanh(v[2]));
  EXPECT_DOUBLE_EQ(h, sig(v[3]) * std::tanh(c));
  // Backward against central differences of L = a*h' + b*c' in each pre-activation.
  const double wa = 0.7, wb = -1.3;
  double di, df, dg, d_o, dc_prev;
  unit::lstm_backward(i, f, g, o, v[4], tc, wa, wb, di, df, dg, d_o, dc_prev);
  const auto loss = [&](int k, double eps, double cp) {
    double p[4] = {v[0], v[1], v[2], v[3]};
    p[k] += eps;
    double c2, tc2, h2;
    unit::lstm_forward<StdActivation>(p[0], p[1], p[2], p[3], cp, c2, tc2, h2);
    return wa * h2 + wb * c2;
  };
  const double eps = 1e-6;
  const double got[4] = {di, df, dg, d_o};
  for (int k = 0; k < 4; ++k) {
    const double fd = (loss(k, eps, v[4]) - loss(k, -eps, v[4])) / (2 * eps);
    EXPECT_NEAR(got[k], fd, 1e-7) << "gate " << k;
  }
  const double fd_c = (loss(0, 0, v[4] + eps) - loss(0, 0, v[4] - eps)) / (2 * eps);
  EXPECT_NEAR(dc_prev, fd_c, 1e-7);
}

TEST(CellUnit, GruForwardAndBackwardMatchFiniteDifferences) {
  const auto v = draws(7, 2);
  // Pre-activations xr, xz, xn; hidden side hr, hz, hn; h_prev.
  const auto forward = [&](const double* p, double h_prev) {
    double r = p[0], z = p[1], n = p[2];
    return unit::gru_forward<StdActivation>(r, z, n, p[3], p[4], p[5], h_prev);
  };
  double r = v[0], z = v[1], n = v[2];
  const double h = unit::gru_forward<StdActivation>(r, z, n, v[3], v[4], v[5], v[6]);
  const double rr = sig(v[0] + v[3]), zz = sig(v[1] + v[4]), nn = std::tanh(v[2] + rr * v[5]);
  EXPECT_DOUBLE_EQ(h, (1 - zz) * nn + zz * v[6]);
  double dxr, dxz, dxn, dhn, direct;
  unit::gru_backward(r, z, n, v[5], v[6], 1.0, dxr, dxz, dxn, dhn, direct);
  const double eps = 1e-6;
  const auto fd = [&](int k) {
    double p[6] = {v[0], v[1], v[2], v[3], v[4], v[5]}, q[6] = {v[0], v[1], v[2], v[3], v[4], v[5]};
    p[k] += eps;
    q[k] -= eps;
    return (forward(p, v[6]) - forward(q, v[6])) / (2 * eps);
  };
  EXPECT_NEAR(dxr, fd(0), 1e-7);
  EXPECT_NEAR(dxz, fd(1), 1e-7);
  EXPECT_NEAR(dxn, fd(2), 1e-7);
  EXPECT_NEAR(dhn, fd(5), 1e-7);  // W_hn h + b_hn
  const double p[6] = {v[0], v[1], v[2], v[3], v[4], v[5]};
  EXPECT_NEAR(direct, (forward(p, v[6] + eps) - forward(p, v[6] - eps)) / (2 * eps), 1e-7);
}

TEST(CellUnit, RnnForwardAndBackward) {
  EXPECT_DOUBLE_EQ(unit::rnn_forward<StdActivation>(0.3, false), std::tanh(0.3));
  EXPECT_DOUBLE_EQ(unit::rnn_forward<StdActivation>(-0.3, true), 0.0);
  EXPECT_DOUBLE_EQ(unit::rnn_forward<StdActivation>(0.3, true), 0.3);
  const double h = std::tanh(0.3);
  EXPECT_DOUBLE_EQ(unit::rnn_backward(h, 2.0, false), 2.0 * (1 - h * h));
  EXPECT_DOUBLE_EQ(unit::rnn_backward(0.0, 2.0, true), 0.0);
  EXPECT_DOUBLE_EQ(unit::rnn_backward(0.3, 2.0, true), 2.0);
}

// The float rows of cell.h take SIMD packets through the same gate algebra as cell_unit.h (which
// their scalar tails call): both must agree to float rounding over whole rows, tails included.
TEST(CellUnit, SimdRowsAgreeWithTheSharedFormulas) {
  for (int H : {1, 7, 8, 17, 33, 64}) {
    const auto v = draws(8 * H, static_cast<unsigned>(H));
    std::vector<float> gates(4 * H), c_prev(H), c(H), tc(H), h(H);
    for (int k = 0; k < 4 * H; ++k) gates[k] = static_cast<float>(v[k]);
    for (int j = 0; j < H; ++j) c_prev[j] = static_cast<float>(v[4 * H + j]);
    rnncore::cell::lstm_forward_row(H, gates.data(), c_prev.data(), c.data(), tc.data(), h.data());
    for (int j = 0; j < H; ++j) {
      float i = static_cast<float>(v[j]), f = static_cast<float>(v[H + j]);
      float g = static_cast<float>(v[2 * H + j]), o = static_cast<float>(v[3 * H + j]);
      float cu, tcu, hu;
      unit::lstm_forward<rnncore::cell::ScalarActivation>(i, f, g, o, c_prev[j], cu, tcu, hu);
      EXPECT_NEAR(h[j], hu, 2e-6f) << "H=" << H << " j=" << j;
      EXPECT_NEAR(c[j], cu, 2e-6f * (1 + std::fabs(cu)));
      EXPECT_NEAR(gates[j], i, 2e-6f);
    }
    std::vector<float> ghp(3 * H), bhn(H), hp(H), hn(H), hg(H), gg(3 * H);
    for (int k = 0; k < 3 * H; ++k) {
      gg[k] = static_cast<float>(v[k]);
      ghp[k] = static_cast<float>(v[3 * H + k]);
    }
    for (int j = 0; j < H; ++j) {
      bhn[j] = static_cast<float>(v[6 * H + j]);
      hp[j] = static_cast<float>(v[7 * H + j]);
    }
    const std::vector<float> gg0 = gg;
    rnncore::cell::gru_forward_row(H, gg.data(), ghp.data(), bhn.data(), hp.data(), hn.data(), hg.data());
    for (int j = 0; j < H; ++j) {
      float r = gg0[j], z = gg0[H + j], n = gg0[2 * H + j];
      const float hnu = ghp[2 * H + j] + bhn[j];
      const float hu = unit::gru_forward<rnncore::cell::ScalarActivation>(
          r, z, n, ghp[j], ghp[H + j], hnu, hp[j]);
      EXPECT_NEAR(hg[j], hu, 2e-6f) << "H=" << H << " j=" << j;
      EXPECT_EQ(hn[j], hnu);
    }
  }
}

// The backward rows evaluate cell_unit.h's formulas on whole packets (cell::fused::Lanes) and
// element by element in the tail; every unit must match the formula called on its own, with
// grad_c_prev aliasing grad_c as the sequence kernels pass it.
TEST(CellUnit, SimdBackwardRowsAgreeWithTheSharedFormulas) {
  for (int H : {1, 7, 8, 9, 17, 33, 64}) {
    const auto v = draws(13 * H, static_cast<unsigned>(100 + H));
    const auto at = [&](int k) { return static_cast<float>(v[static_cast<std::size_t>(k)]); };
    std::vector<float> gates(4 * H), c_prev(H), tanh_c(H), grad_h(H), grad_c(H), grad_gates(4 * H);
    for (int k = 0; k < 4 * H; ++k) gates[k] = 0.5f + 0.4f * at(k);
    for (int j = 0; j < H; ++j) {
      c_prev[j] = at(4 * H + j);
      tanh_c[j] = std::tanh(at(5 * H + j));
      grad_h[j] = at(6 * H + j);
      grad_c[j] = at(7 * H + j);
    }
    const std::vector<float> grad_c_in = grad_c;
    rnncore::cell::lstm_backward_row(H, gates.data(), c_prev.data(), tanh_c.data(), grad_h.data(),
                                     grad_c.data(), grad_gates.data(), grad_c.data());
    for (int j = 0; j < H; ++j) {
      float di, df, dg, d_o, dc;
      unit::lstm_backward(gates[j], gates[H + j], gates[2 * H + j], gates[3 * H + j], c_prev[j],
                          tanh_c[j], grad_h[j], grad_c_in[j], di, df, dg, d_o, dc);
      const float expected[] = {di, df, dg, d_o};
      for (int k = 0; k < 4; ++k) {
        EXPECT_NEAR(grad_gates[k * H + j], expected[k], 1e-6f) << "H=" << H << " j=" << j << " gate " << k;
      }
      EXPECT_NEAR(grad_c[j], dc, 1e-6f) << "H=" << H << " j=" << j;
    }
    std::vector<float> gru_gates(3 * H), hn(H), h_prev(H), grad_in(3 * H), grad_hid(3 * H), direct(H);
    for (int j = 0; j < H; ++j) {
      gru_gates[j] = 0.5f + 0.4f * at(8 * H + j);       // r
      gru_gates[H + j] = 0.5f + 0.4f * at(12 * H + j);  // z
      gru_gates[2 * H + j] = std::tanh(at(9 * H + j));  // n
      hn[j] = at(10 * H + j);
      h_prev[j] = at(11 * H + j);
    }
    rnncore::cell::gru_backward_row(H, gru_gates.data(), hn.data(), h_prev.data(), grad_h.data(),
                                    grad_in.data(), grad_hid.data(), direct.data());
    for (int j = 0; j < H; ++j) {
      float dxr, dxz, dxn, dhn, dd;
      unit::gru_backward(gru_gates[j], gru_gates[H + j], gru_gates[2 * H + j], hn[j], h_prev[j],
                         grad_h[j], dxr, dxz, dxn, dhn, dd);
      EXPECT_NEAR(grad_in[j], dxr, 1e-6f) << "H=" << H << " j=" << j;
      EXPECT_NEAR(grad_in[H + j], dxz, 1e-6f);
      EXPECT_NEAR(grad_in[2 * H + j], dxn, 1e-6f);
      EXPECT_EQ(grad_hid[j], grad_in[j]);
      EXPECT_EQ(grad_hid[H + j], grad_in[H + j]);
      EXPECT_NEAR(grad_hid[2 * H + j], dhn, 1e-6f);
      EXPECT_NEAR(direct[j], dd, 1e-6f);
    }
  }
}

ModelConfig config_of(CellKind cell, int64_t H, int64_t layers = 1, bool bidirectional = false) {
  ModelConfig c;
  c.cell = cell;
  c.input_size = 5;
  c.hidden_size = H;
  c.num_layers = layers;
  c.bidirectional = bidirectional;
  return c;
}

// An H200: 132 multiprocessors, 227 KiB of opt-in shared memory per block.
constexpr int kSms = 132;
constexpr std::size_t kShared = 227 * 1024;

TEST(CudaPlan, PersistentPlanSplitsUnitsOverTheGridAndCountsSharedMemory) {
  const cuda::PersistentPlan p = cuda::persistent_plan(CellKind::Lstm, 1024, 8, 4, 1, kSms, kShared);
  ASSERT_TRUE(p.fits) << p.why_not;
  EXPECT_EQ(p.units_per_block, 8);  // ceil(1024 / 132)
  EXPECT_EQ(p.blocks, 128);         // ceil(1024 / 8)
  EXPECT_EQ(p.shared_bytes, (4u * 8 * 1024 + 4u * 8 * 8) * 4);
  // Both directions at once: half the multiprocessors each, so twice the units per block, and
  // H = 1024 no longer fits (4 * 16 rows * 1024 * 4 bytes = 256 KiB); H = 512 does.
  EXPECT_FALSE(cuda::persistent_plan(CellKind::Lstm, 1024, 8, 4, 2, kSms, kShared).fits);
  const cuda::PersistentPlan bi = cuda::persistent_plan(CellKind::Lstm, 512, 8, 4, 2, kSms, kShared);
  ASSERT_TRUE(bi.fits) << bi.why_not;
  EXPECT_EQ(bi.units_per_block, 8);  // ceil(512 / 66)
  EXPECT_EQ(bi.blocks, 64);
}

TEST(CudaPlan, PersistentPlanRefusesWhatDoesNotFit) {
  // LSTM H = 2048 float: 4 * 16 rows * 2048 * 4 bytes = 512 KiB per block.
  const cuda::PersistentPlan big = cuda::persistent_plan(CellKind::Lstm, 2048, 1, 4, 1, kSms, kShared);
  EXPECT_FALSE(big.fits);
  EXPECT_NE(big.why_not.find("shared memory"), std::string::npos) << big.why_not;
  EXPECT_FALSE(cuda::persistent_plan(CellKind::Gru, 256, 9, 4, 1, kSms, kShared).fits);
  EXPECT_FALSE(cuda::persistent_plan(CellKind::Gru, 256, 4, 4, 1, 0, kShared).fits);
  // float64 halves what fits: LSTM H = 1024 fits in float, not in double.
  EXPECT_TRUE(cuda::persistent_plan(CellKind::Lstm, 1024, 8, 4, 1, kSms, kShared).fits);
  EXPECT_FALSE(cuda::persistent_plan(CellKind::Lstm, 1024, 8, 8, 1, kSms, kShared).fits);
}

TEST(CudaPlan, ChoosePathBySizeAndRequest) {
  using cuda::ForwardPath;
  const ModelConfig small = config_of(CellKind::Lstm, 256);
  EXPECT_EQ(cuda::choose_path(small, 8, 4, false, ForwardPath::Auto, kSms, kShared), ForwardPath::Persistent);
  EXPECT_EQ(cuda::choose_path(small, 64, 4, false, ForwardPath::Auto, kSms, kShared), ForwardPath::Launches);
  EXPECT_EQ(cuda::choose_path(small, 8, 4, true, ForwardPath::Auto, kSms, kShared), ForwardPath::Launches);
  EXPECT_EQ(cuda::choose_path(small, 1, 4, false, ForwardPath::Launches, kSms, kShared), ForwardPath::Launches);
  EXPECT_EQ(cuda::choose_path(config_of(CellKind::Lstm, 2048), 1, 4, false, ForwardPath::Auto, kSms, kShared),
            ForwardPath::Launches);
  try {
    cuda::choose_path(small, 64, 4, false, ForwardPath::Persistent, kSms, kShared);
    FAIL() << "a forced persistent path that cannot run must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("batch 64 > 8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cuda::choose_path(small, 4, 4, true, ForwardPath::Persistent, kSms, kShared),
               std::invalid_argument);
}

// A message check: the call throws std::invalid_argument mentioning `needle`.
template <typename F>
void expect_invalid(F&& call, const std::string& needle) {
  try {
    call();
    FAIL() << "expected std::invalid_argument mentioning " << needle;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(CudaPlan, ForwardArgumentChecksNameTheArgument) {
  const ModelConfig config = config_of(CellKind::Gru, 4, 2, true);
  const float w = 0;
  const rnncore::DirectionWeights<float> ok{&w, &w, &w, &w};
  std::vector<rnncore::DirectionWeights<float>> weights(4, ok);
  const float x = 0;
  float y = 0;
  EXPECT_NO_THROW(cuda::check_forward_args<float>(config, weights, 3, 2, &x, nullptr, &y));
  expect_invalid([&] { cuda::check_forward_args<float>(config, weights, 0, 2, &x, nullptr, &y); }, "steps");
  expect_invalid([&] { cuda::check_forward_args<float>(config, weights, 3, 0, &x, nullptr, &y); }, "batch");
  expect_invalid([&] { cuda::check_forward_args<float>(config, weights, 3, 2, nullptr, nullptr, &y); }, "x must");
  expect_invalid([&] { cuda::check_forward_args<float>(config, weights, 3, 2, &x, nullptr, nullptr); }, "y must");
  std::vector<rnncore::DirectionWeights<float>> three(3, ok);
  expect_invalid([&] { cuda::check_forward_args<float>(config, three, 3, 2, &x, nullptr, &y); }, "weights: needs");
  weights[3].b_hh = nullptr;
  expect_invalid([&] { cuda::check_forward_args<float>(config, weights, 3, 2, &x, nullptr, &y); }, "weights[3]");
  weights[3] = ok;
  const int64_t bad_lengths[2] = {3, 4};
  expect_invalid([&] { cuda::check_forward_args<float>(config, weights, 3, 2, &x, bad_lengths, &y); },
                 "lengths[1] must be in 1..3, got 4");
  ModelConfig empty = config;
  empty.hidden_size = 0;
  EXPECT_THROW(cuda::check_forward_args<float>(empty, weights, 3, 2, &x, nullptr, &y), std::invalid_argument);
  EXPECT_THROW(cuda::check_forward_args<float>(config, weights, int64_t(1) << 40, int64_t(1) << 40, &x,
                                               nullptr, &y),
               std::length_error);
}

TEST(CudaPlan, BackwardGradChecksNameTheArgument) {
  ModelConfig config = config_of(CellKind::Lstm, 4);
  double g = 0;
  std::vector<rnncore::DirectionGrads<double>> grads(1, {&g, &g, &g, &g});
  EXPECT_NO_THROW(cuda::check_backward_grads<double>(config, grads, &g, &g));
  expect_invalid([&] { cuda::check_backward_grads<double>(config, grads, nullptr, &g); }, "grad_x");
  expect_invalid([&] { cuda::check_backward_grads<double>(config, grads, &g, nullptr); }, "grad_h0");
  grads[0].b_ih = nullptr;
  expect_invalid([&] { cuda::check_backward_grads<double>(config, grads, &g, &g); }, "grads[0]");
  config.bias = false;
  EXPECT_NO_THROW(cuda::check_backward_grads<double>(config, grads, &g, &g));
}

TEST(CudaBuild, ReportsWhetherCudaWasBuilt) {
#ifdef RNNCORE_WITH_CUDA
  EXPECT_TRUE(cuda::built());
  EXPECT_FALSE(cuda::compiled_version().empty());
#else
  EXPECT_FALSE(cuda::built());
  EXPECT_EQ(cuda::compiled_version(), "");
  std::string why;
  EXPECT_FALSE(cuda::device(&why).has_value());
  EXPECT_NE(why.find("without CUDA"), std::string::npos);
  try {
    cuda::Context ctx;
    FAIL() << "a Context without CUDA must throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("RNNCORE_CUDA=ON"), std::string::npos) << e.what();
  }
#endif
}

}  // namespace
