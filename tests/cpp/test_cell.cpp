// cell.h's forward passes: a unit's result does not depend on where it sits in a pass (in a
// whole SIMD packet or among the last units of a count that is not a multiple of the packet),
// and no value past `count` is read or written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "rnncore/cell.h"

namespace {

namespace cell = rnncore::cell;

// Fills v with values in [-3, 3] (the activations' curved range, where rounding differs).
std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The arrays of one forward pass over `count` units, each with `kCanary` NaNs after its end (a
// pass that reads them would spread NaN into its results; one that writes them changes them).
constexpr int kCanary = 32;
struct Arrays {
  int64_t count, gates_n;
  std::vector<float> gates, hidden, b_hn, c_prev, h_prev, c_new, tanh_c, h_new, hn_out;
  Arrays(int64_t n, int gate_rows, unsigned seed) : count(n), gates_n(gate_rows * n) {
    const auto padded = [&](std::vector<float> v) {
      v.resize(v.size() + kCanary, std::numeric_limits<float>::quiet_NaN());
      return v;
    };
    gates = padded(random_values(static_cast<std::size_t>(gates_n), seed));
    hidden = padded(random_values(static_cast<std::size_t>(gates_n), seed + 1));
    b_hn = padded(random_values(static_cast<std::size_t>(n), seed + 2));
    c_prev = padded(random_values(static_cast<std::size_t>(n), seed + 3));
    h_prev = padded(random_values(static_cast<std::size_t>(n), seed + 4));
    c_new = tanh_c = h_new = hn_out = padded(std::vector<float>(static_cast<std::size_t>(n), 0.0f));
  }
};

enum class Cell { Tanh, Relu, Lstm, Gru };

// Units [j0, j0 + n) of `a` through the cell's _part function (gate_stride = a.count).
void run_part(Cell cell, Arrays& a, int64_t j0, int64_t n) {
  const int64_t H = a.count;
  switch (cell) {
    case Cell::Tanh:
    case Cell::Relu:
      cell::rnn_forward_part(n, cell == Cell::Relu, a.gates.data() + j0, a.h_new.data() + j0);
      break;
    case Cell::Lstm:
      cell::lstm_forward_part(n, H, a.gates.data() + j0, a.c_prev.data() + j0, a.c_new.data() + j0,
                              a.tanh_c.data() + j0, a.h_new.data() + j0);
      break;
    case Cell::Gru:
      cell::gru_forward_part(n, H, a.gates.data() + j0, a.hidden.data() + j0, a.b_hn.data() + j0,
                             a.h_prev.data() + j0, a.hn_out.data() + j0, a.h_new.data() + j0);
      break;
  }
}

int gate_rows(Cell cell) { return cell == Cell::Lstm ? 4 : cell == Cell::Gru ? 3 : 1; }

void expect_same(const std::vector<float>& a, const std::vector<float>& b, const char* what,
                 int64_t count, int64_t split) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(same_bits(a[i], b[i]) || (std::isnan(a[i]) && std::isnan(b[i])))
        << what << "[" << i << "]: " << a[i] << " vs " << b[i] << " (count " << count
        << ", split at " << split << ")";
  }
}

TEST(CellPasses, AUnitsResultDoesNotDependOnWhereItSitsInThePass) {
  const int64_t W = cell::fused::enabled<float>() ? cell::fused::width<float>() : 1;
  for (Cell cell : {Cell::Tanh, Cell::Relu, Cell::Lstm, Cell::Gru}) {
    for (int64_t count = 1; count <= 2 * W + 3; ++count) {
      // One pass over all units: whole packets, then the last count % W units.
      Arrays whole(count, gate_rows(cell), static_cast<unsigned>(count));
      run_part(cell, whole, 0, count);
      // The same units split at every position, and one unit at a time (each then the only,
      // last unit of its pass).
      for (int64_t split = 0; split <= count; ++split) {
        Arrays parts(count, gate_rows(cell), static_cast<unsigned>(count));
        if (split > 0) run_part(cell, parts, 0, split);
        if (split < count) run_part(cell, parts, split, count - split);
        expect_same(whole.gates, parts.gates, "gates", count, split);
        expect_same(whole.h_new, parts.h_new, "h_new", count, split);
        expect_same(whole.c_new, parts.c_new, "c_new", count, split);
        expect_same(whole.tanh_c, parts.tanh_c, "tanh_c", count, split);
        expect_same(whole.hn_out, parts.hn_out, "hn_out", count, split);
      }
      Arrays single(count, gate_rows(cell), static_cast<unsigned>(count));
      for (int64_t j = 0; j < count; ++j) run_part(cell, single, j, 1);
      expect_same(whole.h_new, single.h_new, "h_new one at a time", count, -1);
      expect_same(whole.gates, single.gates, "gates one at a time", count, -1);
      // Every result is a number, and the NaNs past each array's end are still there (nothing
      // past `count` was read into a result or written).
      for (int64_t j = 0; j < count; ++j) ASSERT_FALSE(std::isnan(whole.h_new[j])) << j;
      for (int k = 0; k < kCanary; ++k) {
        ASSERT_TRUE(std::isnan(whole.h_new[count + k]));
        ASSERT_TRUE(std::isnan(whole.c_new[count + k]));
        ASSERT_TRUE(std::isnan(whole.tanh_c[count + k]));
        ASSERT_TRUE(std::isnan(whole.hn_out[count + k]));
        ASSERT_TRUE(std::isnan(whole.gates[whole.gates_n + k]));
      }
    }
  }
}

// The packet math of the last units is the cell's formula: against cell_unit.h's scalar form
// with double-precision activations, within float rounding.
TEST(CellPasses, TheLastUnitsFollowTheFormulas) {
  struct Exact {
    static double tanh(double a) { return std::tanh(a); }
    static double logistic(double a) { return 1.0 / (1.0 + std::exp(-a)); }
  };
  for (int64_t count : {1, 3, 7, 12, 20}) {
    Arrays a(count, 4, 11);
    const std::vector<float> gates = a.gates, c_prev = a.c_prev;
    run_part(Cell::Lstm, a, 0, count);
    for (int64_t j = 0; j < count; ++j) {
      double i = gates[j], f = gates[j + count], g = gates[j + 2 * count], o = gates[j + 3 * count];
      double c = 0, tc = 0, h = 0;
      cell::unit::lstm_forward<Exact>(i, f, g, o, double(c_prev[j]), c, tc, h);
      EXPECT_NEAR(a.h_new[j], h, 1e-6) << "count " << count << " unit " << j;
      EXPECT_NEAR(a.c_new[j], c, 1e-6) << "count " << count << " unit " << j;
    }
  }
}

}  // namespace
