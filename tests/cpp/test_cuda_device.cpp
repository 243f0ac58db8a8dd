// The CUDA kernels on a GPU against the CPU kernels (which the C++ API check holds to the NumPy
// reference): outputs, final states and every gradient, over cells, dtypes, stacks, directions,
// initial states, variable lengths and both forward paths; and DeviceStream against Stream.
// Built only with RNNCORE_CUDA=ON; every test skips when no CUDA device is present.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "rnncore/cuda.h"
#include "rnncore/model.h"
#include "rnncore/sequence.h"
#include "rnncore/stream.h"
#include "device_vector.h"

namespace {

using rnncore::CellKind;
using rnncore::ModelConfig;
namespace cuda = rnncore::cuda;

#define SKIP_WITHOUT_GPU()                                            \
  do {                                                                \
    std::string why;                                                  \
    if (!cuda::device(&why)) GTEST_SKIP() << "no CUDA device: " << why; \
  } while (0)

using rnncore_test::DeviceVector;
constexpr double kPoison = -7;  // what every output holds before a kernel writes it

// One context for every test (a cuBLAS handle per direction is costly to make per case),
// never destroyed: at exit the CUDA runtime may be torn down before a static's destructor runs.
cuda::Context& context() {
  static cuda::Context* ctx = new cuda::Context;
  return *ctx;
}

template <typename S>
double tolerance() {
  return std::is_same<S, double>::value ? 1e-10 : 1e-5;
}

template <typename S>
void expect_close(const std::vector<S>& got, const std::vector<S>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1.0, err = 0.0;
  for (std::size_t k = 0; k < want.size(); ++k) {
    scale = std::max(scale, std::fabs(double(want[k])));
    err = std::max(err, std::fabs(double(got[k]) - double(want[k])));
  }
  EXPECT_LE(err, tolerance<S>() * scale) << what << ": max difference " << err;
}

struct Case {
  CellKind cell;
  int64_t hidden, layers, batch, steps;
  bool bidirectional, lengths, state, bias;
  cuda::ForwardPath path;
};

std::string name(const Case& c) {
  return "cell=" + std::to_string(int(c.cell)) + " H=" + std::to_string(c.hidden) +
         " L=" + std::to_string(c.layers) + " N=" + std::to_string(c.batch) +
         " T=" + std::to_string(c.steps) + (c.bidirectional ? " bi" : "") +
         (c.lengths ? " lengths" : "") + (c.state ? " state" : "") + (c.bias ? "" : " nobias") +
         " path=" + std::to_string(int(c.path));
}

template <typename S>
void check_case(const Case& c) {
  SCOPED_TRACE(name(c));
  ModelConfig config;
  config.cell = c.cell;
  config.input_size = 5;
  config.hidden_size = c.hidden;
  config.num_layers = c.layers;
  config.bidirectional = c.bidirectional;
  config.bias = c.bias;
  const int64_t T = c.steps, N = c.batch, H = c.hidden, D = config.directions();
  const int64_t slots = c.layers * D, G = config.gates();
  std::mt19937 gen(static_cast<unsigned>(H * 31 + N));
  std::normal_distribution<double> normal(0.0, 0.5);
  const auto random = [&](int64_t n) {
    std::vector<S> v(static_cast<std::size_t>(n));
    for (auto& e : v) e = static_cast<S>(normal(gen));
    return v;
  };
  std::vector<std::vector<S>> params;
  for (int64_t s = 0; s < slots; ++s) {
    const int64_t I = config.layer_input_size(s / D);
    params.push_back(random(G * H * I));
    params.push_back(random(G * H * H));
    params.push_back(random(G * H));
    params.push_back(random(G * H));
  }
  const bool lstm = c.cell == CellKind::Lstm;
  const auto x = random(T * N * 5), h0 = random(slots * N * H), c0 = random(slots * N * H);
  const auto grad_y = random(T * N * D * H), grad_h = random(slots * N * H), grad_c = random(slots * N * H);
  std::vector<int64_t> lengths;
  if (c.lengths) {
    for (int64_t b = 0; b < N; ++b) lengths.push_back(1 + (b * 7 + 3) % T);
    lengths[0] = T;
  }
  const int64_t* lens = c.lengths ? lengths.data() : nullptr;

  // The CPU kernels.
  std::vector<rnncore::DirectionWeights<S>> cpu_w;
  for (int64_t s = 0; s < slots; ++s) {
    const auto at = [&](int k) { return params[std::size_t(4 * s + k)].data(); };
    cpu_w.push_back({at(0), at(1), c.bias ? at(2) : nullptr, c.bias ? at(3) : nullptr});
  }
  std::vector<S> y(T * N * D * H), h_n(slots * N * H), c_n(slots * N * H);
  rnncore::TrainingCache<S> cache;
  const bool training = c.path != cuda::ForwardPath::Persistent;
  rnncore::sequence_forward<S>(config, cpu_w, T, N, x.data(), c.state ? h0.data() : nullptr,
                               c.state ? c0.data() : nullptr, lens, y.data(), h_n.data(),
                               c_n.data(), training ? &cache : nullptr);

  // The same on the GPU.
  cuda::Context& ctx = context();
  std::vector<std::unique_ptr<DeviceVector<S>>> dparams;
  for (const auto& p : params) dparams.push_back(std::make_unique<DeviceVector<S>>(p));
  std::vector<rnncore::DirectionWeights<S>> gpu_w;
  for (int64_t s = 0; s < slots; ++s) {
    const auto at = [&](int k) { return dparams[std::size_t(4 * s + k)]->get(); };
    gpu_w.push_back({at(0), at(1), c.bias ? at(2) : nullptr, c.bias ? at(3) : nullptr});
  }
  DeviceVector<S> dx(x), dh0(h0), dc0(c0), dy(y.size(), S(kPoison)), dhn(h_n.size(), S(kPoison)),
      dcn(c_n.size(), S(kPoison));
  cuda::DeviceCache<S> dcache;
  cuda::forward<S>(ctx, config, gpu_w, T, N, dx.get(), c.state ? dh0.get() : nullptr,
                   c.state ? dc0.get() : nullptr, lens, dy.get(), dhn.get(), dcn.get(),
                   training ? &dcache : nullptr, c.path);
  ctx.synchronize();
  expect_close(dy.host(), y, "y");
  expect_close(dhn.host(), h_n, "h_n");
  if (lstm) expect_close(dcn.host(), c_n, "c_n");
  if (!training) return;

  std::vector<S> grad_x(T * N * 5), grad_h0(slots * N * H), grad_c0(slots * N * H);
  std::vector<std::vector<S>> cpu_g;
  for (int64_t s = 0; s < slots; ++s) {
    for (int k = 0; k < 4; ++k) cpu_g.emplace_back(params[std::size_t(4 * s + k)].size());
  }
  std::vector<rnncore::DirectionGrads<S>> cg;
  for (int64_t s = 0; s < slots; ++s) {
    const auto at = [&](int k) { return cpu_g[std::size_t(4 * s + k)].data(); };
    cg.push_back({at(0), at(1), at(2), at(3)});
  }
  rnncore::sequence_backward<S>(config, cpu_w, cache, grad_y.data(), grad_h.data(),
                                lstm ? grad_c.data() : nullptr, grad_x.data(), grad_h0.data(),
                                lstm ? grad_c0.data() : nullptr, cg);

  DeviceVector<S> dgy(grad_y), dgh(grad_h), dgc(grad_c), dgx(grad_x.size(), S(kPoison)),
      dgh0(grad_h0.size(), S(kPoison)), dgc0(grad_c0.size(), S(kPoison));
  std::vector<std::unique_ptr<DeviceVector<S>>> gpu_g;
  for (const auto& g : cpu_g) gpu_g.push_back(std::make_unique<DeviceVector<S>>(g.size(), S(kPoison)));
  std::vector<rnncore::DirectionGrads<S>> gg;
  for (int64_t s = 0; s < slots; ++s) {
    const auto at = [&](int k) { return gpu_g[std::size_t(4 * s + k)]->get(); };
    gg.push_back({at(0), at(1), at(2), at(3)});
  }
  cuda::backward<S>(ctx, config, gpu_w, dcache, dgy.get(), dgh.get(), lstm ? dgc.get() : nullptr,
                    dgx.get(), dgh0.get(), lstm ? dgc0.get() : nullptr, gg);
  ctx.synchronize();
  expect_close(dgx.host(), grad_x, "grad_x");
  expect_close(dgh0.host(), grad_h0, "grad_h0");
  if (lstm) expect_close(dgc0.host(), grad_c0, "grad_c0");
  for (std::size_t k = 0; k < cpu_g.size(); ++k) {
    if (!c.bias && k % 4 >= 2) continue;
    expect_close(gpu_g[k]->host(), cpu_g[k], "grad param " + std::to_string(k));
  }
}

std::vector<Case> grid() {
  std::vector<Case> cases;
  int i = 0;
  for (CellKind cell : {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
    for (int64_t H : {1, 7, 32, 33, 256}) {
      for (int64_t N : {1, 3, 8, 17}) {
        const int64_t layers = 1 + i % 2;
        const bool bi = (i / 2) % 2 == 1;
        const bool lengths = i % 3 == 1;
        cases.push_back({cell, H, layers, N, int64_t(1 + (i * 5) % 9), bi, lengths, i % 4 != 3,
                         i % 7 != 6, cuda::ForwardPath::Launches});
        cases.push_back({cell, H, layers, N, int64_t(2 + (i * 3) % 7), bi, lengths, i % 4 != 2,
                         true, N <= 8 ? cuda::ForwardPath::Persistent : cuda::ForwardPath::Auto});
        ++i;
      }
    }
  }
  return cases;
}

TEST(CudaDevice, Float64MatchesTheCpuKernels) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : grid()) check_case<double>(c);
}

