// rnncore's streaming step against RTNeural's, in the same run, on the same weights.
//
//   rtneural_compare [--rounds N] [--quick]
//
// Built only when CMake is given an RTNeural checkout (-DRTNEURAL_DIR=/path/to/RTNeural; it is
// BSD-licensed and fetched by the user, never part of this repository). RTNeural is compiled
// here with its Eigen backend against the same Eigen as rnncore, and the same compiler flags.
//
// For each case, one float32 layer with batch 1, the state carried from call to call (what a
// real-time audio or control loop does): rnncore::Stream::step, RTNeural's compile-time ModelT
// (sizes known to the compiler) and its run-time Model. All three get the same weights (PyTorch
// layout converted as RTNeural's torch_helpers do) and are first checked to give the same outputs
// over 200 frames (max |difference| printed; the run fails above 1e-4). Then they are timed
// interleaved: each round times a block of consecutive steps of each library in turn (a block
// lasts ~20 us; a clock read costs ~20 ns, as much as a small step), and the medians over the
// rounds are reported. ratio = rnncore's median / ModelT's median (< 1: rnncore faster). A fourth
// contender, `read`, only reads as many bytes as the stream holds (ReadFloor): how close a step
// is to the bandwidth of the cache its weights come from.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <RTNeural/RTNeural.h>

#include "random_model.h"
#include "rnncore/model.h"
#include "rnncore/stream.h"

namespace {

using Clock = std::chrono::steady_clock;
using Matrix = std::vector<std::vector<float>>;

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

// W [rows, cols] (PyTorch, row-major) as RTNeural's [cols][rows].
Matrix transposed(const std::vector<float>& w, int64_t rows, int64_t cols) {
  Matrix t(static_cast<std::size_t>(cols), std::vector<float>(static_cast<std::size_t>(rows)));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) t[c][r] = w[static_cast<std::size_t>(r * cols + c)];
  }
  return t;
}

// RTNeural's GRU orders the gates z, r, n where PyTorch has r, z, n.
void swap_rz(std::vector<float>& row, int64_t H) {
  std::swap_ranges(row.begin(), row.begin() + H, row.begin() + H);
}

// Loads rnncore's weights into an RTNeural LSTM or GRU layer (compile-time or run-time).
template <typename Layer>
void load_lstm(Layer& layer, const rnncore::Model<float>& m) {
  const int64_t I = m.config().input_size, H = m.config().hidden_size;
  layer.setWVals(transposed(m.parameter("weight_ih_l0"), 4 * H, I));
  layer.setUVals(transposed(m.parameter("weight_hh_l0"), 4 * H, H));
  std::vector<float> bias = m.parameter("bias_ih_l0");
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] += m.parameter("bias_hh_l0")[i];
  layer.setBVals(bias);
}

template <typename Layer>
void load_gru(Layer& layer, const rnncore::Model<float>& m) {
  const int64_t I = m.config().input_size, H = m.config().hidden_size;
  Matrix w = transposed(m.parameter("weight_ih_l0"), 3 * H, I);
  Matrix u = transposed(m.parameter("weight_hh_l0"), 3 * H, H);
  for (auto& row : w) swap_rz(row, H);
  for (auto& row : u) swap_rz(row, H);
  Matrix b = {m.parameter("bias_ih_l0"), m.parameter("bias_hh_l0")};
  for (auto& row : b) swap_rz(row, H);
  layer.setWVals(w);
  layer.setUVals(u);
  layer.setBVals(b);
}

// One library's step: consumes frame x (aligned, input_size floats), returns the new h.
using StepFn = std::function<const float*(const float*)>;

struct Contender {
  const char* name;
  StepFn step;
  std::function<void()> reset;
};

