// The products over all T*N rows of a call: the hoisted input projection and dL/dx through
// packed weights (packed_product), Eigen's serial GEMM (serial_gemm) and the weight gradients
// split by gate rows (weight_gradient). Internal to the sequence kernels.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "batch_layout.h"
#include "parallel.h"
#include "recurrent_gemm.h"
#include "thread_policy.h"

namespace rnncore {
namespace detail {

// A product over all T*N rows (the hoisted input projection, dL/dx): out[rows, cols] (+)= a * B
// with B packed, row r of a at a.row(r). Each thread takes an even share of the rows (in whole
// micro-kernel row blocks) and works through it kRowBlock rows at a time: their packed copy stays
// in L2 while every panel of B streams past. `bias`, when given, is added to each block while it
// is still in cache.
// (Why not Eigen's GEMM: bench/README.md, "The numbers behind the thread rules".)
constexpr int64_t kRowBlock = 96;
// Thread `thread` of `team`'s share of packed_product below: an even share of the rows, in whole
// micro-kernel row blocks. `scratch` holds product_scratch_size(b, rows) elements.
template <typename S>
void packed_product_share(const detail::PackedPanels<S>& b, int64_t cols, const RowsOf<S>& a,
                          int64_t rows, S* out, int64_t out_stride, bool accumulate,
                          const S* bias, int thread, int team, S* scratch) {
  constexpr int64_t unit = detail::PackedPanels<S>::kRows;
  const int64_t units = (rows + unit - 1) / unit;
  const int64_t begin = std::min(rows, units * thread / team * unit);
  const int64_t end = std::min(rows, units * (thread + 1) / team * unit);
  for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
    const int64_t n = std::min(kRowBlock, end - r0);
    S* o = out + r0 * out_stride;
    b.multiply(a.from(r0), n, o, out_stride, accumulate, 0, b.slots(), scratch);
    if (bias != nullptr) {
      for (int64_t r = 0; r < n; ++r) {
        Eigen::Map<RowVec<S>>(o + r * out_stride, cols) += Eigen::Map<const RowVec<S>>(bias, cols);
      }
    }
  }
}

template <typename S>
int64_t product_scratch_size(const detail::PackedPanels<S>& b, int64_t rows) {
  return b.scratch_size(std::min(kRowBlock, rows));
}

template <typename S>
void packed_product(const detail::PackedPanels<S>& b, int64_t cols, const RowsOf<S>& a,
                    int64_t rows, S* out, int64_t out_stride, bool accumulate, const S* bias) {
  constexpr int64_t unit = detail::PackedPanels<S>::kRows;
  const int64_t units = (rows + unit - 1) / unit;
  const int threads = product_threads(2.0 * static_cast<double>(rows) * b.depth() * cols,
                                      static_cast<double>(units));
  // Allocated here, where a failure can throw: nothing inside the team may.
  std::vector<Buffer<S>> scratch(static_cast<std::size_t>(threads));
  for (auto& buf : scratch) buf.resize(static_cast<std::size_t>(product_scratch_size(b, rows)));
  parallel_team(threads, [&](int thread, int team, StepBarrier&) {
    packed_product_share(b, cols, a, rows, out, out_stride, accumulate, bias, thread,
                         team, scratch[static_cast<std::size_t>(thread)].data());
  });
}

// C[m, n] (row-major) = A[m, k] * B[k, n] on the calling thread only, A and B of the given
// storage orders and leading dimensions: Eigen's serial GEMM routine (Eigen's internal API,
// pinned to 3.4 by the build), which the weight gradients below split across threads
// themselves.
template <typename S, int LhsOrder, int RhsOrder>
void serial_gemm(int64_t m, int64_t n, int64_t k, const S* a, int64_t lda, const S* b,
                 int64_t ldb, S* c) {
  using Eigen::Index;
  using namespace Eigen::internal;
  std::fill(c, c + m * n, S(0));  // the routine accumulates
  gemm_blocking_space<Eigen::RowMajor, S, S, Eigen::Dynamic, Eigen::Dynamic, Eigen::Dynamic, 1>
      blocking(m, n, k, 1, true);
  general_matrix_matrix_product<Index, S, LhsOrder, false, S, RhsOrder, false, Eigen::RowMajor,
                                1>::run(m, n, k, a, lda, b, ldb, c, 1, n, S(1), blocking, nullptr);
}

// dW[gh, width] = dG^T * X for dG [rows, gh] and X [rows, width], both row-major.
// Threads split the gate rows of dW, each running Eigen's serial GEMM on its share: no
// synchronisation inside the product (Eigen's threaded GEMM made two threads slower than one
// here: bench/README.md, "The numbers behind the thread rules").
template <typename S>
void weight_gradient(int64_t rows, int64_t gh, int64_t width, const S* grad_gates, const S* x,
                     S* grad_w) {
  // Each thread keeps at least one SIMD-friendly block of 16 gate rows.
  const int threads = product_threads(2.0 * static_cast<double>(rows) * gh * width,
                                      static_cast<double>(gh / 16));
  parallel_team(threads, [&](int thread, int team, StepBarrier&) {
    const int64_t r0 = gh * thread / team, r1 = gh * (thread + 1) / team;
    serial_gemm<S, Eigen::ColMajor, Eigen::RowMajor>(r1 - r0, width, rows, grad_gates + r0, gh, x,
                                                     width, grad_w + r0 * width);
  });
}

}  // namespace detail
}  // namespace rnncore
