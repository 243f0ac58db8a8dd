// Stream (stream.h) against the whole-sequence kernels (sequence.h), with no allocation.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "rnncore/model.h"
#include "parallel.h"
#include "rnncore/stream.h"
#include "thread_policy.h"

// Counts every allocation in this test binary, to check the hot path makes none. Every form of
// operator new is replaced, the nothrow ones too (std::stable_sort's buffer comes from one):
// AddressSanitizer supplies each form a program does not, and would then see a block from its
// own operator new freed by the std::free below ("alloc-dealloc-mismatch").
static std::atomic<long> g_allocations{0};
static void* counted_allocation(std::size_t n, std::size_t align) noexcept {
  ++g_allocations;
  if (align == 0) return std::malloc(n ? n : 1);
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}
void* operator new(std::size_t n) {
  if (void* p = counted_allocation(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_allocation(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_allocation(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_allocation(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

using rnncore::CellKind;
using rnncore::Model;
using rnncore::ModelConfig;
using rnncore::Stream;

template <typename S>
Model<S> random_model(const ModelConfig& config, unsigned seed) {
  Model<S> model(config);
  std::mt19937 rng(seed);
  // PyTorch's default initialisation, U(-1/sqrt(H), 1/sqrt(H)).
  const double bound = 1.0 / std::sqrt(static_cast<double>(config.hidden_size));
  std::uniform_real_distribution<double> u(-bound, bound);
  for (std::size_t i = 0; i < model.specs().size(); ++i) {
    for (S& v : model.parameter(i)) v = static_cast<S>(u(rng));
  }
  return model;
}

template <typename S>
std::vector<S> random_vector(std::size_t n, unsigned seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(0.0, scale);
  std::vector<S> v(n);
  for (S& x : v) x = static_cast<S>(g(rng));
  return v;
}

ModelConfig make_config(CellKind cell, int64_t I, int64_t H, int64_t L, bool bias = true) {
  ModelConfig c;
  c.cell = cell;
  c.input_size = I;
  c.hidden_size = H;
  c.num_layers = L;
  c.bias = bias;
  return c;
}

struct Case {
  CellKind cell;
  int64_t input_size, hidden_size, num_layers;
  bool bias;
};

class StreamMatchesSequence : public ::testing::TestWithParam<Case> {};

template <typename S>
void check_against_sequence(const Case& k, double tolerance) {
  const ModelConfig config = make_config(k.cell, k.input_size, k.hidden_size, k.num_layers, k.bias);
  const auto model = random_model<S>(config, 7);
  const int64_t T = 23, N = 3, H = k.hidden_size, L = k.num_layers;
  const auto x = random_vector<S>(static_cast<std::size_t>(T * N * k.input_size), 1);
  const auto h0 = random_vector<S>(static_cast<std::size_t>(L * N * H), 2, 0.5);
  const auto c0 = random_vector<S>(static_cast<std::size_t>(L * N * H), 3, 0.5);
  const bool lstm = k.cell == CellKind::Lstm;

  std::vector<S> y(static_cast<std::size_t>(T * N * H)), h_n(h0.size()), c_n(c0.size());
  rnncore::sequence_forward<S>(config, model.weights(), T, N, x.data(), h0.data(),
                               lstm ? c0.data() : nullptr, nullptr, y.data(), h_n.data(),
                               c_n.data(), nullptr);

  Stream<S> stream(model, N);
  stream.set_state(h0.data(), c0.data());
  std::vector<S> y_stream(y.size());
  for (int64_t t = 0; t < T; ++t) {
    stream.step(x.data() + t * N * k.input_size, y_stream.data() + t * N * H);
  }
  // Relative past 1: the relu RNN's outputs are unbounded.
  for (std::size_t i = 0; i < y.size(); ++i) {
    ASSERT_NEAR(y_stream[i], y[i], tolerance * (1 + std::abs(y[i]))) << "y at " << i;
  }
  std::vector<S> h(h0.size()), c(c0.size());
  stream.get_state(h.data(), c.data());
  for (std::size_t i = 0; i < h.size(); ++i) {
    ASSERT_NEAR(h[i], h_n[i], tolerance * (1 + std::abs(h_n[i]))) << "h_n at " << i;
  }
  if (lstm) {
    for (std::size_t i = 0; i < c.size(); ++i) {
      ASSERT_NEAR(c[i], c_n[i], tolerance * (1 + std::abs(c_n[i]))) << "c_n at " << i;
    }
  }
}

TEST_P(StreamMatchesSequence, Float32) { check_against_sequence<float>(GetParam(), 1e-6); }
TEST_P(StreamMatchesSequence, Float64) { check_against_sequence<double>(GetParam(), 1e-12); }

INSTANTIATE_TEST_SUITE_P(
    Cells, StreamMatchesSequence,
    ::testing::Values(Case{CellKind::RnnTanh, 5, 7, 1, true}, Case{CellKind::RnnRelu, 3, 33, 2, true},
                      Case{CellKind::Lstm, 1, 16, 1, true}, Case{CellKind::Lstm, 9, 37, 3, true},
                      Case{CellKind::Lstm, 4, 8, 2, false}, Case{CellKind::Gru, 1, 16, 1, true},
                      Case{CellKind::Gru, 6, 45, 2, true}, Case{CellKind::Gru, 2, 5, 1, false},
                      // hidden sizes with steps of their own (stream.h), one layer and two
                      Case{CellKind::Lstm, 3, 64, 2, true}, Case{CellKind::Lstm, 1, 128, 1, true},
                      Case{CellKind::Gru, 1, 32, 1, true}, Case{CellKind::Gru, 5, 64, 2, false}),
    [](const ::testing::TestParamInfo<Case>& info) {
      const Case& k = info.param;
      return std::string(rnncore::cell_name(k.cell)) + "_I" + std::to_string(k.input_size) + "_H" +
             std::to_string(k.hidden_size) + "_L" + std::to_string(k.num_layers) +
             (k.bias ? "" : "_nobias");
    });

TEST(Stream, RowsAreIndependentAndBitIdenticalAcrossBatchSizes) {
  const auto model = random_model<float>(make_config(CellKind::Lstm, 4, 24, 2), 3);
  const int64_t T = 10, N = 4, I = 4, H = 24;
  const auto x = random_vector<float>(static_cast<std::size_t>(T * N * I), 5);
  Stream<float> batched(model, N);
  std::vector<float> y(static_cast<std::size_t>(T * N * H));
  batched.step_many(T, x.data(), y.data());
  for (int64_t b = 0; b < N; ++b) {
    Stream<float> single(model, 1);
    std::vector<float> y1(static_cast<std::size_t>(H));
    for (int64_t t = 0; t < T; ++t) {
      single.step(x.data() + (t * N + b) * I, y1.data());
      for (int64_t j = 0; j < H; ++j) ASSERT_EQ(y1[j], y[(t * N + b) * H + j]);
    }
  }
}

// Batched steps run several rows per load of each weight (blocks of up to 6 rows with AVX-512),
// one row alone through a taller kernel; every row must still come out as a stream of its own
// would give it. Batch sizes 2-13 cover every block size and uneven cuts; H = 37 and 70 leave
// panels whose second half is partly or wholly padding.
template <typename S>
void check_batched_rows_match_single_rows(CellKind cell, int64_t H) {
  const int64_t I = 5, T = 4;
  const auto model = random_model<S>(make_config(cell, I, H, 2), 8);
  for (int64_t N = 2; N <= 13; ++N) {
    const auto x = random_vector<S>(static_cast<std::size_t>(T * N * I), 9 + static_cast<unsigned>(N));
    Stream<S> batched(model, N);
    std::vector<S> y(static_cast<std::size_t>(T * N * H));
    batched.step_many(T, x.data(), y.data());
    for (int64_t b = 0; b < N; ++b) {
      Stream<S> single(model, 1);
      std::vector<S> y1(static_cast<std::size_t>(H));
      for (int64_t t = 0; t < T; ++t) {
        single.step(x.data() + (t * N + b) * I, y1.data());
        for (int64_t j = 0; j < H; ++j) {
          ASSERT_EQ(y1[j], y[(t * N + b) * H + j])
              << rnncore::cell_name(cell) << " H=" << H << " N=" << N << " row " << b << " t " << t;
        }
      }
    }
  }
}

TEST(Stream, BatchedRowsMatchSingleRowsBitwise) {
  for (CellKind cell : {CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru}) {
    for (int64_t H : {37, 70}) {
      check_batched_rows_match_single_rows<float>(cell, H);
      check_batched_rows_match_single_rows<double>(cell, H);
    }
  }
}

// Two or three threads share each step's panels and rows: every output comes out as one thread
// gives it. H = 37 and GRU (whose panels differ in width) give uneven panel shares; N = 1 leaves
// a thread without rows for the cell math.
TEST(Stream, ThreadedStepsMatchOneThreadBitwise) {
  for (CellKind cell : {CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
    const auto model = random_model<float>(make_config(cell, 9, 37, 2), 14);
    for (int64_t N : {1, 2, 5}) {
      const int64_t T = 6;
      const auto x = random_vector<float>(static_cast<std::size_t>(T * N * 9), 15);
      Stream<float> one(model, N);
      std::vector<float> want(static_cast<std::size_t>(T * N * 37));
      one.step_many(T, x.data(), want.data());
      for (int threads : {2, 3}) {
        Stream<float> many(model, N, threads);
        EXPECT_EQ(many.threads(), threads);
        std::vector<float> got(want.size());
        many.step_many(T, x.data(), got.data());
        ASSERT_EQ(got, want) << rnncore::cell_name(cell) << " N=" << N << " threads=" << threads;
        std::vector<float> h1(static_cast<std::size_t>(one.state_size())), h2(h1.size());
        std::vector<float> c1(h1.size()), c2(h1.size());
        one.get_state(h1.data(), c1.data());
        many.get_state(h2.data(), c2.data());
        EXPECT_EQ(h1, h2);
        EXPECT_EQ(c1, c2);
      }
    }
  }
}

// One thread runs a step compiled for the cell and, for hidden sizes 16, 32, 64, 128 and 256,
// for that size (at batch 1 the LSTM and the GRU at 16, 32 and 64 units take the one-pass
// step, whose weights are laid out by slices of units); two threads run the generic code with
// every size read at run time. Both must give the same bits, on and off the list of sizes (15,
// 24, 40, 100), batch 1 and 3, input sizes odd and even (the GRU's one-pass sums change chains
// where x ends on an odd column), with the state carried over many steps and across reset_row,
// reset and set_state. (Their agreement with the whole-sequence kernels is
// StreamMatchesSequence's.)
template <typename S>
void check_sized_step_matches_generic(CellKind cell, int64_t I, int64_t H, int64_t N) {
  const auto model = random_model<S>(make_config(cell, I, H, 2), 21);
  const int64_t T = 12;
  const auto x = random_vector<S>(static_cast<std::size_t>(T * N * I), 22);
  const auto h0 = random_vector<S>(static_cast<std::size_t>(2 * N * H), 23, 0.5);
  Stream<S> sized(model, N), generic(model, N, 2);
  std::vector<S> want(static_cast<std::size_t>(N * H)), got(want.size());
  const std::string what = std::string(rnncore::cell_name(cell)) + " I=" + std::to_string(I) +
                           " H=" + std::to_string(H) + " N=" + std::to_string(N);
  for (int64_t t = 0; t < 3 * T; ++t) {
    if (t == T) {  // part of the batch, then all of it, back to zeros
      sized.reset_row(N - 1);
      generic.reset_row(N - 1);
    } else if (t == 2 * T - 3) {
      sized.reset();
      generic.reset();
    } else if (t == 2 * T) {
      sized.set_state(h0.data(), h0.data());
      generic.set_state(h0.data(), h0.data());
    }
    const S* frame = x.data() + (t % T) * N * I;
    sized.step(frame, got.data());
    generic.step(frame, want.data());
    ASSERT_EQ(got, want) << what << " step " << t;
  }
  std::vector<S> h1(static_cast<std::size_t>(sized.state_size())), h2(h1.size()), c1(h1.size()),
      c2(h1.size());
  sized.get_state(h1.data(), c1.data());
  generic.get_state(h2.data(), c2.data());
  EXPECT_EQ(h1, h2) << what;
  EXPECT_EQ(c1, c2) << what;
}

// Batch 1 on one thread takes the one-pass step up to 64 units (stream.h), with a last slice
// part empty at 1, 5, 8, 12, 15, 20, 24, 40, 48 (AVX-512) and 63; against a team's panel step.
TEST(Stream, SizedStepsMatchTheGenericStepBitwise) {
  for (CellKind cell : {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
    for (int64_t H : {1, 5, 8, 12, 15, 16, 20, 24, 32, 40, 48, 63, 64, 100, 128, 256}) {
      for (int64_t N : {1, 3}) {
        for (int64_t I : {1, 2, 7}) check_sized_step_matches_generic<float>(cell, I, H, N);
      }
    }
    for (int64_t H : {16, 40}) check_sized_step_matches_generic<double>(cell, 3, H, 2);
  }
}

// Subnormals (stream.h): with flushing on, a subnormal result becomes zero and a subnormal
// input reads as zero, and the caller's floating-point control state is never changed; with it
// off they are kept. A relu RNN with W_ih = w, W_hh = 0 and no bias gives h = max(0, w x).
template <typename S>
std::vector<S> relu_steps(S w, S x_value, int64_t N) {
  ModelConfig config = make_config(CellKind::RnnRelu, 1, 16, 1, false);
  Model<S> model(config);
  for (std::size_t i = 0; i < model.specs().size(); ++i) {
    for (S& v : model.parameter(i)) v = S(0);
  }
  for (S& v : model.parameter("weight_ih_l0")) v = w;
  Stream<S> stream(model, N);
  std::vector<S> x(static_cast<std::size_t>(N), x_value), y(static_cast<std::size_t>(N * 16));
  stream.step(x.data(), y.data());
  return y;
}

template <typename S>
void check_stream_flushes_subnormals() {
  const S tiny = std::numeric_limits<S>::min();  // the smallest normal value
  rnncore::set_flush_denormals(true);
  for (int64_t N : {1, 2}) {
    for (S v : relu_steps<S>(S(0.5), tiny, N)) EXPECT_EQ(v, S(0));  // result tiny / 2: flushed
    for (S v : relu_steps<S>(S(4), tiny / 2, N)) EXPECT_EQ(v, S(0));  // input tiny / 2: read as 0
    for (S v : relu_steps<S>(S(4), tiny, N)) EXPECT_EQ(v, 4 * tiny);   // normal: kept
  }
  rnncore::set_flush_denormals(false);
  for (S v : relu_steps<S>(S(0.5), tiny, 1)) EXPECT_EQ(v, tiny / 2);
  for (S v : relu_steps<S>(S(4), tiny / 2, 1)) EXPECT_EQ(v, 2 * tiny);
  rnncore::set_flush_denormals(true);
}

TEST(Stream, FlushesSubnormalInputsAndResults) {
  check_stream_flushes_subnormals<float>();
  check_stream_flushes_subnormals<double>();
}

// The LSTM's c is carried too: c = f c_prev + i g with f = 1, i g = 0 keeps a subnormal c_prev
// (set through set_state) only when flushing is off; on one thread its sign survives the flush.
TEST(Stream, FlushesTheCarriedCellState) {
  for (bool flush : {true, false}) {
    rnncore::set_flush_denormals(flush);
    ModelConfig config = make_config(CellKind::Lstm, 1, 16, 1);
    Model<float> model(config);
    for (std::size_t i = 0; i < model.specs().size(); ++i) {
      for (float& v : model.parameter(i)) v = 0.0f;
    }
    std::vector<float>& bias = model.parameter("bias_ih_l0");
    for (int64_t j = 0; j < 16; ++j) {
      bias[static_cast<std::size_t>(j)] = -50.0f;      // i = 0
      bias[static_cast<std::size_t>(16 + j)] = 50.0f;  // f = 1
    }
    for (int threads : {1, 2}) {
      Stream<float> stream(model, 1, threads);
      const float c_prev = -std::numeric_limits<float>::min() / 4;
      std::vector<float> h(16, 0.0f), c(16, c_prev), y(16);
      stream.set_state(h.data(), c.data());
      const float x = 0.0f;
      stream.step(&x, y.data());
      stream.get_state(h.data(), c.data());
      for (float v : c) {
        if (flush) {
          EXPECT_EQ(v, 0.0f);
          // (a team's threads flush c_prev on reading it, in hardware, so their zero is f * 0)
          if (threads == 1) EXPECT_TRUE(std::signbit(v));
        } else {
          EXPECT_EQ(v, c_prev) << "threads " << threads;
        }
      }
    }
  }
  rnncore::set_flush_denormals(true);
}

#ifdef RNNCORE_HAS_MXCSR
// The step leaves the caller's control state as it found it, flushing or not, one thread or two.
TEST(Stream, LeavesTheCallersControlStateAlone) {
  const auto model = random_model<float>(make_config(CellKind::Gru, 3, 32, 1), 30);
  const auto x = random_vector<float>(3, 31);
  std::vector<float> y(32);
  const unsigned original = _mm_getcsr();
  for (unsigned caller : {original & ~0x8040u, original | 0x8040u}) {
    for (bool flush : {true, false}) {
      rnncore::set_flush_denormals(flush);
      for (int threads : {1, 2}) {
        Stream<float> stream(model, 1, threads);
        _mm_setcsr(caller);
        stream.step(x.data(), y.data());
        const unsigned after = _mm_getcsr();
        _mm_setcsr(original);
        EXPECT_EQ(after, caller) << "flush " << flush << " threads " << threads;
      }
    }
  }
  rnncore::set_flush_denormals(true);
}
#endif

TEST(Stream, StepManyIsStepRepeated) {
  const auto model = random_model<float>(make_config(CellKind::Gru, 3, 20, 2), 4);
  const int64_t T = 9, N = 2, I = 3, H = 20;
  const auto x = random_vector<float>(static_cast<std::size_t>(T * N * I), 6);
  Stream<float> a(model, N), b(model, N);
  std::vector<float> ya(static_cast<std::size_t>(T * N * H)), yb(ya.size());
  a.step_many(T, x.data(), ya.data());
  for (int64_t t = 0; t < T; ++t) b.step(x.data() + t * N * I, yb.data() + t * N * H);
  EXPECT_EQ(ya, yb);
}

TEST(Stream, ResetRowRestartsOnlyThatRow) {
  const auto model = random_model<float>(make_config(CellKind::Lstm, 2, 12, 2), 8);
  const int64_t N = 3, I = 2, H = 12;
  const auto x = random_vector<float>(static_cast<std::size_t>(20 * N * I), 9);
  Stream<float> stream(model, N), fresh(model, N);
  std::vector<float> y(static_cast<std::size_t>(N * H)), y_fresh(y.size());
  for (int64_t t = 0; t < 10; ++t) stream.step(x.data() + t * N * I, y.data());
  std::vector<float> before(static_cast<std::size_t>(2 * N * H));
  stream.get_state(before.data(), nullptr);
  stream.reset_row(1);
  EXPECT_THROW(stream.reset_row(-1), std::out_of_range);  // and nothing changes
  EXPECT_THROW(stream.reset_row(N), std::out_of_range);
  const int64_t rows[] = {0, N};
  EXPECT_THROW(stream.reset_rows(rows, 2), std::out_of_range);  // row 0 is not reset either
  std::vector<float> h(before.size()), c(before.size());
  stream.get_state(h.data(), c.data());
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t b = 0; b < N; ++b) {
      for (int64_t j = 0; j < H; ++j) {
        const std::size_t at = static_cast<std::size_t>((l * N + b) * H + j);
        EXPECT_EQ(h[at], b == 1 ? 0.0f : before[at]);
        if (b == 1) EXPECT_EQ(c[at], 0.0f);
      }
    }
  }
  // Row 1 now behaves like a fresh stream fed from step 10 on.
  for (int64_t t = 10; t < 20; ++t) {
    stream.step(x.data() + t * N * I, y.data());
    fresh.step(x.data() + t * N * I, y_fresh.data());
    for (int64_t j = 0; j < H; ++j) ASSERT_EQ(y[H + j], y_fresh[H + j]);
  }
  stream.reset();
  stream.get_state(h.data(), c.data());
  for (float v : h) EXPECT_EQ(v, 0.0f);
  for (float v : c) EXPECT_EQ(v, 0.0f);
}

TEST(Stream, HotPathDoesNotAllocate) {
  for (CellKind cell : {CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru}) {
    const auto model = random_model<float>(make_config(cell, 5, 40, 2), 10);
    Stream<float> stream(model, 2, cell == CellKind::Lstm ? 2 : 1);
    std::vector<float> x(static_cast<std::size_t>(4 * 2 * 5), 0.5f), y(static_cast<std::size_t>(4 * 2 * 40));
    std::vector<float> h(static_cast<std::size_t>(stream.state_size())), c(h.size());
    const long before = g_allocations.load();
    stream.step(x.data(), y.data());
    stream.step_many(4, x.data(), y.data());
    stream.reset_row(1);
    const int64_t rows[] = {0, 1};
    stream.reset_rows(rows, 2);
    stream.get_state(h.data(), c.data());
    stream.set_state(h.data(), c.data());
    stream.reset();
    EXPECT_EQ(g_allocations.load(), before) << rnncore::cell_name(cell);
  }
}

TEST(Stream, OutputMayAliasInput) {
  const auto model = random_model<float>(make_config(CellKind::Gru, 16, 16, 1), 11);
  const auto x = random_vector<float>(16, 12);
  Stream<float> a(model, 1), b(model, 1);
  std::vector<float> y(16), inout(x);
  a.step(x.data(), y.data());
  b.step(inout.data(), inout.data());
  EXPECT_EQ(y, inout);
}

TEST(Stream, RefusesBidirectionalAndBadBatch) {
  ModelConfig config = make_config(CellKind::Lstm, 3, 4, 1);
  config.bidirectional = true;
  Model<float> bidirectional(config);
  EXPECT_THROW(Stream<float>(bidirectional, 1), std::invalid_argument);
  Model<float> model(make_config(CellKind::Lstm, 3, 4, 1));
  EXPECT_THROW(Stream<float>(model, 0), std::invalid_argument);
  EXPECT_THROW(Stream<float>(model, 1, 0), std::invalid_argument);
  EXPECT_THROW(Stream<float>(model.config(), {}, 1), std::invalid_argument);
}

TEST(Model, BuildsFromWeightViewsAndNamesParameters) {
  const auto model = random_model<double>(make_config(CellKind::Gru, 3, 4, 2), 13);
  Model<double> copy(model.config(), model.weights());
  for (std::size_t i = 0; i < model.specs().size(); ++i) EXPECT_EQ(copy.parameter(i), model.parameter(i));
  EXPECT_EQ(model.specs()[4].name, "weight_ih_l1");
  EXPECT_EQ(model.specs()[4].shape, (std::vector<int64_t>{12, 4}));
  EXPECT_EQ(model.parameter("bias_hh_l1").size(), 12u);
  EXPECT_THROW(model.parameter("weight_ih_l2"), std::out_of_range);
}

// ------------------------------------------------------------------ sizes (issue 14, defect 2)

// Runs `make`, which must throw std::length_error whose message names `argument`.
void expect_length_error(const std::function<void()>& make, const std::string& argument) {
  try {
    make();
    ADD_FAILURE() << "no std::length_error (expected one naming " << argument << ")";
  } catch (const std::length_error& e) {
    EXPECT_NE(std::string(e.what()).find(argument), std::string::npos) << e.what();
  }
}

TEST(Sizes, StreamBatchSizeWhoseArraysOverflowIsRefused) {
  // batch_size * a row's values wrapped around: the arrays came out tiny (or empty) and
  // reset_row wrote far past them (a segfault at 2^62, a corrupted heap at 2^62 + 1).
  const Model<float> model(make_config(CellKind::Lstm, 8, 64, 1));
  const int64_t huge = int64_t(1) << 62;
  expect_length_error([&] { Stream<float>(model, huge).reset_row(3); }, "batch_size");
  expect_length_error([&] { Stream<float>(model, huge + 1).reset_row(1000); }, "batch_size");
  expect_length_error([&] { Stream<float>(model, std::numeric_limits<int64_t>::max()); }, "batch_size");
  expect_length_error([&] { Stream<float>::bytes_needed(model.config(), huge); }, "batch_size");
}

TEST(Sizes, BytesNeededGrowsByOneRowPerBatchRow) {
  // LSTM 8 -> 64: per row 320 scratch values (5 * 64), [x; h] 72 and c 64.
  const ModelConfig config = make_config(CellKind::Lstm, 8, 64, 1);
  EXPECT_EQ(Stream<float>::bytes_needed(config, 2) - Stream<float>::bytes_needed(config, 1),
            (320 + 72 + 64) * 4);
  EXPECT_EQ(Stream<double>::bytes_needed(config, 7) - Stream<double>::bytes_needed(config, 5),
            2 * (320 + 72 + 64) * 8);
}

TEST(Sizes, StreamThatCannotBeAllocatedSaysWhatFor) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer aborts on a petabyte allocation instead of failing it";
#endif
  const Model<float> model(make_config(CellKind::Lstm, 8, 64, 1));
  try {
    Stream<float> stream(model, int64_t(1) << 40);  // petabytes: more than any address space
    FAIL() << "allocated";
  } catch (const rnncore::AllocationError& e) {
    EXPECT_NE(std::string(e.what()).find("batch_size = 1099511627776"), std::string::npos) << e.what();
  }
}

TEST(Sizes, ModelSizesWhoseParameterCountOverflowsAreRefused) {
  for (const ModelConfig& config :
       {make_config(CellKind::Lstm, 8, int64_t(1) << 62, 1), make_config(CellKind::Gru, 8, int64_t(1) << 31, 1),
        make_config(CellKind::RnnTanh, std::numeric_limits<int64_t>::max(), 1, 1),
        make_config(CellKind::RnnTanh, 1, 1, int64_t(1) << 62)}) {
    expect_length_error([&] { config.validate(); }, "hidden_size = " + std::to_string(config.hidden_size));
    expect_length_error([&] { Model<float> model(config); }, "num_layers = " + std::to_string(config.num_layers));
    expect_length_error([&] { Stream<float>::bytes_needed(config, 1); }, "input_size = ");
  }
}

TEST(Sizes, SequenceCallsWhoseArraysOverflowAreRefused) {
  // Checked before any array is touched: the pointers are never read.
  const auto model = random_model<float>(make_config(CellKind::Lstm, 8, 64, 2), 1);
  const int64_t big = int64_t(1) << 40;
  expect_length_error([&] {
    rnncore::sequence_forward<float>(model.config(), model.weights(), big, big, nullptr, nullptr,
                                     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  }, "steps * batch");
  expect_length_error([&] {
    rnncore::sequence_forward<float>(model.config(), model.weights(), int64_t(1) << 55, 16, nullptr,
                                     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  }, "steps * batch * the widest row");
  const rnncore::PreparedWeights<float> prepared(model.config(), model.weights());
  expect_length_error([&] {
    rnncore::sequence_forward<float>(prepared, 3, int64_t(1) << 60, nullptr, nullptr, nullptr,
                                     nullptr, nullptr, nullptr, nullptr);
  }, "batch");
  expect_length_error([&] { rnncore::detail::wavefront_threads<float>(model.config(), big, big); }, "steps * batch");
  Stream<float> stream(model, 2);
  expect_length_error([&] { stream.step_many(std::numeric_limits<int64_t>::max() / 4, nullptr, nullptr); },
                      "steps * batch_size * input_size");
}

// ------------------------------------------------------------------ threads (issue 14, defect 3)

// One successful call: its frames and outputs.
struct Recorded {
  int64_t steps;
  std::vector<float> x, y;
};

// Replays each thread's successful calls (in that thread's order) on a fresh stream, choosing at
// each point the thread whose next call reproduces its recorded output bit for bit from the
// current state. True when every call is placed: the calls behaved as some serial order.
bool replays_serially(const std::vector<std::vector<Recorded>>& histories, Stream<float>& replay) {
  std::vector<std::size_t> next(histories.size(), 0);
  std::vector<float> h(static_cast<std::size_t>(replay.state_size())), c(h.size());
  for (;;) {
    replay.get_state(h.data(), c.data());
    bool placed = false, done = true;
    for (std::size_t t = 0; t < histories.size() && !placed; ++t) {
      if (next[t] == histories[t].size()) continue;
      done = false;
      const Recorded& call = histories[t][next[t]];
      std::vector<float> y(call.y.size());
      replay.set_state(h.data(), c.data());
      replay.step_many(call.steps, call.x.data(), y.data());
      if (y == call.y) {
        ++next[t];
        placed = true;
      }
    }
    if (done) return true;
    if (!placed) return false;
  }
}

TEST(StreamThreads, ConcurrentCallsAreRefusedAndNeverMixed) {
  const ModelConfig config = make_config(CellKind::Lstm, 16, 256, 1);
  const auto model = random_model<float>(config, 21);
  const int64_t N = 2, I = 16, H = 256;
  Stream<float> stream(model, N);
  std::vector<std::vector<Recorded>> histories(2);
  std::atomic<int> refusals{0}, successes[2] = {{0}, {0}};
  std::atomic<bool> stop{false};
  std::string message;
  // Until enough overlaps were seen, at most ~2 s (sanitizer builds step ~20x slower, and the
  // replay below repeats every recorded call).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  const auto run = [&](int thread) {
    std::mt19937 rng(static_cast<unsigned>(thread));
    std::normal_distribution<float> g;
    for (int round = 0; round < 5000 && !stop.load() && std::chrono::steady_clock::now() < deadline;
         ++round) {
      Recorded call;
      call.steps = thread == 0 ? 16 : 1;  // one thread steps chunks, the other single frames
      call.x.resize(static_cast<std::size_t>(call.steps * N * I));
      for (float& v : call.x) v = g(rng);
      call.y.resize(static_cast<std::size_t>(call.steps * N * H));
      try {
        if (call.steps == 1) {
          stream.step(call.x.data(), call.y.data());
        } else {
          stream.step_many(call.steps, call.x.data(), call.y.data());
        }
        histories[static_cast<std::size_t>(thread)].push_back(std::move(call));
        ++successes[thread];
      } catch (const rnncore::StreamInUseError& e) {
        if (thread == 1) message = e.what();
        if (refusals.fetch_add(1) + 1 >= 20 && successes[0].load() >= 3 && successes[1].load() >= 3) {
          stop.store(true);
        }
      }
    }
  };
  std::thread first(run, 0), second(run, 1);
  first.join();
  second.join();
  ASSERT_GT(refusals.load(), 0) << "the threads never overlapped";
  if (!message.empty()) {
    EXPECT_NE(message.find("one stream per thread, or a lock"), std::string::npos) << message;
  }
  Stream<float> replay(model, N);
  ASSERT_TRUE(replays_serially(histories, replay)) << "an output matches no serial order";
  std::vector<float> h(static_cast<std::size_t>(stream.state_size())), c(h.size());
  std::vector<float> h_replay(h.size()), c_replay(h.size());
  stream.get_state(h.data(), c.data());
  replay.get_state(h_replay.data(), c_replay.data());
  EXPECT_EQ(h, h_replay);
  EXPECT_EQ(c, c_replay);
}

TEST(StreamThreads, EveryCallOnABusyStreamIsRefused) {
  const auto model = random_model<float>(make_config(CellKind::Gru, 16, 256, 1), 22);
  Stream<float> stream(model, 1);
  const int64_t T = 4000;
  const auto x = random_vector<float>(static_cast<std::size_t>(T * 16), 23);
  std::vector<float> y(static_cast<std::size_t>(T * 256)), h(256), state(256, 0.5f);
  std::atomic<bool> started{false};
  std::thread worker([&] {
    started.store(true);
    // The main thread's get_state below may hold the stream at the moment this call comes: it
    // is then refused like any other, and tried again.
    for (;;) {
      try {
        stream.step_many(T, x.data(), y.data());
        return;
      } catch (const rnncore::StreamInUseError&) {
      }
    }
  });
  while (!started.load()) {
  }
  // Wait until the worker is inside (get_state refused), then every call must be refused too.
  bool inside = false;
  for (int i = 0; i < 10000000 && !inside; ++i) {
    try {
      stream.get_state(h.data(), nullptr);
    } catch (const rnncore::StreamInUseError&) {
      inside = true;
    }
  }
  ASSERT_TRUE(inside);
  int refused = 0;
  const std::vector<std::function<void()>> calls = {
      [&] { stream.step(x.data(), h.data()); },
      [&] { stream.step_many(1, x.data(), h.data()); },
      [&] { stream.reset(); },
      [&] { stream.reset_row(0); },
      [&] { stream.reset_rows(nullptr, 0); },
      [&] { stream.get_state(h.data(), nullptr); },
      [&] { stream.set_state(state.data(), nullptr); }};
  for (const auto& call : calls) {
    try {
      call();
    } catch (const rnncore::StreamInUseError&) {
      ++refused;
    }
  }
  worker.join();
  // 4000 GRU steps of H = 256 take milliseconds; the six refused calls microseconds.
  EXPECT_EQ(refused, static_cast<int>(calls.size()));
  // The refused calls changed nothing: the worker's run equals one made alone.
  Stream<float> alone(model, 1);
  std::vector<float> y_alone(y.size());
  alone.step_many(T, x.data(), y_alone.data());
  EXPECT_EQ(y, y_alone);
}

TEST(StreamThreads, OneStreamPerThreadMatchesSerialBitwise) {
  const auto model = random_model<float>(make_config(CellKind::Lstm, 16, 128, 2), 24);
  const int64_t T = 50, N = 3;
  std::vector<std::vector<float>> xs, serial, concurrent;
  for (unsigned k = 0; k < 4; ++k) {
    xs.push_back(random_vector<float>(static_cast<std::size_t>(T * N * 16), 30 + k));
    serial.emplace_back(static_cast<std::size_t>(T * N * 128));
    Stream<float>(model, N).step_many(T, xs[k].data(), serial[k].data());
    concurrent.emplace_back(serial[k].size());
  }
  std::vector<std::thread> threads;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    threads.emplace_back([&, k] {
      Stream<float> own(model, N);
      for (int64_t t = 0; t < T; ++t) {
        own.step(xs[k].data() + t * N * 16, concurrent[k].data() + t * N * 128);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t k = 0; k < xs.size(); ++k) EXPECT_EQ(concurrent[k], serial[k]) << "thread " << k;
}

TEST(StreamThreads, ACopyOfAStreamStartsIdle) {
  const auto model = random_model<float>(make_config(CellKind::RnnTanh, 2, 4, 1), 25);
  Stream<float> a(model, 1);
  Stream<float> b = a;  // the in-use mark is per object, not copied
  std::vector<float> x(2, 1.0f), y(4), y_b(4);
  a.step(x.data(), y.data());
  b.step(x.data(), y_b.data());
  EXPECT_EQ(y, y_b);
}

}  // namespace
