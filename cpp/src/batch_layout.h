// Where the rows of a whole-sequence call lie (BatchLayout, dense or packed by length), what one
// (layer, direction) pass is given (DirectionRun, make_run), and a direction's prepared weights.
// Internal to the sequence kernels (sequence.cpp).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <vector>

#include "rnncore/memory.h"
#include "rnncore/sequence.h"
#include "recurrent_gemm.h"

namespace rnncore {
namespace detail {

template <typename S>
using RowVec = Eigen::Matrix<S, 1, Eigen::Dynamic>;

template <typename S>
void copy_rows(const S* src, S* dst, int64_t count) {
  std::memcpy(dst, src, static_cast<std::size_t>(count) * sizeof(S));
}

// Dropout between layers: a[i] *= mask[i] for `count` values (forward on a layer's output,
// backward on the gradient reaching it).
template <typename S>
void apply_mask(S* a, const S* mask, int64_t count) {
  for (int64_t i = 0; i < count; ++i) a[i] *= mask[i];
}

}  // namespace detail

namespace detail {
// One (layer, direction) of PreparedWeights: the packings a forward pass would otherwise make on
// every call, and copies of the biases. W_hh^T is packed as one run of G*H columns (a time loop
// on one thread, or split by sequences) and, where H is not a multiple of the panel width, also
// with one panel group per gate (split by hidden units). Where H is a multiple, the per-gate
// layout holds the same bytes and a pass views w_hh_t as gates (PackedPanels::view_as_groups).
template <typename S>
struct PreparedDirection {
  PackedPanels<S> w_ih_t, w_hh_t, w_hh_t_gates;
  Buffer<S> b_ih, b_hh;
};
}  // namespace detail

template <typename S>
struct PreparedWeights<S>::Impl {
  std::vector<detail::PreparedDirection<S>> directions;  // [L*D], as the weights
};

namespace detail {

// Where the (step, sequence) rows of a call lie in its T*N-row arrays (inputs, gates, caches,
// outputs between layers, gradients).
// Dense (every sequence runs all T steps): step t's rows are t*N .. t*N + N-1.
// Packed (variable lengths): the sequences sorted by length, longest first (ties in the caller's
// order), so that the ones still running at step t are the first count(t); step t's rows are
// row0(t) .. row0(t) + count(t) - 1, and the arrays hold sum(lengths) rows, not T*N. Products,
// cell math and weight gradients then run on real rows only, and the input projection and the
// weight gradients stay one product each over all of them (PyTorch's PackedSequence layout).
// The same rows serve both directions: at time t the sequences running are the first count(t),
// whichever way time is walked.
class BatchLayout {
 public:
  BatchLayout(int64_t steps, int64_t batch, const int64_t* lengths) : steps_(steps), batch_(batch) {
    if (lengths == nullptr || std::all_of(lengths, lengths + batch, [&](int64_t l) { return l == steps; })) {
      return;
    }
    order_.resize(static_cast<std::size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) order_[static_cast<std::size_t>(b)] = b;
    std::stable_sort(order_.begin(), order_.end(),
                     [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
    offsets_.assign(static_cast<std::size_t>(steps) + 1, 0);
    int64_t running = batch;  // sequences longer than t, the first `running` of order_
    for (int64_t t = 0; t < steps; ++t) {
      while (running > 0 && lengths[order_[static_cast<std::size_t>(running - 1)]] <= t) --running;
      offsets_[static_cast<std::size_t>(t) + 1] = offsets_[static_cast<std::size_t>(t)] + running;
    }
    work_before_.assign(static_cast<std::size_t>(batch) + 1, 0);
    for (int64_t j = 0; j < batch; ++j) {
      work_before_[static_cast<std::size_t>(j) + 1] = work_before_[static_cast<std::size_t>(j)] + lengths[sequence(j)];
    }
    caller_rows_.resize(static_cast<std::size_t>(rows()));
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t j = 0; j < count(t); ++j) {
        caller_rows_[static_cast<std::size_t>(row0(t) + j)] = t * batch + sequence(j);
      }
    }
  }
  bool packed() const noexcept { return !offsets_.empty(); }
  int64_t steps() const noexcept { return steps_; }
  int64_t batch() const noexcept { return batch_; }
  int64_t row0(int64_t t) const noexcept {
    return packed() ? offsets_[static_cast<std::size_t>(t)] : t * batch_;
  }
  int64_t count(int64_t t) const noexcept {
    return packed() ? offsets_[static_cast<std::size_t>(t) + 1] - offsets_[static_cast<std::size_t>(t)]
                    : batch_;
  }
  int64_t rows() const noexcept { return row0(steps_); }
  // Where packed(): the caller's row (t * N + sequence) of each packed row [rows()], so that a
  // pass can read its input and write its output in the caller's [T, N, width] arrays with no
  // gathered copy (DirectionRun::in_rows, out_rows). nullptr where dense.
  const int64_t* caller_rows() const noexcept { return packed() ? caller_rows_.data() : nullptr; }

