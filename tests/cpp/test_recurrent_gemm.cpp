// The packed recurrent product (cpp/src/recurrent_gemm.h) against a plain triple loop, at every
// row count from 1 to 21 (the few-row kernel for 1-3 rows, then row blocks split as evenly as
// possible), widths around the panel width, one or several panel groups, both packing layouts,
// overwrite and accumulate, and ranges of slots (SIMD packets of columns: one thread's share)
// that start or end mid-panel; that a row's result does not depend on how many rows it was
// multiplied with (a time loop split by sequences hands each thread fewer rows); that rows
// read through an index give the bits of a gathered copy; and that walking the panels backwards
// (every other step of a time loop) gives the bits of the forward walk.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <string>
#include <vector>

#include "recurrent_gemm.h"
#include "rnncore/sequence.h"

namespace {

template <typename S>
class RecurrentGemm : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(RecurrentGemm, Scalars);

TYPED_TEST(RecurrentGemm, EveryRowCountMatchesTheNaiveProduct) {
  using S = TypeParam;
  using Packed = rnncore::detail::PackedPanels<S>;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  const double tol = std::is_same_v<S, float> ? 1e-5 : 1e-12;
  for (int64_t width : {1, 5, 17, 37, 64, 100}) {
    for (int64_t groups : {1, 3}) {
      for (bool transposed : {true, false}) {
        const int64_t depth = width + 3, cols = groups * width;
        // transposed: source [cols, depth], B[k, col] = source[col * depth + k];
        // else source [depth, cols], B[k, col] = source[k * cols + col].
        std::vector<S> source(static_cast<std::size_t>(cols * depth));
        for (auto& v : source) v = static_cast<S>(uniform(rng));
        Packed packed;
        packed.pack(source.data(), transposed ? depth : cols, transposed, depth, groups, width);
        const auto b = [&](int64_t k, int64_t col) {
          return transposed ? source[col * depth + k] : source[k * cols + col];
        };
        for (int64_t rows = 1; rows <= 21; ++rows) {
          for (bool accumulate : {false, true}) {
            const int64_t slots = packed.slots();
            for (auto [slot_from, slot_to] : {std::pair<int64_t, int64_t>{0, slots},
                                              {slots / 2, slots},
                                              {1, std::max<int64_t>(1, slots - 1)}}) {
              const int64_t lda = depth + 2, ldo = cols + 3;
              std::vector<S> a(static_cast<std::size_t>(rows * lda)), out(static_cast<std::size_t>(rows * ldo));
              for (auto& v : a) v = static_cast<S>(uniform(rng));
              for (auto& v : out) v = static_cast<S>(uniform(rng));
              const std::vector<S> before = out;
              std::vector<S> scratch(static_cast<std::size_t>(packed.scratch_size(rows)));
              packed.multiply(a.data(), lda, rows, out.data(), ldo, accumulate, slot_from, slot_to,
                              scratch.data());
              const int64_t first = Packed::slot_begin(slot_from), end = Packed::slot_begin(slot_to);
              for (int64_t r = 0; r < rows; ++r) {
                for (int64_t col = 0; col < ldo; ++col) {
                  const S got = out[r * ldo + col], old = before[r * ldo + col];
                  if (col >= cols || col % width < first || col % width >= end) {
                    ASSERT_EQ(got, old) << "column outside the product written: rows " << rows
                                        << " col " << col;
                    continue;
                  }
                  double want = accumulate ? old : 0.0;
                  for (int64_t k = 0; k < depth; ++k) want += double(a[r * lda + k]) * double(b(k, col));
                  ASSERT_NEAR(got, want, tol * (1.0 + std::abs(want)))
                      << "width " << width << " groups " << groups << " transposed " << transposed
                      << " rows " << rows << " accumulate " << accumulate << " slots "
                      << slot_from << "-" << slot_to << " r " << r << " col " << col;
                }
              }
            }
          }
        }
      }
    }
  }
}

// Rows multiplied all together, or cut into any pieces (as the threads of a time loop split by
// sequences cut them), give the same bits: the few-row kernel sums the depth in the same slices
// as the row blocks. Depths of one, two and three slices.
TYPED_TEST(RecurrentGemm, ARowsResultDoesNotDependOnItsNeighbours) {
  using S = TypeParam;
  using Packed = rnncore::detail::PackedPanels<S>;
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  const int64_t cols = 75;
  const int64_t slice = Packed::kDepthSlice;
  for (int64_t depth : {slice - 3, 2 * slice + 5, 3 * slice}) {
    std::vector<S> source(static_cast<std::size_t>(cols * depth));
    for (auto& v : source) v = static_cast<S>(uniform(rng));
    Packed packed;
    packed.pack(source.data(), depth, true, depth, 1, cols);
    for (int64_t rows : {2, 5, 9, 13}) {
      std::vector<S> a(static_cast<std::size_t>(rows * depth));
      for (auto& v : a) v = static_cast<S>(uniform(rng));
      std::vector<S> scratch(static_cast<std::size_t>(packed.scratch_size(rows)));
      for (bool accumulate : {false, true}) {
        std::vector<S> start(static_cast<std::size_t>(rows * cols));
        for (auto& v : start) v = static_cast<S>(uniform(rng));
        std::vector<S> whole = start;
        packed.multiply(a.data(), depth, rows, whole.data(), cols, accumulate, 0, packed.slots(),
                        scratch.data());
        for (int64_t piece : {1, 2, 3, 4}) {
          std::vector<S> pieces = start;
          for (int64_t r0 = 0; r0 < rows; r0 += piece) {
            const int64_t n = std::min(piece, rows - r0);
            packed.multiply(a.data() + r0 * depth, depth, n, pieces.data() + r0 * cols, cols,
                            accumulate, 0, packed.slots(), scratch.data());
          }
          ASSERT_EQ(pieces, whole) << "depth " << depth << " rows " << rows << " in pieces of "
                                   << piece << " accumulate " << accumulate;
        }
      }
    }
  }
}

// Rows read through an index (RowsOf::index: a product over rows sorted by length reading the
// caller's rows where they lie) give the same bits as the same rows gathered into a copy first,
// at every row count of the few-row kernel and the row blocks, with rows repeated and reversed.
TYPED_TEST(RecurrentGemm, IndexedRowsMatchAGatheredCopyBitForBit) {
  using S = TypeParam;
  using Packed = rnncore::detail::PackedPanels<S>;
  std::mt19937 rng(13);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  const int64_t cols = 45, pool = 30;
  for (int64_t depth : {int64_t{7}, int64_t{64}, Packed::kDepthSlice + 9}) {
    std::vector<S> source(static_cast<std::size_t>(cols * depth));
    for (auto& v : source) v = static_cast<S>(uniform(rng));
    Packed packed;
    packed.pack(source.data(), depth, true, depth, 1, cols);
    const int64_t lda = depth + 1;  // the caller's rows, a stride wider than the depth
    std::vector<S> a(static_cast<std::size_t>(pool * lda));
    for (auto& v : a) v = static_cast<S>(uniform(rng));
    for (int64_t rows = 1; rows <= 21; ++rows) {
      std::vector<int64_t> index(static_cast<std::size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) index[r] = (pool - 1 - 3 * r % pool + pool) % pool;  // reversed
      if (rows > 2) index[2] = index[0];                                       // a row twice
      std::vector<S> gathered(static_cast<std::size_t>(rows * depth));
      for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(a.data() + index[r] * lda, depth, gathered.data() + r * depth);
      }
      std::vector<S> scratch(static_cast<std::size_t>(packed.scratch_size(rows)));
      for (bool accumulate : {false, true}) {
        std::vector<S> start(static_cast<std::size_t>(rows * cols));
        for (auto& v : start) v = static_cast<S>(uniform(rng));
        std::vector<S> want = start, got = start;
        packed.multiply(gathered.data(), depth, rows, want.data(), cols, accumulate, 0,
                        packed.slots(), scratch.data());
        packed.multiply(rnncore::detail::RowsOf<S>{a.data(), lda, index.data()}, rows, got.data(),
                        cols, accumulate, 0, packed.slots(), scratch.data());
        ASSERT_EQ(got, want) << "depth " << depth << " rows " << rows << " accumulate " << accumulate;
        // from(r0): the rows from r0 on, through the index and without one.
        const int64_t r0 = rows / 2;
        std::vector<S> tail = start;
        packed.multiply(rnncore::detail::RowsOf<S>{a.data(), lda, index.data()}.from(r0), rows - r0,
                        tail.data() + r0 * cols, cols, accumulate, 0, packed.slots(), scratch.data());
        std::vector<S> tail_want = start;
        packed.multiply(rnncore::detail::RowsOf<S>{gathered.data(), depth}.from(r0), rows - r0,
                        tail_want.data() + r0 * cols, cols, accumulate, 0, packed.slots(),
                        scratch.data());
        ASSERT_EQ(tail, tail_want) << "depth " << depth << " rows " << rows << " from " << r0;
      }
    }
  }
}