// The per-step time of `block` consecutive steps, in microseconds.
double time_block(const Contender& c, const float* frames, int64_t frame_stride, int block) {
  const auto start = Clock::now();
  const float* out = nullptr;
  for (int i = 0; i < block; ++i) out = c.step(frames + (i % 64) * frame_stride);
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  volatile float sink = out[0];
  (void)sink;
  return us / block;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Row {
  double rnncore_us, modelt_us, model_us, read_us, max_diff, kib;
};

// The floor a step cannot beat: reading every byte the stream holds (its packed weights, state
// and scratch: Stream::bytes_needed) once, as a step does, into 8 running sums (no multiply, no
// cell math), walked front to back and back to front in turn as the stream walks its panels.
// Where a step takes little more than this, it is bound by the cache the weights come from.
class ReadFloor {
 public:
  explicit ReadFloor(int64_t bytes) : data_(static_cast<std::size_t>((bytes + 255) / 256 * 64), 1.0f) {}
  const float* pass() {
    using Packet = Eigen::internal::packet_traits<float>::type;
    constexpr int64_t L = Eigen::internal::unpacket_traits<Packet>::size;
    const int64_t n = static_cast<int64_t>(data_.size()), blocks = n / (8 * L);
    Packet acc[8];
    for (Packet& a : acc) a = Eigen::internal::pset1<Packet>(0.0f);
    for (int64_t i = 0; i < blocks; ++i) {
      const float* p = data_.data() + (backwards_ ? blocks - 1 - i : i) * 8 * L;
      for (int j = 0; j < 8; ++j) acc[j] = Eigen::internal::padd(acc[j], Eigen::internal::pload<Packet>(p + j * L));
    }
    backwards_ = !backwards_;
    for (int j = 1; j < 8; ++j) acc[0] = Eigen::internal::padd(acc[0], acc[j]);
    Eigen::internal::pstore(sum_, acc[0]);
    return sum_;
  }

 private:
  std::vector<float, rnncore::detail::AlignedAllocator<float>> data_;
  bool backwards_ = false;
  alignas(64) float sum_[16] = {};
};

template <int I, int H, bool Lstm>
Row compare(int rounds) {
  const auto cell = Lstm ? rnncore::CellKind::Lstm : rnncore::CellKind::Gru;
  // PyTorch's initialisation, U(-1/sqrt(H), 1/sqrt(H)).
  const rnncore::Model<float> model = rnncore_bench::random_model(cell, I, H, 1.0f / std::sqrt(static_cast<float>(H)));
  rnncore::Stream<float> stream(model, 1);
  alignas(64) static float y[H];

  using LayerT = std::conditional_t<Lstm, RTNeural::LSTMLayerT<float, I, H>, RTNeural::GRULayerT<float, I, H>>;
  auto modelt = std::make_unique<RTNeural::ModelT<float, I, H, LayerT>>();
  RTNeural::Model<float> dynamic(I);
  if constexpr (Lstm) {
    load_lstm(modelt->template get<0>(), model);
    auto layer = std::make_unique<RTNeural::LSTMLayer<float>>(I, H);
    load_lstm(*layer, model);
    dynamic.addLayer(layer.release());
  } else {
    load_gru(modelt->template get<0>(), model);
    auto layer = std::make_unique<RTNeural::GRULayer<float>>(I, H);
    load_gru(*layer, model);
    dynamic.addLayer(layer.release());
  }

  const int64_t stream_bytes = rnncore::Stream<float>::bytes_needed(model.config(), 1);
  ReadFloor floor(stream_bytes);
  const Contender contenders[] = {
      {"rnncore", [&](const float* x) { stream.step(x, y); return static_cast<const float*>(y); },
       [&] { stream.reset(); }},
      {"ModelT", [&](const float* x) { modelt->forward(x); return modelt->getOutputs(); },
       [&] { modelt->reset(); }},
      {"Model", [&](const float* x) { dynamic.forward(x); return dynamic.getOutputs(); },
       [&] { dynamic.reset(); }},
      {"read", [&](const float*) { return floor.pass(); }, [] {}},
  };

  // 64 frames, each padded to a multiple of 16 floats so every frame is 64-byte aligned.
  constexpr int64_t stride = (I + 15) / 16 * 16;
  std::vector<float, rnncore::detail::AlignedAllocator<float>> frames(64 * stride);
  std::mt19937 rng(2);
  std::normal_distribution<float> g;
  for (float& v : frames) v = g(rng);

  // Same outputs over 200 frames from the zero state.
  Row row{};
  std::vector<std::vector<float>> outs(3);
  for (int k = 0; k < 3; ++k) {
    contenders[k].reset();
    for (int t = 0; t < 200; ++t) {
      const float* out = contenders[k].step(frames.data() + (t % 64) * stride);
      if (t == 199) outs[k].assign(out, out + H);
    }
  }
  for (int k = 1; k < 3; ++k) {
    for (int j = 0; j < H; ++j) row.max_diff = std::max<double>(row.max_diff, std::abs(outs[0][j] - outs[k][j]));
  }

  // Block size from a warm-up of rnncore's step: ~20 us a block.
  const auto t0 = Clock::now();
  int warm = 0;
  while (Clock::now() - t0 < std::chrono::milliseconds(20)) {
    contenders[0].step(frames.data() + (warm % 64) * stride);
    ++warm;
  }
  const double per_step = std::chrono::duration<double>(Clock::now() - t0).count() / warm;
  const int block = std::max(1, static_cast<int>(20e-6 / per_step));
  std::vector<std::vector<double>> samples(4);
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < 4; ++k) samples[k].push_back(time_block(contenders[k], frames.data(), stride, block));
  }
  row.rnncore_us = median(samples[0]);
  row.modelt_us = median(samples[1]);
  row.model_us = median(samples[2]);
  row.read_us = median(samples[3]);
  row.kib = static_cast<double>(stream_bytes) / 1024;
  return row;
}