  // The first sequence (in the layout's order) of thread `thread` of `team` when a time loop
  // splits by sequences (thread == team: N): dense, an even share; packed, shares of about equal
  // (step, sequence) pairs. Packed sequences are sorted longest first, so even shares of
  // sequences would hand the first thread most of the work (lengths uniform in T/10..T: ~70%).
  int64_t share_begin(int thread, int team) const noexcept {
    if (!packed()) return batch_ * thread / team;
    // The boundary nearest to an even share of the work.
    const int64_t target = rows() * thread / team;
    const auto at = std::lower_bound(work_before_.begin(), work_before_.end(), target);
    const int64_t b = at - work_before_.begin();
    return b > 0 && target - *(at - 1) < *at - target ? b - 1 : b;
  }

  // Packed rows [rows(), width] from the caller's [T, N, width] (only where packed()).
  template <typename S>
  void gather(const S* dense, int64_t width, S* packed) const {
    for (int64_t r = 0; r < rows(); ++r) {
      copy_rows(dense + caller_rows_[static_cast<std::size_t>(r)] * width, packed + r * width, width);
    }
  }
  // The caller's [T, N, width] from packed rows, zero where a sequence has ended.
  template <typename S>
  void scatter(const S* packed, int64_t width, S* dense) const {
    for (int64_t r = 0; r < rows(); ++r) {
      copy_rows(packed + r * width, dense + caller_rows_[static_cast<std::size_t>(r)] * width, width);
    }
    zero_ended(dense, width);
  }
  // Zeros in the caller's [T, N, width] rows of the (step, sequence) pairs past a sequence's end
  // (only where packed()).
  template <typename S>
  void zero_ended(S* dense, int64_t width) const {
    for (int64_t t = 0; t < steps_; ++t) {
      for (int64_t j = count(t); j < batch_; ++j) {
        S* row = dense + (t * batch_ + sequence(j)) * width;
        std::fill(row, row + width, S(0));
      }
    }
  }
  // States [slots, N, H] between the caller's order and the sorted one (to_sorted: caller's to
  // sorted). nullptr in, nullptr out (the buffer is left empty).
  template <typename S>
  const S* reorder_states(const S* from, int64_t slots, int64_t H, bool to_sorted, Buffer<S>& buffer) const {
    if (from == nullptr) return nullptr;
    buffer.resize(static_cast<std::size_t>(slots * batch_ * H));
    reorder_states_into(from, slots, H, to_sorted, buffer.data());
    return buffer.data();
  }
  template <typename S>
  void reorder_states_into(const S* from, int64_t slots, int64_t H, bool to_sorted, S* to) const {
    for (int64_t k = 0; k < slots; ++k) {
      for (int64_t j = 0; j < batch_; ++j) {
        const int64_t sorted = k * batch_ + j, caller = k * batch_ + sequence(j);
        copy_rows(from + (to_sorted ? caller : sorted) * H, to + (to_sorted ? sorted : caller) * H, H);
      }
    }
  }

