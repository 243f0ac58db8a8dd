// The packed recurrent product (cpp/src/recurrent_gemm.h) against a plain triple loop, at every
// row count from 1 to 21 (the few-row kernel for 1-3 rows, then row blocks split as evenly as
// possible), widths around the panel width, one or several panel groups, both packing layouts,
// overwrite and accumulate, and ranges of slots (SIMD packets of columns: one thread's share)
// that start or end mid-panel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "recurrent_gemm.h"

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

}  // namespace
