// rnncore's streaming step against RTNeural's, in the same run, on the same weights.
//
//   rtneural_compare [--rounds N] [--quick] [--odd]
//
// --odd: hidden sizes that are not a multiple of a SIMD register or between the powers of two
// (LSTM and GRU 1 -> 8, 12, 20, 24, 40, 48, 80, 96) instead of the table.
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
// is to the bandwidth of the cache its weights come from. A fifth, `cell`, runs only the step's
// cell math (CellFloor: cell.h's packet functions, the stream's own code, on H units, each step's
// gates derived from the last step's h), and `cell+mul` adds the product's flops at this core's
// multiply-add peak measured at the start of the run (fma_peak): a step cannot take less, and
// `floor` = max(read, cell+mul) / ModelT is the lowest ratio a step could reach with this cell
// math and these bytes (the cell math of a size that is not whole packets is timed on its
// packets, the last one padded, as the step runs it).
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
#include "rnncore/cell.h"
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
  double rnncore_us, modelt_us, model_us, read_us, cell_us, max_diff, kib;
};

// This core's float32 multiply-add peak now (GFLOP/s): 12 independent chains of packet FMAs in
// registers (12 of the 16 AVX2 registers), no memory traffic, best of 9 runs of ~1 ms. No product can run faster, so a step's
// product flops at this rate are a true lower bound on its time.
double fma_peak() {
  using namespace Eigen::internal;
  using Packet = packet_traits<float>::type;
  constexpr int kChains = 12, kLanes = unpacket_traits<Packet>::size;
  constexpr long kIterations = 100000;
  volatile float seed = 0.999f;  // not a constant the compiler could fold the loop with
  Packet acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = pset1<Packet>(0.001f * static_cast<float>(c));
  const float multiplier = seed;
  const Packet a = pset1<Packet>(multiplier), b = pset1<Packet>(0.0001f);
  double best = 1e30;
  for (int r = 0; r < 9; ++r) {
    const auto start = Clock::now();
    for (long i = 0; i < kIterations; ++i) {
      for (int c = 0; c < kChains; ++c) acc[c] = pmadd(acc[c], a, b);
    }
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  float sink = 0.0f;
  for (int c = 0; c < kChains; ++c) sink += pfirst(acc[c]);
  volatile float keep = sink;
  (void)keep;
  return 2.0 * kLanes * kChains * static_cast<double>(kIterations) / best / 1e9;
}

// The cell math of a step alone: cell.h's packet functions (the ones the stream's step calls) on
// H units, with each gate's input = the last step's h + a constant, so that steps chain through
// h as a stream's do (one add per gate stands in for the product). No product, no weights.
template <bool Lstm, int H>
class CellFloor {
  using Packet = Eigen::internal::packet_traits<float>::type;
  static constexpr int L = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr int HP = (H + L - 1) / L * L;  // H rounded up to whole packets

 public:
  CellFloor() {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (float& v : bias_) v = u(rng);
  }
  const float* pass() {
    using namespace Eigen::internal;
    for (int j = 0; j < HP; j += L) {
      const Packet h = pload<Packet>(h_ + j);
      const auto gate = [&](int k) { return padd(h, pload<Packet>(bias_ + k * HP + j)); };
      Packet h_new;
      if constexpr (Lstm) {
        Packet i = gate(0), f = gate(1), g = gate(2), o = gate(3), c, tanh_c;
        rnncore::cell::fused::lstm_forward(i, f, g, o, pload<Packet>(c_ + j), c, tanh_c, h_new);
        pstore(c_ + j, c);
      } else {
        const Packet zero = pset1<Packet>(0.0f);
        Packet r, z, n;
        rnncore::cell::fused::gru_forward(gate(0), gate(1), gate(2), zero, zero, gate(3), h, r, z, n, h_new);
      }
      pstore(h_ + j, h_new);
    }
    return h_;
  }

 private:
  alignas(64) float bias_[4 * HP];
  alignas(64) float h_[HP] = {};
  alignas(64) float c_[HP] = {};
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
  CellFloor<Lstm, H> cell_floor;
  const Contender contenders[] = {
      {"rnncore", [&](const float* x) { stream.step(x, y); return static_cast<const float*>(y); },
       [&] { stream.reset(); }},
      {"ModelT", [&](const float* x) { modelt->forward(x); return modelt->getOutputs(); },
       [&] { modelt->reset(); }},
      {"Model", [&](const float* x) { dynamic.forward(x); return dynamic.getOutputs(); },
       [&] { dynamic.reset(); }},
      {"read", [&](const float*) { return floor.pass(); }, [] {}},
      {"cell", [&](const float*) { return cell_floor.pass(); }, [] {}},
  };
  constexpr int kContenders = 5;

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
  std::vector<std::vector<double>> samples(kContenders);
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < kContenders; ++k) {
      samples[k].push_back(time_block(contenders[k], frames.data(), stride, block));
    }
  }
  row.rnncore_us = median(samples[0]);
  row.modelt_us = median(samples[1]);
  row.model_us = median(samples[2]);
  row.read_us = median(samples[3]);
  row.cell_us = median(samples[4]);
  row.kib = static_cast<double>(stream_bytes) / 1024;
  return row;
}