 private:
  int64_t sequence(int64_t j) const noexcept { return order_[static_cast<std::size_t>(j)]; }
  int64_t steps_, batch_;
  std::vector<int64_t> order_;    // sorted position -> the caller's sequence
  std::vector<int64_t> offsets_;  // [T + 1]: row0(t)
  std::vector<int64_t> caller_rows_;  // [rows()], see caller_rows()
  std::vector<int64_t> work_before_;  // [N + 1]: the lengths of the first j sequences, summed
};

// Rows [begin, end) of a time loop's [N, H] buffer `from` copied to `to`, units [j0, j0 + n):
// sequences that stopped running keep their value in both of the loop's buffers from then on.
template <typename S>
void keep_rows(const S* from, S* to, int64_t begin, int64_t end, int64_t H, int64_t j0, int64_t n) {
  for (int64_t b = begin; b < end; ++b) copy_rows(from + b * H + j0, to + b * H + j0, n);
}

// Everything one (layer, direction) pass needs to know besides the arrays.
template <typename S>
struct DirectionRun {
  CellKind cell;
  int64_t steps, batch, input_size, hidden_size;
  bool reverse;
  const BatchLayout* layout;  // where each step's rows are; only their first count(t) run
  DirectionWeights<S> w;      // with `prepared`, only the biases (w_ih, w_hh are nullptr)
  const detail::PreparedDirection<S>* prepared = nullptr;
  // Where the layout is packed, the pass's input (forward) and its output (forward: y; backward:
  // dL/dy) may be the caller's [T, N, width] arrays, not packed ones: packed row r is then row
  // in_rows[r] / out_rows[r] of them (BatchLayout::caller_rows). nullptr: packed rows. make_run
  // sets out_rows for the top layer; the forward stack sets in_rows where the first layer reads x.
  const int64_t* in_rows = nullptr;
  const int64_t* out_rows = nullptr;

  int64_t gate_rows() const { return gate_count(cell) * hidden_size; }
  // The row of the pass's output array (y, or dL/dy in BPTT) that holds packed row r.
  int64_t out_row(int64_t r) const { return out_rows != nullptr ? out_rows[r] : r; }
  int64_t time_of(int64_t s) const { return reverse ? steps - 1 - s : s; }
  int64_t row0(int64_t t) const { return layout->row0(t); }
  int64_t count(int64_t t) const { return layout->count(t); }
  int64_t rows() const { return layout->rows(); }
  bool packed() const { return layout->packed(); }
};

// The bias folded into the hoisted projection: b_ih + b_hh, except the GRU's b_hn, which must
// stay inside r * (W_hn h + b_hn) and is added per step.
template <typename S>
RowVec<S> folded_bias(const DirectionRun<S>& run) {
  const int64_t gh = run.gate_rows(), H = run.hidden_size;
  RowVec<S> bias = RowVec<S>::Zero(gh);
  if (run.w.b_ih != nullptr) bias += Eigen::Map<const RowVec<S>>(run.w.b_ih, gh);
  if (run.w.b_hh != nullptr) {
    const int64_t folded = run.cell == CellKind::Gru ? 2 * H : gh;
    bias.head(folded) += Eigen::Map<const RowVec<S>>(run.w.b_hh, folded);
  }
  return bias;
}

template <typename S>
DirectionRun<S> make_run(const ModelConfig& config, const DirectionWeights<S>& w, int64_t layer,
                         int direction, const BatchLayout& layout,
                         const detail::PreparedDirection<S>* prepared = nullptr) {
  DirectionWeights<S> used = w;
  if (!config.bias) used.b_ih = used.b_hh = nullptr;
  DirectionRun<S> run{config.cell,        layout.steps(), layout.batch(), config.layer_input_size(layer),
                      config.hidden_size, direction == 1, &layout, used, prepared};
  // The top layer's output (y; dL/dy in BPTT) is always the caller's [T, N, D*H]: with a packed
  // layout its rows are written and read where they lie.
  if (layer + 1 == config.num_layers) run.out_rows = layout.caller_rows();
  return run;
}

}  // namespace detail
}  // namespace rnncore