// Walking the panels last to first (`backwards`, every other step of a time loop) gives the
// bits of the forward walk: at every row count of the few-row kernel and the row blocks, one or
// several panel groups, depths of one and two slices, and slot ranges that start or end
// mid-chunk (one thread's share).
TYPED_TEST(RecurrentGemm, WalkingThePanelsBackwardsGivesTheSameBits) {
  using S = TypeParam;
  using Packed = rnncore::detail::PackedPanels<S>;
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  for (int64_t width : {5, 37, 100}) {
    for (int64_t groups : {1, 4}) {
      for (int64_t depth : {int64_t{9}, Packed::kDepthSlice + 3}) {
        const int64_t cols = groups * width;
        std::vector<S> source(static_cast<std::size_t>(cols * depth));
        for (auto& v : source) v = static_cast<S>(uniform(rng));
        Packed packed;
        packed.pack(source.data(), depth, true, depth, groups, width);
        const int64_t slots = packed.slots();
        for (int64_t rows = 1; rows <= 21; rows += rows < 10 ? 1 : 5) {
          std::vector<S> a(static_cast<std::size_t>(rows * depth));
          for (auto& v : a) v = static_cast<S>(uniform(rng));
          std::vector<S> scratch(static_cast<std::size_t>(packed.scratch_size(rows)));
          for (auto [slot_from, slot_to] : {std::pair<int64_t, int64_t>{0, slots},
                                            {1, slots},
                                            {0, std::max<int64_t>(1, slots - 1)}}) {
            for (bool accumulate : {false, true}) {
              std::vector<S> start(static_cast<std::size_t>(rows * cols));
              for (auto& v : start) v = static_cast<S>(uniform(rng));
              std::vector<S> forwards = start, backwards = start;
              packed.multiply(a.data(), depth, rows, forwards.data(), cols, accumulate, slot_from,
                              slot_to, scratch.data());
              packed.multiply(a.data(), depth, rows, backwards.data(), cols, accumulate, slot_from,
                              slot_to, scratch.data(), true);
              ASSERT_EQ(backwards, forwards)
                  << "width " << width << " groups " << groups << " depth " << depth << " rows "
                  << rows << " slots " << slot_from << "-" << slot_to << " accumulate "
                  << accumulate;
            }
          }
        }
      }
    }
  }
}