template <int I, int H, bool Lstm>
bool report(int rounds, double gflops) {
  const Row r = compare<I, H, Lstm>(rounds);
  const double flops = 2.0 * (Lstm ? 4 : 3) * H * (I + H);  // the step's product (GFLOP/s = flop/ns)
  const double cell_mul = r.cell_us + flops / (gflops * 1e3);
  std::printf("%-5s %5d %5d %9.3f %9.3f %9.3f %6.2f %9.2e %8.3f %6.0f %8.3f %8.3f %6.2f\n",
              Lstm ? "lstm" : "gru", I, H, r.rnncore_us, r.modelt_us, r.model_us,
              r.rnncore_us / r.modelt_us, r.max_diff, r.read_us, r.kib, r.cell_us, cell_mul,
              std::max(r.read_us, cell_mul) / r.modelt_us);
  return r.max_diff <= 1e-4;
}

// report() for input size I and each hidden size in turn; false when any output disagreed.
template <bool Lstm, int I, int... H>
bool report_sizes(int rounds, double gflops) {
  bool same = true;
  ((same &= report<I, H, Lstm>(rounds, gflops)), ...);  // left to right
  return same;
}

// The cases of the table for one cell, or (odd) hidden sizes that are not a multiple of
// a SIMD register (8 floats with AVX2, 16 with AVX-512) and sizes between the powers of two;
// false when any output disagreed.
template <bool Lstm>
bool report_cases(int rounds, double gflops, bool odd) {
  if (odd) return report_sizes<Lstm, 1, 8, 12, 20, 24, 40, 48, 80, 96>(rounds, gflops);
  bool same = report_sizes<Lstm, 1, 16, 32, 64, 128>(rounds, gflops);
  same &= report_sizes<Lstm, 128, 128>(rounds, gflops);
  same &= report_sizes<Lstm, 256, 256>(rounds, gflops);
  return same;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 2000;
  bool odd = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--odd") {
      odd = true;
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(5, std::atoi(argv[++i]));
    } else if (a == "--quick") {
      rounds = 50;
    } else {
      std::fprintf(stderr, "usage: %s [--rounds N] [--quick] [--odd]\n", argv[0]);
      return 2;
    }
  }
  std::printf("rnncore Stream::step vs RTNeural (Eigen backend), float32, batch 1, one thread\n");
  std::printf("CPU: %s; medians of %d interleaved rounds, microseconds per step\n", cpu_name().c_str(), rounds);
  const double gflops = fma_peak();
  std::printf("FMA peak (float32, 12 chains in registers, best of 9): %.1f GFLOP/s\n", gflops);
  std::printf("%-5s %5s %5s %9s %9s %9s %6s %9s %8s %6s %8s %8s %6s\n", "cell", "in", "H", "rnncore",
              "ModelT", "Model", "ratio", "max|diff|", "read", "KiB", "cell", "cell+mul", "floor");
  const bool lstm_same = report_cases<true>(rounds, gflops, odd);
  const bool same = report_cases<false>(rounds, gflops, odd) && lstm_same;
  std::printf("ratio = rnncore / ModelT (< 1: rnncore faster); read = reading the stream's KiB once\n"
              "(its packed weights, state and scratch; no arithmetic); cell = the step's cell math alone;\n"
              "cell+mul = cell + the product's flops at the FMA peak; floor = max(read, cell+mul) /\n"
              "ModelT: the lowest ratio a step could reach with this cell math and these bytes\n");
  if (!same) {
    std::fprintf(stderr, "rtneural_compare: the libraries' outputs differ by more than 1e-4\n");
    return 1;
  }
  return 0;
}