TEST(CudaDevice, Float32MatchesTheCpuKernels) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : grid()) check_case<float>(c);
}

TEST(CudaDevice, StreamMatchesTheCpuStream) {
  SKIP_WITHOUT_GPU();
  for (CellKind cell : {CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru}) {
    ModelConfig config;
    config.cell = cell;
    config.input_size = 5;
    config.hidden_size = 33;
    config.num_layers = 2;
    rnncore::Model<float> model(config);
    std::mt19937 init(7);
    std::uniform_real_distribution<float> uniform(-0.4f, 0.4f);
    for (std::size_t p = 0; p < model.specs().size(); ++p) {
      for (float& w : model.parameter(p)) w = uniform(init);
    }
    const auto weights = model.weights();
    const int64_t N = 6, H = 33, T = 5;
    std::vector<std::unique_ptr<DeviceVector<float>>> dparams;
    std::vector<rnncore::DirectionWeights<float>> gpu_w;
    for (std::size_t l = 0; l < weights.size(); ++l) {
      const int64_t G = config.gates(), I = config.layer_input_size(int64_t(l));
      const auto put = [&](const float* p, int64_t n) {
        dparams.push_back(std::make_unique<DeviceVector<float>>(std::vector<float>(p, p + n)));
        return dparams.back()->get();
      };
      gpu_w.push_back({put(weights[l].w_ih, G * H * I), put(weights[l].w_hh, G * H * H),
                       put(weights[l].b_ih, G * H), put(weights[l].b_hh, G * H)});
    }
    cuda::Context& ctx = context();
    cuda::DeviceStream<float> gpu(ctx, config, gpu_w, N);
    rnncore::Stream<float> cpu(model, N);
    std::mt19937 gen(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<float> x(N * 5), y(N * H);
      for (auto& e : x) e = normal(gen);
      DeviceVector<float> dx(x), dy(y.size(), float(kPoison));
      gpu.step(dx.get(), dy.get());
      cpu.step(x.data(), y.data());
      ctx.synchronize();
      expect_close(dy.host(), y, "stream y, step " + std::to_string(t));
    }
  }
}

}  // namespace