template <int I, int H, bool Lstm>
bool report(int rounds) {
  const Row r = compare<I, H, Lstm>(rounds);
  std::printf("%-5s %5d %5d %11.3f %11.3f %11.3f %7.2f %9.2e %9.3f %6.0f\n", Lstm ? "lstm" : "gru", I, H,
              r.rnncore_us, r.modelt_us, r.model_us, r.rnncore_us / r.modelt_us, r.max_diff, r.read_us,
              r.kib);
  return r.max_diff <= 1e-4;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 2000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(5, std::atoi(argv[++i]));
    } else if (a == "--quick") {
      rounds = 50;
    } else {
      std::fprintf(stderr, "usage: %s [--rounds N] [--quick]\n", argv[0]);
      return 2;
    }
  }
  std::printf("rnncore Stream::step vs RTNeural (Eigen backend), float32, batch 1, one thread\n");
  std::printf("CPU: %s; medians of %d interleaved rounds, microseconds per step\n", cpu_name().c_str(), rounds);
  std::printf("%-5s %5s %5s %11s %11s %11s %7s %9s %9s %6s\n", "cell", "in", "H", "rnncore", "ModelT",
              "Model", "ratio", "max|diff|", "read", "KiB");
  bool same = true;
  same &= report<1, 16, true>(rounds);
  same &= report<1, 32, true>(rounds);
  same &= report<1, 64, true>(rounds);
  same &= report<1, 128, true>(rounds);
  same &= report<128, 128, true>(rounds);
  same &= report<256, 256, true>(rounds);
  same &= report<1, 16, false>(rounds);
  same &= report<1, 32, false>(rounds);
  same &= report<1, 64, false>(rounds);
  same &= report<1, 128, false>(rounds);
  same &= report<128, 128, false>(rounds);
  same &= report<256, 256, false>(rounds);
  std::printf("ratio = rnncore / ModelT (< 1: rnncore faster); read = reading the stream's KiB once\n"
              "(its packed weights, state and scratch; no arithmetic): the floor a step cannot beat\n");
  if (!same) {
    std::fprintf(stderr, "rtneural_compare: the libraries' outputs differ by more than 1e-4\n");
    return 1;
  }
  return 0;
}