// rnncore::kernel_isa reports what this file, built with the library's flags, was built for: the
// panel width the kernels use and the extensions the compiler was told to use; and the CPU
// running this test supports all of them (it runs the kernels).
TEST(KernelIsa, NamesThePanelsAndTheFlagsTheKernelsWereBuiltWith) {
  const rnncore::KernelIsa isa = rnncore::kernel_isa();
  using Packed = rnncore::detail::PackedPanels<float>;
  EXPECT_EQ(isa.panel_floats, Packed::kPanel);
  EXPECT_EQ(isa.vector_bytes, Packed::kPacket * static_cast<int>(sizeof(float)));
  const auto named = [&](const std::string& name) {
    return std::find(isa.features.begin(), isa.features.end(), name) != isa.features.end();
  };
#ifdef __AVX2__
  EXPECT_TRUE(named("AVX2"));
#else
  EXPECT_FALSE(named("AVX2"));
#endif
#ifdef __FMA__
  EXPECT_TRUE(named("FMA"));
#else
  EXPECT_FALSE(named("FMA"));
#endif
#ifdef __AVX512F__
  EXPECT_TRUE(named("AVX512F"));
  EXPECT_EQ(isa.vector_bytes, 64);
#else
  EXPECT_FALSE(named("AVX512F"));
#endif
  const auto cpu = rnncore::cpu_isa_features();
  if (cpu.has_value()) {
    for (const std::string& f : isa.features) {
      EXPECT_NE(std::find(cpu->begin(), cpu->end(), f), cpu->end()) << f;
    }
  }
}

}  // namespace
