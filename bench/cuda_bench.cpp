// Times rnncore's CUDA kernels for bench/cuda_compare.py (which times cuDNN through torch.nn on
// the same shapes). Reads one case per line on stdin:
//   CELL H N T MODE REPS       CELL: rnn_tanh | lstm | gru; MODE: infer | train | stream
// (input size = H, one layer, one direction, float32, random weights in +-1/sqrt(H)) and prints
// one JSON object per case: {"cell", "H", "N", "T", "mode", "path", "ms": [each timed rep]}.
// infer: forward without cache (ForwardPath::Auto: the persistent kernel where it fits);
// train: forward with a DeviceCache then backward; stream: T calls of DeviceStream::step.
// Each rep is wall-clock time from the first call to ctx.synchronize(); one untimed warm-up.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/cuda.h"

namespace {

namespace cuda = rnncore::cuda;

// n values uniform in +-scale (zeros for scale 0): a block of 2^20 draws repeated, so that the
// largest points (10^8 and more values) do not spend seconds drawing on the host.
float* device_random(std::size_t n, float scale, std::mt19937& gen) {
  float* p = nullptr;
  if (cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)) != cudaSuccess) {
    throw std::runtime_error("cudaMalloc of " + std::to_string(n) + " floats failed");
  }
  if (scale == 0.0f) {
    if (cudaMemset(p, 0, n * sizeof(float)) != cudaSuccess) throw std::runtime_error("cudaMemset failed");
    return p;
  }
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> block(std::min<std::size_t>(n, std::size_t(1) << 20));
  for (auto& v : block) v = u(gen);
  for (std::size_t at = 0; at < n; at += block.size()) {
    const std::size_t count = std::min(block.size(), n - at);
    if (cudaMemcpy(p + at, block.data(), count * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess) {
      throw std::runtime_error("cudaMemcpy failed");
    }
  }
  return p;
}

void run_case(cuda::Context& ctx, const std::string& cell, int64_t H, int64_t N, int64_t T,
              const std::string& mode, int reps) {
  rnncore::ModelConfig config;
  config.cell = cell == "lstm" ? rnncore::CellKind::Lstm
                : cell == "gru" ? rnncore::CellKind::Gru
                                : rnncore::CellKind::RnnTanh;
  config.input_size = H;
  config.hidden_size = H;
  const int64_t GH = config.gates() * H;
  std::mt19937 gen(1);
  const float scale = 1.0f / std::sqrt(static_cast<float>(H));
  std::vector<float*> owned;
  const auto make = [&](std::size_t n, float s) {
    owned.push_back(device_random(n, s, gen));
    return owned.back();
  };
  std::vector<rnncore::DirectionWeights<float>> w{
      {make(GH * H, scale), make(GH * H, scale), make(GH, scale), make(GH, scale)}};
  std::vector<rnncore::DirectionGrads<float>> g{
      {make(GH * H, 0), make(GH * H, 0), make(GH, 0), make(GH, 0)}};
  float* x = make(T * N * H, 1.0f);
  float* y = make(T * N * H, 0);
  float* h_n = make(N * H, 0);
  float* c_n = make(N * H, 0);
  float* grad_y = make(T * N * H, 1.0f);
  float* grad_x = make(T * N * H, 0);
  float* grad_h0 = make(N * H, 0);
  float* grad_c0 = make(N * H, 0);
  cuda::DeviceCache<float> cache;
  std::unique_ptr<cuda::DeviceStream<float>> stream;
  if (mode == "stream") stream = std::make_unique<cuda::DeviceStream<float>>(ctx, config, w, N);
  const auto once = [&] {
    if (mode == "infer") {
      cuda::forward<float>(ctx, config, w, T, N, x, nullptr, nullptr, nullptr, y, h_n, c_n, nullptr);
    } else if (mode == "train") {
      cuda::forward<float>(ctx, config, w, T, N, x, nullptr, nullptr, nullptr, y, h_n, c_n, &cache);
      cuda::backward<float>(ctx, config, w, cache, grad_y, nullptr, nullptr, grad_x, grad_h0,
                            grad_c0, g);
    } else if (mode == "stream") {
      for (int64_t t = 0; t < T; ++t) stream->step(x + t * N * H, y + t * N * H);
    } else {
      throw std::invalid_argument("mode must be infer, train or stream, got " + mode);
    }
    ctx.synchronize();
  };
  once();
  std::ostringstream ms;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    once();
    const double elapsed =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    ms << (r ? ", " : "") << elapsed;
  }
  const cuda::ForwardPath path =
      cuda::choose_path(config, N, sizeof(float), mode == "train", cuda::ForwardPath::Auto,
                        ctx.info().multiprocessors, ctx.info().shared_bytes_per_block);
  std::cout << "{\"cell\": \"" << cell << "\", \"H\": " << H << ", \"N\": " << N << ", \"T\": " << T
            << ", \"mode\": \"" << mode << "\", \"path\": \""
            << (mode == "stream" ? "stream" : path == cuda::ForwardPath::Persistent ? "persistent" : "launches")
            << "\", \"ms\": [" << ms.str() << "]}" << std::endl;
  for (float* p : owned) cudaFree(p);
}

}  // namespace

int main() {
  try {
    cuda::Context ctx;
    std::cerr << "cuda_bench: " << ctx.info().name << "\n";
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream in(line);
      std::string cell, mode;
      int64_t H = 0, N = 0, T = 0;
      int reps = 0;
      if (!(in >> cell >> H >> N >> T >> mode >> reps)) continue;
      run_case(ctx, cell, H, N, T, mode, reps);
    }
  } catch (const std::exception& e) {
    std::cerr << "cuda_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
