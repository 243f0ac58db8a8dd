// Sequence kernels: the hoisted input GEMM, the time loop (one recurrent GEMM and one pointwise
// pass per step) and BPTT with the weight gradients as one GEMM each over all steps.
#include "rnncore/sequence.h"

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <exception>
#include <string>

#include "rnncore/cell.h"
#include "rnncore/checked.h"
#include "parallel.h"
#include "recurrent_gemm.h"
#include "thread_policy.h"

namespace rnncore {

using detail::layer_flops;
using detail::product_threads;
using detail::TimeLoopSplit;
using detail::WavefrontPlan;

template <typename S>
std::size_t TrainingCache<S>::nbytes() const noexcept {
  std::size_t n = 0;
  for (const auto& v : layer_inputs_) n += v.size();
  for (const auto& v : dropout_masks_) n += v.size();
  for (const auto& d : directions_) {
    n += d.gates.size() + d.h_prev.size() + d.c_prev.size() + d.tanh_c.size() + d.hn.size();
  }
  return n * sizeof(S);
}

namespace {

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

}  // namespace

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

namespace {

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

  // Packed rows [rows(), width] from the caller's [T, N, width] (only where packed()).
  template <typename S>
  void gather(const S* dense, int64_t width, S* packed) const {
    for (int64_t t = 0; t < steps_; ++t) {
      for (int64_t j = 0; j < count(t); ++j) {
        copy_rows(dense + (t * batch_ + sequence(j)) * width, packed + (row0(t) + j) * width, width);
      }
    }
  }
  // The caller's [T, N, width] from packed rows, zero where a sequence has ended.
  template <typename S>
  void scatter(const S* packed, int64_t width, S* dense) const {
    for (int64_t t = 0; t < steps_; ++t) {
      for (int64_t j = 0; j < batch_; ++j) {
        S* row = dense + (t * batch_ + sequence(j)) * width;
        if (j < count(t)) {
          copy_rows(packed + (row0(t) + j) * width, row, width);
        } else {
          std::fill(row, row + width, S(0));
        }
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

  int64_t gate_rows() const { return gate_count(cell) * hidden_size; }
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

// A product over all T*N rows (the hoisted input projection, dL/dx): out[rows, cols] (+)= a * B
// with B packed. Each thread takes an even share of the rows (in whole micro-kernel row blocks)
// and works through it kRowBlock rows at a time: their packed copy stays in L2 while every panel
// of B streams past. `bias`, when given, is added to each block while it is still in cache.
// Measured ~10-20% above Eigen's GEMM at these shapes, which packs both operands on every call
// and splits the columns, not the rows, across threads.
constexpr int64_t kRowBlock = 96;
// Thread `thread` of `team`'s share of packed_product below: an even share of the rows, in whole
// micro-kernel row blocks. `scratch` holds product_scratch_size(b, rows) elements.
template <typename S>
void packed_product_share(const detail::PackedPanels<S>& b, int64_t cols, const S* a,
                          int64_t a_stride, int64_t rows, S* out, int64_t out_stride,
                          bool accumulate, const S* bias, int thread, int team, S* scratch) {
  constexpr int64_t unit = detail::PackedPanels<S>::kRows;
  const int64_t units = (rows + unit - 1) / unit;
  const int64_t begin = std::min(rows, units * thread / team * unit);
  const int64_t end = std::min(rows, units * (thread + 1) / team * unit);
  for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
    const int64_t n = std::min(kRowBlock, end - r0);
    S* o = out + r0 * out_stride;
    b.multiply(a + r0 * a_stride, a_stride, n, o, out_stride, accumulate, 0, b.slots(), scratch);
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
void packed_product(const detail::PackedPanels<S>& b, int64_t cols, const S* a, int64_t a_stride,
                    int64_t rows, S* out, int64_t out_stride, bool accumulate, const S* bias) {
  constexpr int64_t unit = detail::PackedPanels<S>::kRows;
  const int64_t units = (rows + unit - 1) / unit;
  const int threads = product_threads(2.0 * static_cast<double>(rows) * b.depth() * cols,
                                      static_cast<double>(units));
  // Allocated here, where a failure can throw: nothing inside the team may.
  std::vector<Buffer<S>> scratch(static_cast<std::size_t>(threads));
  for (auto& buf : scratch) buf.resize(static_cast<std::size_t>(product_scratch_size(b, rows)));
  parallel_team(threads, [&](int thread, int team, StepBarrier&) {
    packed_product_share(b, cols, a, a_stride, rows, out, out_stride, accumulate, bias, thread,
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
// synchronisation inside the product. Eigen's own threaded GEMM splits the output columns and
// hands packed blocks between threads; for these products (a small output, a depth of T*N) that
// made two threads slower than one (RNN 48x4x500 training: 1.4 ms on two, 0.75 on one).
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

// The hidden units [begin, end) that thread `thread` of `threads` owns in the time loop: an even
// share of the slots (SIMD packets of units) of the packed recurrent weights, so its share of the
// recurrent product and of the pointwise cell math touch the same units and need no barrier
// between them. Slots, not two-packet panels: H = 160 is 10 slots, 5 + 5, where 5 panels split
// 3 + 2 and the time loop ran at 1.2x of one thread.
struct UnitRange {
  int64_t slot_begin, slot_end, begin, end;
  int64_t count() const { return end - begin; }
};

template <typename S>
UnitRange unit_range(const detail::PackedPanels<S>& packed, int64_t H, int thread, int threads) {
  const int64_t slots = packed.slots();
  const int64_t s0 = slots * thread / threads, s1 = slots * (thread + 1) / threads;
  return {s0, s1, std::min(H, detail::PackedPanels<S>::slot_begin(s0)),
          std::min(H, detail::PackedPanels<S>::slot_begin(s1))};
}

}  // namespace

namespace {
// Every x86 extension that RNNCORE_ARCH can turn on, each with the compiler's macro for it.
struct X86Feature {
  const char* name;
  bool compiled_in;
};
constexpr X86Feature kX86Features[] = {
#if defined(__x86_64__) || defined(_M_X64)
    {"SSE2", true},  // part of x86-64
#ifdef __SSE3__
    {"SSE3", true},
#else
    {"SSE3", false},
#endif
#ifdef __SSSE3__
    {"SSSE3", true},
#else
    {"SSSE3", false},
#endif
#ifdef __SSE4_1__
    {"SSE4.1", true},
#else
    {"SSE4.1", false},
#endif
#ifdef __SSE4_2__
    {"SSE4.2", true},
#else
    {"SSE4.2", false},
#endif
#ifdef __POPCNT__
    {"POPCNT", true},
#else
    {"POPCNT", false},
#endif
#ifdef __AVX__
    {"AVX", true},
#else
    {"AVX", false},
#endif
#ifdef __AVX2__
    {"AVX2", true},
#else
    {"AVX2", false},
#endif
#ifdef __FMA__
    {"FMA", true},
#else
    {"FMA", false},
#endif
#ifdef __F16C__
    {"F16C", true},
#else
    {"F16C", false},
#endif
#ifdef __BMI2__
    {"BMI2", true},
#else
    {"BMI2", false},
#endif
#ifdef __AVX512F__
    {"AVX512F", true},
#else
    {"AVX512F", false},
#endif
#ifdef __AVX512BW__
    {"AVX512BW", true},
#else
    {"AVX512BW", false},
#endif
#ifdef __AVX512VL__
    {"AVX512VL", true},
#else
    {"AVX512VL", false},
#endif
#ifdef __AVX512DQ__
    {"AVX512DQ", true},
#else
    {"AVX512DQ", false},
#endif
#ifdef __AVX512CD__
    {"AVX512CD", true},
#else
    {"AVX512CD", false},
#endif
#endif
    {nullptr, false}};

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
// __builtin_cpu_supports takes only string literals, hence one line per extension.
bool cpu_supports(const std::string& name) {
  __builtin_cpu_init();
  if (name == "SSE2") return __builtin_cpu_supports("sse2");
  if (name == "SSE3") return __builtin_cpu_supports("sse3");
  if (name == "SSSE3") return __builtin_cpu_supports("ssse3");
  if (name == "SSE4.1") return __builtin_cpu_supports("sse4.1");
  if (name == "SSE4.2") return __builtin_cpu_supports("sse4.2");
  if (name == "POPCNT") return __builtin_cpu_supports("popcnt");
  if (name == "AVX") return __builtin_cpu_supports("avx");
  if (name == "AVX2") return __builtin_cpu_supports("avx2");
  if (name == "FMA") return __builtin_cpu_supports("fma");
  if (name == "F16C") return __builtin_cpu_supports("f16c");
  if (name == "BMI2") return __builtin_cpu_supports("bmi2");
  if (name == "AVX512F") return __builtin_cpu_supports("avx512f");
  if (name == "AVX512BW") return __builtin_cpu_supports("avx512bw");
  if (name == "AVX512VL") return __builtin_cpu_supports("avx512vl");
  if (name == "AVX512DQ") return __builtin_cpu_supports("avx512dq");
  if (name == "AVX512CD") return __builtin_cpu_supports("avx512cd");
  return false;
}
#define RNNCORE_CAN_ASK_CPU 1
#endif
}  // namespace

KernelIsa kernel_isa() {
  KernelIsa isa;
#if defined(__x86_64__) || defined(_M_X64)
  isa.arch = "x86-64";
#elif defined(__aarch64__)
  isa.arch = "aarch64";
#else
  isa.arch = "other";
#endif
  for (const X86Feature* f = kX86Features; f->name != nullptr; ++f) {
    if (f->compiled_in) isa.features.emplace_back(f->name);
  }
#if defined(__aarch64__) && defined(__ARM_NEON)
  isa.features.emplace_back("NEON");
#endif
  isa.vector_bytes = static_cast<int>(detail::PackedPanels<float>::kPacket * sizeof(float));
  isa.panel_floats = detail::PackedPanels<float>::kPanel;
  return isa;
}

std::optional<std::vector<std::string>> cpu_isa_features() {
#ifdef RNNCORE_CAN_ASK_CPU
  std::vector<std::string> supported;
  for (const X86Feature* f = kX86Features; f->name != nullptr; ++f) {
    if (cpu_supports(f->name)) supported.emplace_back(f->name);
  }
  return supported;
#else
  return std::nullopt;
#endif
}

namespace {

// detail::plan_time_loop for H units of scalars S.
template <typename S>
TimeLoopSplit time_loop_plan(int64_t gates, int64_t H, int64_t N, int64_t T,
                             bool forcible = true) noexcept {
  return detail::plan_time_loop(gates, H, N, T, detail::PackedPanels<S>::slot_count(H), sizeof(S),
                                forcible);
}

// What the forward and the backward pass of one (layer, direction) share: the run, W_hh packed
// for the time loop's product, and what the loop's threads need to know about it.
template <typename S>
class RecurrentPass {
 public:
  // Threads the time loop runs on, chosen when W_hh is packed (see RecurrentPass()).
  int loop_threads() const { return plan_.threads; }
  // Sequences [begin, end) and the unit range that thread `thread` of `team` takes (see
  // TimeLoopSplit).
  struct Share {
    int64_t begin, end;
    UnitRange units;
    bool by_rows;
  };
  Share share(int thread, int team) const {
    const int64_t N = run_.batch, H = run_.hidden_size;
    if (plan_.by_rows && team > 1) {
      return {N * thread / team, N * (thread + 1) / team, unit_range(w_hh(), H, 0, 1), true};
    }
    return {0, N, unit_range(w_hh(), H, thread, team), false};
  }
  // Scratch, per thread, that run_steps needs.
  std::size_t scratch_size() const { return static_cast<std::size_t>(w_hh().scratch_size(run_.batch)); }
  RecurrentPass(const RecurrentPass&) = delete;
  RecurrentPass& operator=(const RecurrentPass&) = delete;

 protected:
  // forward: W_hh^T, B[k, g*H + j] = W_hh[g*H + j, k]; backward: W_hh itself,
  // B[k, j] = W_hh[k, j], k over the G*H gate rows. The time loop gets threads by the step's
  // work and its slots of hidden units (none where may_split is false: a wavefront runs each
  // pass on one thread). Not packed (pack = false) the loop runs on one thread.
  // A forward pass over prepared weights (run.prepared) packs nothing: it takes the packing its
  // split needs from them.
  RecurrentPass(const DirectionRun<S>& run, bool forward, bool pack, bool may_split) : run_(run) {
    const int64_t H = run.hidden_size, G = gate_count(run.cell);
    if (!pack) return;
    if (may_split) plan_ = time_loop_plan<S>(G, H, run.batch, run.steps);
    const bool per_gate = plan_.threads > 1 && !plan_.by_rows;
    if (forward && run.prepared != nullptr) {
      const detail::PreparedDirection<S>& prepared = *run.prepared;
      if (!per_gate) {
        w_hh_ = &prepared.w_hh_t;
      } else if (prepared.w_hh_t_gates.depth() > 0) {
        w_hh_ = &prepared.w_hh_t_gates;
      } else if (!own_w_hh_.view_as_groups(prepared.w_hh_t, G, H)) {
        throw std::logic_error("rnncore: prepared weights lack the per-gate packing of W_hh");
      }
    } else if (!forward) {
      own_w_hh_.pack(run.w.w_hh, H, false, run.gate_rows(), 1, H);
    } else if (per_gate) {
      // One panel group per gate: a slot covers the same units in every gate, and a thread
      // owning a range of slots runs the cell math of its units without waiting for others.
      own_w_hh_.pack(run.w.w_hh, H, true, H, G, H);
    } else {
      // Each thread owns every unit: the G*H columns as one group leave at most one partial
      // panel instead of one per gate (H = 100 LSTM: 13 panels of 32 floats, not 16).
      own_w_hh_.pack(run.w.w_hh, H, true, H, 1, G * H);
    }
  }
  // Two state buffers [N, H] used in turn, then others: buffer i of state_.
  S* state(int64_t i) { return state_.data() + i * run_.batch * run_.hidden_size; }
  // W_hh packed for the time loop's product (see the constructor).
  const detail::PackedPanels<S>& w_hh() const { return *w_hh_; }

  DirectionRun<S> run_;
  Buffer<S> state_;
  TimeLoopSplit plan_;

 private:
  detail::PackedPanels<S> own_w_hh_;
  const detail::PackedPanels<S>* w_hh_ = &own_w_hh_;
};

// Runs steps(thread, team, barrier, scratch) on the threads the time loop of `pass` gets, each
// with its own scratch, allocated before the team starts (nothing inside it may throw).
// `scratch_size`, when given, replaces pass.scratch_size() (work done in the same team needs more).
template <typename S, typename Steps>
void run_time_loop(const RecurrentPass<S>& pass, Steps&& steps, std::size_t scratch_size = 0) {
  const int threads = pass.loop_threads();
  std::vector<Buffer<S>> scratch(static_cast<std::size_t>(threads));
  for (auto& buf : scratch) buf.resize(std::max(scratch_size, pass.scratch_size()));
  parallel_team(threads, [&](int thread, int team, StepBarrier& barrier) {
    steps(thread, team, barrier, scratch[static_cast<std::size_t>(thread)].data());
  });
}

// One (layer, direction) forward pass, in three parts so that a wavefront over stacked layers
// can run it a chunk of steps at a time: project() the inputs of some steps (the hoisted input
// GEMM), then run_steps() over them, then finish(). Everything is allocated and packed by the
// constructor, before any thread team starts: nothing inside the time loop allocates or throws.
template <typename S>
class ForwardPass : public RecurrentPass<S> {
  using RecurrentPass<S>::run_;
  using RecurrentPass<S>::w_hh;
  using RecurrentPass<S>::state_;

 public:
  ForwardPass(const DirectionRun<S>& run, const S* h0, const S* c0,
              typename TrainingCache<S>::Direction* cache, bool may_split = true)
      : RecurrentPass<S>(run, true, !direct(run), may_split), direct_(direct(run)), cache_(cache) {
    const int64_t N = run.batch, H = run.hidden_size, gh = run.gate_rows();
    const int64_t rows = run.rows(), NH = N * H;
    const bool lstm = run.cell == CellKind::Lstm, gru = run.cell == CellKind::Gru;
    Buffer<S>& gates = cache != nullptr ? cache->gates : local_gates_;
    gates.resize(static_cast<std::size_t>(rows * gh));
    gates_ = gates.data();

    // The hoisted product needs no per-gate chunks: its G*H columns are one group.
    if (run.prepared != nullptr) {
      w_ih_t_ = &run.prepared->w_ih_t;
    } else if (!direct_) {
      own_w_ih_t_.pack(run.w.w_ih, run.input_size, true, run.input_size, 1, gh);
    }
    if (run.w.b_ih != nullptr || run.w.b_hh != nullptr) bias_ = folded_bias(run);
    b_hn_ = (gru && run.w.b_hh != nullptr) ? run.w.b_hh + 2 * H : nullptr;

    // Two state buffers used in turn, step s reading the one of parity s. With variable lengths
    // both start from h0: a sequence that the reverse direction has not reached yet is read from
    // either (and a sequence that has ended is copied to both, see run_steps).
    state_.assign(static_cast<std::size_t>(4 * NH), S(0));
    for (int parity = 0; parity < (run.packed() ? 2 : 1); ++parity) {
      if (h0 != nullptr) copy_rows(h0, h_buffer(parity), NH);
      if (lstm && c0 != nullptr) copy_rows(c0, c_buffer(parity), NH);
    }

    if (gru) hidden_proj_.resize(static_cast<std::size_t>(N * gh));
    if (cache != nullptr) {
      cache->h_prev.resize(static_cast<std::size_t>(rows * H));
      if (lstm) {
        cache->c_prev.resize(static_cast<std::size_t>(rows * H));
        cache->tanh_c.resize(static_cast<std::size_t>(rows * H));
      }
      if (gru) cache->hn.resize(static_cast<std::size_t>(rows * H));
    } else if (lstm || gru) {
      step_scratch_.resize(static_cast<std::size_t>(NH));  // tanh(c') or W_hn h + b_hn
    }
  }

  // The input projection (plus folded bias) of time steps [t0, t1), from in [rows, input_size]
  // (BatchLayout). Runs on the calling thread when called inside a parallel region, else may use
  // a team.
  void project(const S* in, int64_t t0, int64_t t1) {
    const int64_t I = run_.input_size, gh = run_.gate_rows();
    const int64_t r0 = run_.row0(t0), r1 = run_.row0(t1);
    if (direct_) {
      for (int64_t r = r0; r < r1; ++r) {
        Eigen::Map<RowVec<S>> g(gates_ + r * gh, gh);
        g.noalias() = Eigen::Map<const RowVec<S>>(in + r * I, I) * weights(run_.w.w_ih, I).transpose();
        if (bias_.size() > 0) g += bias_;
      }
      return;
    }
    packed_product(*w_ih_t_, gh, in + r0 * I, I, r1 - r0, gates_ + r0 * gh, gh, false,
                   bias_.size() > 0 ? bias_.data() : nullptr);
  }

  // Thread `thread` of `team`'s share of project(in, 0, T), for a team that then runs the time
  // loop (after a barrier: a thread's steps read rows that others projected). `scratch` holds
  // project_scratch_size() elements. Only where !is_direct().
  void project_share(const S* in, int thread, int team, S* scratch) {
    const int64_t gh = run_.gate_rows();
    packed_product_share(*w_ih_t_, gh, in, run_.input_size, run_.rows(), gates_, gh, false,
                         bias_.size() > 0 ? bias_.data() : nullptr, thread, team, scratch);
  }
  std::size_t project_scratch_size() const {
    return static_cast<std::size_t>(product_scratch_size(*w_ih_t_, run_.rows()));
  }
  bool is_direct() const { return direct_; }

  // Steps s in [s0, s1) (processing order), thread `thread` of `team` taking its share (units or
  // sequences, see TimeLoopSplit); the steps' projections must be done. `scratch` holds
  // scratch_size() elements.
  void run_steps(int64_t s0, int64_t s1, S* out, int64_t out_stride, int thread, int team,
                 StepBarrier& barrier, S* scratch) {
    const int64_t N = run_.batch, H = run_.hidden_size, gh = run_.gate_rows();
    const bool lstm = run_.cell == CellKind::Lstm, gru = run_.cell == CellKind::Gru;
    const bool relu = run_.cell == CellKind::RnnRelu;
    const auto part = direct_ ? typename RecurrentPass<S>::Share{0, N, UnitRange{0, 0, 0, H}, false}
                              : this->share(thread, team);
    const UnitRange u = part.units;
    const int64_t j0 = u.begin, n = u.count(), b0 = part.begin;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t t = run_.time_of(s), r0 = run_.row0(t);
      // This thread's sequences still running at t: [b0, b1).
      const int64_t b1 = std::min(part.end, run_.count(t));
      S* h = h_buffer(s % 2);
      S* h_next = h_buffer(1 - s % 2);
      S* c = c_buffer(s % 2);
      S* c_next = c_buffer(1 - s % 2);
      // Sequences that ended with the previous step keep their final state in both buffers
      // from now on (finish() reads the buffer of the last step's parity).
      if (s > 0) {
        const int64_t ended = std::min(part.end, run_.count(run_.time_of(s - 1)));
        keep_rows(h, h_next, std::max(b0, b1), ended, H, j0, n);
        if (lstm) keep_rows(c, c_next, std::max(b0, b1), ended, H, j0, n);
      }
      if (b1 <= b0) {
        if (!part.by_rows) barrier.wait();
        continue;
      }
      S* gates_t = gates_ + r0 * gh;
      S* tanh_c_t = nullptr;
      S* hn_t = nullptr;
      if (cache_ != nullptr) {
        for (int64_t b = b0; b < b1; ++b) {
          copy_rows(h + b * H + j0, cache_->h_prev.data() + (r0 + b) * H + j0, n);
          if (lstm) copy_rows(c + b * H + j0, cache_->c_prev.data() + (r0 + b) * H + j0, n);
        }
        if (lstm) tanh_c_t = cache_->tanh_c.data() + r0 * H;
        if (gru) hn_t = cache_->hn.data() + r0 * H;
      } else {
        tanh_c_t = hn_t = step_scratch_.data();
      }

      if (direct_) {
        for (int64_t b = b0; b < b1; ++b) {
          const auto product = Eigen::Map<const RowVec<S>>(h + b * H, H) * weights(run_.w.w_hh, H).transpose();
          if (gru) {
            Eigen::Map<RowVec<S>>(hidden_proj_.data() + b * gh, gh).noalias() = product;
          } else {
            Eigen::Map<RowVec<S>>(gates_t + b * gh, gh).noalias() += product;
          }
        }
      } else if (gru) {
        w_hh().multiply(h + b0 * H, H, b1 - b0, hidden_proj_.data() + b0 * gh, gh, false,
                       u.slot_begin, u.slot_end, scratch);
      } else {
        w_hh().multiply(h + b0 * H, H, b1 - b0, gates_t + b0 * gh, gh, true, u.slot_begin,
                       u.slot_end, scratch);
      }

      for (int64_t b = b0; b < b1; ++b) {
        S* y_part = out + (r0 + b) * out_stride + j0;
        const int64_t o = b * H + j0;
        S* g = gates_t + b * gh + j0;
        switch (run_.cell) {
          case CellKind::RnnTanh:
          case CellKind::RnnRelu:
            cell::rnn_forward_part(n, relu, g, h_next + o);
            break;
          case CellKind::Lstm:
            cell::lstm_forward_part(n, H, g, c + o, c_next + o, tanh_c_t + o, h_next + o);
            break;
          case CellKind::Gru:
            cell::gru_forward_part(n, H, g, hidden_proj_.data() + b * gh + j0,
                                   b_hn_ != nullptr ? b_hn_ + j0 : nullptr, h + o, hn_t + o,
                                   h_next + o);
            break;
        }
        copy_rows(h_next + o, y_part, n);
      }
      // The next step's product reads every unit of h (of this thread's rows only when split by
      // rows).
      if (!part.by_rows) barrier.wait();
    }
  }

  // The final state, after all T steps have run.
  void finish(S* h_n, S* c_n) {
    const int64_t NH = run_.batch * run_.hidden_size;
    const int parity = static_cast<int>(run_.steps % 2);
    if (h_n != nullptr) copy_rows(h_buffer(parity), h_n, NH);
    if (run_.cell == CellKind::Lstm && c_n != nullptr) copy_rows(c_buffer(parity), c_n, NH);
  }

 private:
  // A single step of at most 4 sequences reads each weight at most 4 times: packing W_ih and
  // W_hh costs more than that, so the products run as Eigen matrix-vector products, one per
  // sequence, on the weights as they are. Measured (bench/README), an H = 256 LSTM step from
  // Python: N = 1 98 -> 59 us, N = 2 170 -> 96 us, N = 4 -> 158 us; at N = 8 packing wins (239 vs
  // 272 us). Prepared weights are packed already.
  static bool direct(const DirectionRun<S>& run) {
    return run.prepared == nullptr && run.steps == 1 && run.batch <= 4;
  }
  // A row-major [G*H, width] weight.
  Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> weights(
      const S* w, int64_t width) const {
    return {w, run_.gate_rows(), width};
  }
  S* h_buffer(int64_t parity) { return this->state(parity); }
  S* c_buffer(int64_t parity) { return this->state(2 + parity); }

  bool direct_;
  typename TrainingCache<S>::Direction* cache_;
  Buffer<S> local_gates_, hidden_proj_, step_scratch_;
  S* gates_ = nullptr;
  detail::PackedPanels<S> own_w_ih_t_;
  const detail::PackedPanels<S>* w_ih_t_ = &own_w_ih_t_;  // W_ih^T packed, own or prepared
  RowVec<S> bias_;
  const S* b_hn_ = nullptr;
};

template <typename S>
void direction_forward(const DirectionRun<S>& run, const S* in, const S* h0, const S* c0, S* out,
                       int64_t out_stride, S* h_n, S* c_n,
                       typename TrainingCache<S>::Direction* cache) {
  ForwardPass<S> pass(run, h0, c0, cache);
  // Hoisted input projection: one product over all T*N rows instead of T small ones. Where the
  // time loop runs on a team, the same team shares it out first (one team start, not two, and
  // a product too small to get threads of its own still splits).
  if (pass.loop_threads() > 1 && !pass.is_direct()) {
    run_time_loop(
        pass,
        [&](int thread, int team, StepBarrier& barrier, S* scratch) {
          pass.project_share(in, thread, team, scratch);
          barrier.wait();
          pass.run_steps(0, run.steps, out, out_stride, thread, team, barrier, scratch);
        },
        pass.project_scratch_size());
  } else {
    pass.project(in, 0, run.steps);
    run_time_loop(pass, [&](int thread, int team, StepBarrier& barrier, S* scratch) {
      pass.run_steps(0, run.steps, out, out_stride, thread, team, barrier, scratch);
    });
  }
  pass.finish(h_n, c_n);
}

// One (layer, direction) of BPTT, in parts like ForwardPass: run_steps() over chunks of steps in
// reverse processing order, then finish() (dL/dh0, dL/dc0) and weight_gradients().
// grad_in_gates / grad_hidden_gates [T*N, G*H] receive dL/d(W_ih x + b_ih) and
// dL/d(W_hh h + b_hh); they are the same buffer except for the GRU.
template <typename S>
class BackwardPass : public RecurrentPass<S> {
  using RecurrentPass<S>::run_;
  using RecurrentPass<S>::w_hh;
  using RecurrentPass<S>::state_;

 public:
  BackwardPass(const DirectionRun<S>& run, const typename TrainingCache<S>::Direction& cache,
               const S* grad_h_n, const S* grad_c_n, S* grad_in_gates, S* grad_hidden_gates,
               bool may_split = true)
      : RecurrentPass<S>(run, false, true, may_split),
        cache_(cache),
        grad_in_gates_(grad_in_gates),
        grad_hidden_gates_(grad_hidden_gates) {
    const int64_t NH = run.batch * run.hidden_size;
    state_.assign(static_cast<std::size_t>(5 * NH), S(0));  // dh (2), dc (2), dh + dL/dy
    // Processing step s reads dh and dc of parity (T - 1 - s) % 2: the first step reads buffer 0.
    // With variable lengths both start from dL/dh_n: a sequence whose last step the pass has not
    // reached yet is read from either (as in ForwardPass).
    for (int parity = 0; parity < (run.packed() ? 2 : 1); ++parity) {
      if (grad_h_n != nullptr) copy_rows(grad_h_n, dh_buffer(parity), NH);
      if (run.cell == CellKind::Lstm && grad_c_n != nullptr) copy_rows(grad_c_n, dc_buffer(parity), NH);
    }
  }

  // Processing steps s = s1 - 1 down to s0, thread `thread` of `team` taking its share (units or
  // sequences, see TimeLoopSplit). grad_out [T, N, *] (row stride grad_out_stride) is dL/d(this
  // pass's output), or nullptr; its rows for these steps must be ready.
  void run_steps(int64_t s0, int64_t s1, const S* grad_out, int64_t grad_out_stride, int thread,
                 int team, StepBarrier& barrier, S* scratch) {
    const int64_t T = run_.steps, H = run_.hidden_size, gh = run_.gate_rows();
    const bool lstm = run_.cell == CellKind::Lstm, gru = run_.cell == CellKind::Gru;
    const bool relu = run_.cell == CellKind::RnnRelu;
    const auto part = this->share(thread, team);
    const UnitRange u = part.units;
    const int64_t j0 = u.begin, n = u.count(), b0 = part.begin;
    S* const dh_total = this->state(4);
    for (int64_t s = s1 - 1; s >= s0; --s) {
      const int64_t t = run_.time_of(s), r0 = run_.row0(t);
      // This thread's sequences that ran step t: [b0, b1).
      const int64_t b1 = std::min(part.end, run_.count(t));
      const int64_t parity = (T - 1 - s) % 2;
      S* dh = dh_buffer(parity);
      S* dh_next = dh_buffer(1 - parity);
      S* dc = dc_buffer(parity);
      S* dc_next = dc_buffer(1 - parity);
      // Sequences whose first step (in this pass's order, the last processed) came with the
      // previous processing step keep their dL/dh0 in both buffers from now on (the state passed
      // through the steps they did not run, and so does its gradient).
      if (s + 1 < T) {
        const int64_t ended = std::min(part.end, run_.count(run_.time_of(s + 1)));
        keep_rows(dh, dh_next, std::max(b0, b1), ended, H, j0, n);
        if (lstm) keep_rows(dc, dc_next, std::max(b0, b1), ended, H, j0, n);
      }
      if (b1 <= b0) {
        if (!part.by_rows) barrier.wait();
        continue;
      }
      const S* gates_t = cache_.gates.data() + r0 * gh;
      S* dgi_t = grad_in_gates_ + r0 * gh;
      S* dgh_t = grad_hidden_gates_ + r0 * gh;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t o = b * H + j0;
        S* dgi = dgi_t + b * gh + j0;
        S* dgh = dgh_t + b * gh + j0;
        S* dht = dh_total + o;
        if (grad_out != nullptr) {
          const S* gy = grad_out + (r0 + b) * grad_out_stride + j0;
          for (int64_t j = 0; j < n; ++j) dht[j] = dh[o + j] + gy[j];
        } else {
          copy_rows(dh + o, dht, n);
        }
        const S* g = gates_t + b * gh + j0;
        switch (run_.cell) {
          case CellKind::RnnTanh:
          case CellKind::RnnRelu:
            cell::rnn_backward_part(n, relu, g, dht, dgi);
            std::fill(dh_next + o, dh_next + o + n, S(0));
            break;
          case CellKind::Lstm:
            cell::lstm_backward_part(n, H, g, cache_.c_prev.data() + r0 * H + o,
                                     cache_.tanh_c.data() + r0 * H + o, dht, dc + o, dgi,
                                     dc_next + o);
            std::fill(dh_next + o, dh_next + o + n, S(0));
            break;
          case CellKind::Gru:
            cell::gru_backward_part(n, H, g, cache_.hn.data() + r0 * H + o,
                                    cache_.h_prev.data() + r0 * H + o, dht, dgi, dgh,
                                    dh_next + o);
            break;
        }
      }
      // The product below reads every unit's gate gradients (of this thread's rows only when
      // split by rows). Nothing else needs a barrier: each thread only reads and writes its own
      // units and rows of dh, dc and dh_next.
      if (!part.by_rows) barrier.wait();
      w_hh().multiply(dgh_t + b0 * gh, gh, b1 - b0, dh_next + b0 * H, H, true, u.slot_begin,
                     u.slot_end, scratch);
    }
    // (the next call's first step reads only this thread's units of dh: no barrier needed)
  }

  // dL/dh0 and dL/dc0, after every step has run.
  void finish(S* grad_h0, S* grad_c0) {
    const int64_t NH = run_.batch * run_.hidden_size;
    const int64_t parity = run_.steps % 2;
    if (grad_h0 != nullptr) copy_rows(dh_buffer(parity), grad_h0, NH);
    if (run_.cell == CellKind::Lstm && grad_c0 != nullptr) copy_rows(dc_buffer(parity), grad_c0, NH);
  }

  // Weight gradients as one GEMM each over all rows (oneDNN's merged-GEMM trick), from the
  // pass's input `in` [rows, input_size] (BatchLayout).
  void weight_gradients(const S* in, const DirectionGrads<S>& grads) const {
    const int64_t rows = run_.rows(), gh = run_.gate_rows();
    if (grads.w_ih != nullptr) {
      weight_gradient(rows, gh, run_.input_size, static_cast<const S*>(grad_in_gates_), in,
                      grads.w_ih);
    }
    if (grads.w_hh != nullptr) {
      weight_gradient(rows, gh, run_.hidden_size, static_cast<const S*>(grad_hidden_gates_),
                      cache_.h_prev.data(), grads.w_hh);
    }
    // Bias gradients as row sums added row by row (contiguous, vectorised), not colwise().sum(),
    // which walks the row-major array column by column.
    const auto sum_rows = [&](const S* data, S* sum) {
      Eigen::Map<RowVec<S>> total(sum, gh);
      total.setZero();
      for (int64_t r = 0; r < rows; ++r) total += Eigen::Map<const RowVec<S>>(data + r * gh, gh);
    };
    if (grads.b_ih != nullptr) sum_rows(grad_in_gates_, grads.b_ih);
    if (grads.b_hh == nullptr) return;
    // RNN and LSTM: both biases sit in the same pre-activation, so their gradients are the same
    // sum; copied, not summed again (a second read of all T*N*G*H gate gradients: 0.3 ms of
    // an LSTM 256x32x100 training step, ~0.3%, measured on the Zen 3).
    if (grad_hidden_gates_ == grad_in_gates_ && grads.b_ih != nullptr) {
      if (grads.b_hh != grads.b_ih) copy_rows(static_cast<const S*>(grads.b_ih), grads.b_hh, gh);
    } else {
      sum_rows(grad_hidden_gates_, grads.b_hh);
    }
  }

 private:
  S* dh_buffer(int64_t parity) { return this->state(parity); }
  S* dc_buffer(int64_t parity) { return this->state(2 + parity); }

  const typename TrainingCache<S>::Direction& cache_;
  S* grad_in_gates_;
  S* grad_hidden_gates_;
};

template <typename S>
void direction_backward(const DirectionRun<S>& run, const S* in,
                        const typename TrainingCache<S>::Direction& cache, const S* grad_out,
                        int64_t grad_out_stride, const S* grad_h_n, const S* grad_c_n,
                        S* grad_in_gates, S* grad_hidden_gates, S* grad_h0, S* grad_c0,
                        const DirectionGrads<S>& grads) {
  BackwardPass<S> pass(run, cache, grad_h_n, grad_c_n, grad_in_gates, grad_hidden_gates);
  run_time_loop(pass, [&](int thread, int team, StepBarrier& barrier, S* scratch) {
    pass.run_steps(0, run.steps, grad_out, grad_out_stride, thread, team, barrier, scratch);
  });
  pass.finish(grad_h0, grad_c0);
  pass.weight_gradients(in, grads);
}


void check_weights(const ModelConfig& config, std::size_t count) {
  config.validate();
  const std::size_t expected = static_cast<std::size_t>(config.num_layers * config.directions());
  if (count != expected) {
    throw std::invalid_argument("rnncore: expected " + std::to_string(expected) +
                                " DirectionWeights (num_layers * directions), got " +
                                std::to_string(count));
  }
}

void check_lengths(const int64_t* lengths, int64_t steps, int64_t batch) {
  if (steps <= 0 || batch <= 0) {
    throw std::invalid_argument("rnncore: steps and batch must be positive");
  }
  if (lengths == nullptr) return;
  for (int64_t b = 0; b < batch; ++b) {
    if (lengths[b] < 1 || lengths[b] > steps) {
      throw std::invalid_argument("rnncore: lengths[" + std::to_string(b) + "] = " +
                                  std::to_string(lengths[b]) + " is outside 1.." +
                                  std::to_string(steps));
    }
  }
}

// The largest arrays a call of this shape touches, checked before any is allocated or indexed
// (steps and batch come from the caller; see checked.h): x [T, N, I], a layer's output
// [T, N, D*H], one direction's gates and their gradients [T, N, G*H], the states [L*D, N, H].
template <typename S>
void check_call_sizes(const ModelConfig& config, int64_t steps, int64_t batch) {
  const int64_t rows = checked_mul(steps, batch, "steps * batch");
  const int64_t widest = std::max({config.input_size, config.directions() * config.hidden_size,
                                   config.gates() * config.hidden_size});
  checked_elements<S>(checked_mul(rows, widest,
                                  "steps * batch * the widest row (input_size, directions * "
                                  "hidden_size or gates * hidden_size)"),
                      "a sequence call's inputs, outputs or gates");
  checked_elements<S>(checked_product({config.num_layers, config.directions(), batch,
                                       config.hidden_size},
                                      "num_layers * directions * batch * hidden_size"),
                      "the states h0 / h_n");
}

template <typename S>
DirectionRun<S> make_run(const ModelConfig& config, const DirectionWeights<S>& w, int64_t layer,
                         int direction, const BatchLayout& layout,
                         const detail::PreparedDirection<S>* prepared = nullptr) {
  DirectionWeights<S> used = w;
  if (!config.bias) used.b_ih = used.b_hh = nullptr;
  return DirectionRun<S>{config.cell,        layout.steps(), layout.batch(), config.layer_input_size(layer),
                         config.hidden_size, direction == 1, &layout, used, prepared};
}

}  // namespace

// detail::plan_wavefront for scalars S.
template <typename S>
WavefrontPlan wavefront_plan(const ModelConfig& config, int64_t steps, int64_t batch) {
  return detail::plan_wavefront(config, steps, batch,
                                detail::PackedPanels<S>::slot_count(config.hidden_size), sizeof(S));
}

// What the threads of a wavefront share: per layer, the chunks it has finished (its outputs up
// to there published with release), and whether any thread failed. Each counter has a cache
// line of its own, away from any thread's stack: a waiter polls it, and a line that the other
// thread also wrote every step would cost a coherence miss per step (a 2-layer LSTM 64x1x96
// training step ran at 1.0x or 1.45x of one thread from one process to the next).
class WavefrontProgress {
 public:
  explicit WavefrontProgress(int64_t layers) : counters_(static_cast<std::size_t>(layers) + 1) {}
  int64_t done(int64_t layer) const noexcept {
    return counters_[static_cast<std::size_t>(layer)].value.load(std::memory_order_acquire);
  }
  void publish(int64_t layer, int64_t chunks) noexcept {
    counters_[static_cast<std::size_t>(layer)].value.store(chunks, std::memory_order_release);
  }
  // Waits until `layer` has finished more than `chunks` chunks; false if a thread failed.
  bool wait_for(int64_t layer, int64_t chunks) const noexcept {
    spin_until([&] { return done(layer) > chunks || failed(); });
    return !failed();
  }
  bool failed() const noexcept {
    return counters_.back().value.load(std::memory_order_relaxed) != 0;
  }
  // Records the current exception, the first one only, and releases every waiter.
  void fail() noexcept {
    int64_t expected = 0;
    if (counters_.back().value.compare_exchange_strong(expected, 1)) {
      failure_ = std::current_exception();
    }
  }
  void rethrow_failure() const {
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  struct alignas(64) Counter {
    std::atomic<int64_t> value{0};
  };
  std::vector<Counter> counters_;  // one per layer, then the failure flag
  std::exception_ptr failure_;
};

// Runs item(k, s0, s1, barrier) for every layer k and every chunk [s0, s1) of the `steps` steps,
// on plan.threads threads, layer k on thread k % team with a one-thread barrier. Layers form a
// pipeline from layer 0 up, or from the top layer down (top_down: BPTT, chunks from the last
// one down). A layer's item for its n-th chunk starts once the layer before it in the pipeline
// has finished n + 1 of its own; after a layer's last chunk is published, last(k) runs on the
// same thread while the rest of the pipeline goes on. An exception from item or last stops
// every thread and is rethrown here.
template <typename Item, typename Last>
void run_wavefront(const WavefrontPlan& plan, int64_t layers, int64_t steps, bool top_down,
                   Item&& item, Last&& last) {
  auto progress = std::make_unique<WavefrontProgress>(layers);
  parallel_team(plan.threads, [&](int thread, int team, StepBarrier&) {
    StepBarrier alone(1);
    // Every thread walks the (pipeline position, chunk) grid by diagonals: all an item waits for
    // lies on an earlier diagonal, so the walk cannot deadlock whatever the team size.
    for (int64_t diagonal = 0; diagonal < plan.chunks + layers - 1; ++diagonal) {
      for (int64_t position = 0; position < layers; ++position) {
        const int64_t k = top_down ? layers - 1 - position : position;
        const int64_t n = diagonal - position;  // chunks of layer k done before this one
        if (k % team != thread || n < 0 || n >= plan.chunks) continue;
        if (position > 0 && !progress->wait_for(top_down ? k + 1 : k - 1, n)) return;
        if (progress->failed()) return;
        // Even shares: no short last chunk (a product of <= 2 rows would take another kernel,
        // and round differently from the layer-by-layer path).
        const int64_t c = top_down ? plan.chunks - 1 - n : n;
        try {
          item(k, steps * c / plan.chunks, steps * (c + 1) / plan.chunks, alone);
          progress->publish(k, n + 1);
          if (n + 1 == plan.chunks) last(k);
        } catch (...) {
          progress->fail();
          return;
        }
      }
    }
  });
  progress->rethrow_failure();
}

template <typename S>
void wavefront_forward(const WavefrontPlan& plan, std::vector<std::unique_ptr<ForwardPass<S>>>& passes,
                       const std::vector<const S*>& inputs, const std::vector<S*>& outputs,
                       int64_t out_width, const BatchLayout& layout,
                       const std::vector<const S*>& masks) {
  const int64_t steps = layout.steps();
  const int64_t L = static_cast<int64_t>(passes.size());
  std::vector<Buffer<S>> scratch(static_cast<std::size_t>(L));
  for (int64_t k = 0; k < L; ++k) scratch[k].resize(passes[k]->scratch_size());
  run_wavefront(
      plan, L, steps, false,
      [&](int64_t k, int64_t s0, int64_t s1, StepBarrier& alone) {
        passes[k]->project(inputs[k], s0, s1);
        passes[k]->run_steps(s0, s1, outputs[k], out_width, 0, 1, alone, scratch[k].data());
        if (static_cast<std::size_t>(k) < masks.size()) {
          const int64_t r0 = layout.row0(s0), r1 = layout.row0(s1);
          apply_mask(outputs[k] + r0 * out_width, masks[k] + r0 * out_width, (r1 - r0) * out_width);
        }
      },
      [](int64_t) {});
}

namespace {

// The layers of forward_layers over the rows of `layout` (inputs, outputs and the cache's
// arrays packed as it says; states in its sequence order). Training: the cache's layer inputs
// (the first one filled) and directions, else nullptr. masks: none, or one per layer below the
// top, in the layout's rows.
template <typename S>
void forward_stack(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                   const typename PreparedWeights<S>::Impl* prepared, const BatchLayout& layout,
                   const S* first_input, const S* h0, const S* c0, S* y, S* h_n, S* c_n,
                   std::vector<Buffer<S>>* layer_inputs,
                   std::vector<typename TrainingCache<S>::Direction>* directions,
                   const std::vector<const S*>& masks) {
  const int64_t steps = layout.steps(), batch = layout.batch();
  const auto prepared_at = [&](int64_t slot) {
    return prepared != nullptr ? &prepared->directions[static_cast<std::size_t>(slot)] : nullptr;
  };
  const int D = config.directions();
  const int64_t H = config.hidden_size, L = config.num_layers, NH = batch * H;
  const int64_t out_width = D * H;
  const bool lstm = config.cell == CellKind::Lstm;
  const WavefrontPlan plan = wavefront_plan<S>(config, steps, batch);
  if (plan.threads > 1) {
    // Every layer's output is needed at once: the cache's layer inputs when training, else
    // buffers of their own.
    std::vector<Buffer<S>> between(layer_inputs != nullptr ? 0 : static_cast<std::size_t>(L - 1));
    std::vector<const S*> inputs(static_cast<std::size_t>(L));
    std::vector<S*> outputs(static_cast<std::size_t>(L));
    std::vector<std::unique_ptr<ForwardPass<S>>> passes(static_cast<std::size_t>(L));
    for (int64_t k = 0; k < L; ++k) {
      inputs[k] = k == 0 ? first_input : outputs[k - 1];
      if (k + 1 < L) {
        Buffer<S>& next = layer_inputs != nullptr ? (*layer_inputs)[k + 1] : between[k];
        next.resize(static_cast<std::size_t>(layout.rows() * out_width));
        outputs[k] = next.data();
      } else {
        outputs[k] = y;
      }
      const DirectionRun<S> run =
          make_run(config, weights[k], k, 0, layout, prepared_at(k));
      passes[k] = std::make_unique<ForwardPass<S>>(
          run, h0 != nullptr ? h0 + k * NH : nullptr, lstm && c0 != nullptr ? c0 + k * NH : nullptr,
          directions != nullptr ? &(*directions)[k] : nullptr, false);
    }
    wavefront_forward(plan, passes, inputs, outputs, out_width, layout, masks);
    for (int64_t k = 0; k < L; ++k) {
      passes[k]->finish(h_n != nullptr ? h_n + k * NH : nullptr,
                        lstm && c_n != nullptr ? c_n + k * NH : nullptr);
    }
    return;
  }

  // Layer after layer. Outputs of the layers below the top: kept in the cache when training,
  // else ping-ponged.
  Buffer<S> ping, pong;
  const S* in = first_input;
  for (int64_t k = 0; k < L; ++k) {
    S* out = y;
    if (k + 1 < L) {
      Buffer<S>& next = layer_inputs != nullptr ? (*layer_inputs)[k + 1] : (k % 2 ? pong : ping);
      next.resize(static_cast<std::size_t>(layout.rows() * out_width));
      out = next.data();
    }
    parallel_directions(D, layer_flops(config, k, steps, batch), [&](int d) {
      const int64_t slot = k * D + d;
      const DirectionRun<S> run =
          make_run(config, weights[slot], k, d, layout, prepared_at(slot));
      direction_forward(run, in, h0 != nullptr ? h0 + slot * NH : nullptr,
                        lstm && c0 != nullptr ? c0 + slot * NH : nullptr, out + d * H, out_width,
                        h_n != nullptr ? h_n + slot * NH : nullptr,
                        lstm && c_n != nullptr ? c_n + slot * NH : nullptr,
                        directions != nullptr ? &(*directions)[slot] : nullptr);
    });
    if (static_cast<std::size_t>(k) < masks.size()) apply_mask(out, masks[k], layout.rows() * out_width);
    in = out;
  }
}

// The dropout masks of a call ([L-1, T, N, width] from the caller, or nullptr) as one pointer
// per layer in the layout's rows: copied into `keep` (the training cache's, for BPTT, or the
// call's own), gathered where the layout is packed.
template <typename S>
std::vector<const S*> layer_masks(const BatchLayout& layout, const S* masks, int64_t count,
                                  int64_t width, std::vector<Buffer<S>>& keep) {
  std::vector<const S*> out;
  if (masks == nullptr) return out;
  const int64_t dense = layout.steps() * layout.batch() * width;
  keep.assign(static_cast<std::size_t>(count), {});
  for (int64_t k = 0; k < count; ++k) {
    Buffer<S>& to = keep[static_cast<std::size_t>(k)];
    to.resize(static_cast<std::size_t>(layout.rows() * width));
    if (layout.packed()) {
      layout.gather(masks + k * dense, width, to.data());
    } else {
      copy_rows(masks + k * dense, to.data(), dense);
    }
    out.push_back(to.data());
  }
  return out;
}

}  // namespace

namespace detail {

template <typename S>
void forward_layers(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                    const typename PreparedWeights<S>::Impl* prepared, int64_t steps,
                    int64_t batch, const S* x, const S* h0, const S* c0, const int64_t* lengths,
                    S* y, S* h_n, S* c_n, TrainingCache<S>* cache, const S* dropout_masks) {
  check_weights(config, weights.size());
  check_lengths(lengths, steps, batch);
  check_call_sizes<S>(config, steps, batch);
  FlushDenormals flush;  // (parallel.h: each thread of a team does the same)
  // With two threads or more, this kind of call may run on one (thread_plan.h).
  detail::MeasuredCall measured(
      cache != nullptr ? detail::PassKind::TrainingForward : detail::PassKind::Inference, config,
      static_cast<int>(sizeof(S)), steps, batch, lengths != nullptr);
  const int64_t states = config.num_layers * config.directions(), H = config.hidden_size;
  const int64_t I = config.input_size, out_width = config.directions() * H;
  const bool lstm = config.cell == CellKind::Lstm;
  const BatchLayout layout(steps, batch, lengths);
  const int64_t rows = layout.rows();

  // Variable lengths: the stack runs on packed rows in length order (BatchLayout); the
  // caller's arrays are converted on the way in and out.
  Buffer<S> x_packed, h0_sorted, c0_sorted, y_packed, h_n_sorted, c_n_sorted;
  S* y_run = y;
  S* h_n_run = h_n;
  S* c_n_run = lstm ? c_n : nullptr;
  if (layout.packed()) {
    h0 = layout.reorder_states(h0, states, H, true, h0_sorted);
    c0 = lstm ? layout.reorder_states(c0, states, H, true, c0_sorted) : nullptr;
    y_packed.resize(static_cast<std::size_t>(rows * out_width));
    y_run = y_packed.data();
    if (h_n != nullptr) h_n_sorted.resize(static_cast<std::size_t>(states * batch * H));
    if (c_n_run != nullptr) c_n_sorted.resize(static_cast<std::size_t>(states * batch * H));
    h_n_run = h_n != nullptr ? h_n_sorted.data() : nullptr;
    c_n_run = c_n_run != nullptr ? c_n_sorted.data() : nullptr;
  }
  const auto input_rows = [&](Buffer<S>& to) {
    to.resize(static_cast<std::size_t>(rows * I));
    if (layout.packed()) {
      layout.gather(x, I, to.data());
    } else {
      copy_rows(x, to.data(), rows * I);
    }
  };
  const S* first_input = x;
  if (cache != nullptr) {
    cache->config_ = config;
    cache->steps_ = steps;
    cache->batch_ = batch;
    cache->lengths_.assign(lengths, lengths == nullptr ? lengths : lengths + batch);
    cache->layer_inputs_.assign(static_cast<std::size_t>(config.num_layers), {});
    cache->directions_.assign(static_cast<std::size_t>(states), {});
    input_rows(cache->layer_inputs_[0]);
    first_input = cache->layer_inputs_[0].data();
  } else if (layout.packed()) {
    input_rows(x_packed);
    first_input = x_packed.data();
  }
  if (cache != nullptr) cache->dropout_masks_.clear();
  std::vector<Buffer<S>> own_masks;
  const std::vector<const S*> masks = layer_masks(layout, dropout_masks, config.num_layers - 1,
                                                  out_width, cache != nullptr ? cache->dropout_masks_ : own_masks);

  forward_stack(config, weights, prepared, layout, first_input, h0, c0, y_run, h_n_run, c_n_run,
                cache != nullptr ? &cache->layer_inputs_ : nullptr,
                cache != nullptr ? &cache->directions_ : nullptr, masks);

  if (layout.packed()) {
    layout.scatter(static_cast<const S*>(y_run), out_width, y);
    if (h_n != nullptr) layout.reorder_states_into(static_cast<const S*>(h_n_run), states, H, false, h_n);
    if (c_n_run != nullptr) layout.reorder_states_into(static_cast<const S*>(c_n_run), states, H, false, c_n);
  }
}

}  // namespace detail

template <typename S>
void sequence_forward(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                      int64_t steps, int64_t batch, const S* x, const S* h0, const S* c0,
                      const int64_t* lengths, S* y, S* h_n, S* c_n, TrainingCache<S>* cache,
                      const S* dropout_masks) {
  detail::forward_layers<S>(config, weights, nullptr, steps, batch, x, h0, c0, lengths, y, h_n, c_n,
                    cache, dropout_masks);
}

template <typename S>
PreparedWeights<S>::PreparedWeights(const ModelConfig& config,
                                    const std::vector<DirectionWeights<S>>& weights)
    : config_(config) {
  check_weights(config, weights.size());
  auto impl = std::make_shared<Impl>();
  impl->directions.resize(weights.size());
  const int64_t H = config.hidden_size, G = config.gates(), gh = G * H;
  for (std::size_t slot = 0; slot < weights.size(); ++slot) {
    const DirectionWeights<S>& w = weights[slot];
    if (w.w_ih == nullptr || w.w_hh == nullptr ||
        (config.bias && (w.b_ih == nullptr || w.b_hh == nullptr))) {
      throw std::invalid_argument("rnncore: DirectionWeights " + std::to_string(slot) +
                                  " has a null pointer");
    }
    detail::PreparedDirection<S>& d = impl->directions[slot];
    const int64_t I = config.layer_input_size(static_cast<int64_t>(slot) / config.directions());
    d.w_ih_t.pack(w.w_ih, I, true, I, 1, gh);
    d.w_hh_t.pack(w.w_hh, H, true, H, 1, gh);
    if (H % detail::PackedPanels<S>::kPanel != 0) d.w_hh_t_gates.pack(w.w_hh, H, true, H, G, H);
    if (config.bias) {
      d.b_ih.assign(w.b_ih, w.b_ih + gh);
      d.b_hh.assign(w.b_hh, w.b_hh + gh);
    }
  }
  impl_ = std::move(impl);
}

template <typename S>
std::size_t PreparedWeights<S>::nbytes() const noexcept {
  std::size_t n = 0;
  for (const auto& d : impl_->directions) {
    n += d.w_ih_t.size() + d.w_hh_t.size() + d.w_hh_t_gates.size() + d.b_ih.size() + d.b_hh.size();
  }
  return n * sizeof(S);
}

template <typename S>
void sequence_forward(const PreparedWeights<S>& prepared, int64_t steps, int64_t batch,
                      const S* x, const S* h0, const S* c0, const int64_t* lengths, S* y, S* h_n,
                      S* c_n) {
  const typename PreparedWeights<S>::Impl& impl = prepared.impl();
  std::vector<DirectionWeights<S>> biases(impl.directions.size());
  for (std::size_t slot = 0; slot < biases.size(); ++slot) {
    const auto& d = impl.directions[slot];
    if (!d.b_ih.empty()) biases[slot].b_ih = d.b_ih.data();
    if (!d.b_hh.empty()) biases[slot].b_hh = d.b_hh.data();
  }
  detail::forward_layers<S>(prepared.config(), biases, &impl, steps, batch, x, h0, c0, lengths, y, h_n,
                    c_n, nullptr, nullptr);
}

// BPTT as a wavefront (see plan_wavefront): layer k on thread k % team, chunks of steps from
// the last one down, chunk c of layer k starting once layer k+1 has finished its chunk c and
// computed dL/d(its input) for those steps. Each thread computes its layers' weight gradients
// as soon as their last chunk is done, while the layers below are still running.
template <typename S>
void wavefront_backward(const WavefrontPlan& plan, const ModelConfig& config,
                        const std::vector<DirectionWeights<S>>& weights, const BatchLayout& layout,
                        const std::vector<Buffer<S>>& layer_inputs,
                        const std::vector<typename TrainingCache<S>::Direction>& directions,
                        const std::vector<Buffer<S>>& masks,
                        const S* grad_y, const S* grad_h_n, const S* grad_c_n, S* grad_x,
                        S* grad_h0, S* grad_c0, const std::vector<DirectionGrads<S>>& grads) {
  const int64_t L = config.num_layers, T = layout.steps(), N = layout.batch(), H = config.hidden_size;
  const int64_t rows = layout.rows(), NH = N * H, gh = config.gates() * H;
  const bool lstm = config.cell == CellKind::Lstm, gru = config.cell == CellKind::Gru;
  const auto at = [](int64_t k) { return static_cast<std::size_t>(k); };

  // Per layer: gate gradients, dL/d(its input) (for k > 0: dL/d(layer k-1's output); for
  // k = 0: grad_x), W_ih packed for that product, the pass and its scratch.
  std::vector<Buffer<S>> grad_in_gates(at(L)), grad_hidden_gates(at(gru ? L : 0));
  std::vector<Buffer<S>> grad_between(at(L - 1)), scratch(at(L));
  std::vector<detail::PackedPanels<S>> w_ih_packed(at(L));
  std::vector<std::unique_ptr<BackwardPass<S>>> passes(at(L));
  for (int64_t k = 0; k < L; ++k) {
    grad_in_gates[at(k)].resize(static_cast<std::size_t>(rows * gh));
    if (gru) grad_hidden_gates[at(k)].resize(static_cast<std::size_t>(rows * gh));
    if (k + 1 < L) grad_between[at(k)].resize(static_cast<std::size_t>(rows * H));
    const int64_t in_width = config.layer_input_size(k);
    w_ih_packed[at(k)].pack(weights[at(k)].w_ih, in_width, false, gh, 1, in_width);
    const DirectionRun<S> run = make_run(config, weights[at(k)], k, 0, layout);
    S* dgi = grad_in_gates[at(k)].data();
    passes[at(k)] = std::make_unique<BackwardPass<S>>(
        run, directions[at(k)], grad_h_n != nullptr ? grad_h_n + k * NH : nullptr,
        lstm && grad_c_n != nullptr ? grad_c_n + k * NH : nullptr, dgi,
        gru ? grad_hidden_gates[at(k)].data() : dgi, false);
    scratch[at(k)].resize(passes[at(k)]->scratch_size());
  }

  // A layer's chunk is done once dL/d(its input) for those steps is written too.
  run_wavefront(
      plan, L, T, true,
      [&](int64_t k, int64_t s0, int64_t s1, StepBarrier& alone) {
        const S* grad_out = k + 1 < L ? grad_between[at(k)].data() : grad_y;
        passes[at(k)]->run_steps(s0, s1, grad_out, H, 0, 1, alone, scratch[at(k)].data());
        const int64_t in_width = config.layer_input_size(k);
        S* grad_in = k > 0 ? grad_between[at(k - 1)].data() : grad_x;
        if (grad_in == nullptr) return;  // dL/dx not wanted
        const int64_t r0 = layout.row0(s0), r1 = layout.row0(s1);
        packed_product(w_ih_packed[at(k)], in_width,
                       static_cast<const S*>(grad_in_gates[at(k)].data()) + r0 * gh, gh, r1 - r0,
                       grad_in + r0 * in_width, in_width, false, static_cast<const S*>(nullptr));
        if (k > 0 && !masks.empty()) {
          apply_mask(grad_in + r0 * in_width, masks[at(k - 1)].data() + r0 * in_width,
                     (r1 - r0) * in_width);
        }
      },
      [&](int64_t k) {
        passes[at(k)]->finish(grad_h0 != nullptr ? grad_h0 + k * NH : nullptr,
                              lstm && grad_c0 != nullptr ? grad_c0 + k * NH : nullptr);
        passes[at(k)]->weight_gradients(layer_inputs[at(k)].data(), grads[at(k)]);
      });
}

namespace {

// The layers of sequence_backward over the rows of `layout` (as forward_stack).
template <typename S>
void backward_stack(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                    const BatchLayout& layout, const std::vector<Buffer<S>>& layer_inputs,
                    const std::vector<typename TrainingCache<S>::Direction>& directions,
                    const std::vector<Buffer<S>>& masks,
                    const S* grad_y, const S* grad_h_n, const S* grad_c_n, S* grad_x, S* grad_h0,
                    S* grad_c0, const std::vector<DirectionGrads<S>>& grads) {
  const int D = config.directions();
  const int64_t T = layout.steps(), N = layout.batch(), H = config.hidden_size;
  const int64_t rows = layout.rows(), NH = N * H, gh = config.gates() * H, out_width = D * H;
  const bool lstm = config.cell == CellKind::Lstm, gru = config.cell == CellKind::Gru;
  const WavefrontPlan plan = wavefront_plan<S>(config, T, N);
  if (plan.threads > 1) {
    wavefront_backward(plan, config, weights, layout, layer_inputs, directions, masks, grad_y,
                       grad_h_n, grad_c_n, grad_x, grad_h0, grad_c0, grads);
    return;
  }

  // Layer after layer, top down.
  std::vector<Buffer<S>> grad_in_gates(D), grad_hidden_gates(gru ? D : 0);
  for (int d = 0; d < D; ++d) {
    grad_in_gates[d].resize(static_cast<std::size_t>(rows * gh));
    if (gru) grad_hidden_gates[d].resize(static_cast<std::size_t>(rows * gh));
  }
  Buffer<S> grad_between[2];  // dL/d(output of layer k-1), ping-ponged
  const S* grad_out = grad_y;
  for (int64_t k = config.num_layers - 1; k >= 0; --k) {
    const S* in = layer_inputs[k].data();
    parallel_directions(D, 2.0 * layer_flops(config, k, T, N), [&](int d) {
      const int64_t slot = k * D + d;
      const DirectionRun<S> run = make_run(config, weights[slot], k, d, layout);
      S* dgi = grad_in_gates[d].data();
      direction_backward(run, in, directions[slot],
                         grad_out != nullptr ? grad_out + d * H : nullptr, out_width,
                         grad_h_n != nullptr ? grad_h_n + slot * NH : nullptr,
                         lstm && grad_c_n != nullptr ? grad_c_n + slot * NH : nullptr, dgi,
                         gru ? grad_hidden_gates[d].data() : dgi,
                         grad_h0 != nullptr ? grad_h0 + slot * NH : nullptr,
                         lstm && grad_c0 != nullptr ? grad_c0 + slot * NH : nullptr, grads[slot]);
    });
    // dL/d(layer input): the directions' contributions summed, one GEMM each.
    const int64_t in_width = config.layer_input_size(k);
    S* grad_in = grad_x;
    if (k > 0) {
      Buffer<S>& buf = grad_between[k % 2];
      buf.resize(static_cast<std::size_t>(rows * in_width));
      grad_in = buf.data();
    }
    if (grad_in == nullptr) break;  // dL/dx not wanted
    for (int d = 0; d < D; ++d) {
      const S* w_ih = weights[k * D + d].w_ih;
      detail::PackedPanels<S> w_ih_packed;
      w_ih_packed.pack(w_ih, in_width, false, gh, 1, in_width);
      packed_product(w_ih_packed, in_width, static_cast<const S*>(grad_in_gates[d].data()), gh,
                     rows, grad_in, in_width, d > 0, static_cast<const S*>(nullptr));
    }
    if (k > 0 && !masks.empty()) apply_mask(grad_in, masks[k - 1].data(), rows * in_width);
    grad_out = grad_in;
  }
}


}  // namespace

template <typename S>
void sequence_backward(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                       const TrainingCache<S>& cache, const S* grad_y, const S* grad_h_n,
                       const S* grad_c_n, S* grad_x, S* grad_h0, S* grad_c0,
                       const std::vector<DirectionGrads<S>>& grads) {
  check_weights(config, weights.size());
  if (!(cache.config_ == config) || cache.directions_.empty()) {
    throw std::invalid_argument("rnncore: the training cache was made by another model");
  }
  if (grads.size() != weights.size()) {
    throw std::invalid_argument("rnncore: one DirectionGrads per DirectionWeights is needed");
  }
  const int64_t T = cache.steps_, N = cache.batch_, H = config.hidden_size;
  const int64_t states = config.num_layers * config.directions(), I = config.input_size;
  const int64_t out_width = config.directions() * H;
  const bool lstm = config.cell == CellKind::Lstm;
  const int64_t* lengths = cache.has_lengths() ? cache.lengths_.data() : nullptr;
  detail::MeasuredCall measured(detail::PassKind::Backward, config, static_cast<int>(sizeof(S)),
                                T, N, lengths != nullptr);
  FlushDenormals flush;  // (parallel.h: each thread of a team does the same)

  const BatchLayout layout(T, N, lengths);
  if (!layout.packed()) {
    backward_stack(config, weights, layout, cache.layer_inputs_, cache.directions_,
                   cache.dropout_masks_, grad_y, grad_h_n, lstm ? grad_c_n : nullptr, grad_x,
                   grad_h0, lstm ? grad_c0 : nullptr, grads);
    return;
  }
  // Variable lengths: as forward_layers, on packed rows in length order.
  Buffer<S> grad_y_packed, grad_h_n_sorted, grad_c_n_sorted, grad_x_packed, grad_h0_sorted, grad_c0_sorted;
  if (grad_y != nullptr) {
    grad_y_packed.resize(static_cast<std::size_t>(layout.rows() * out_width));
    layout.gather(grad_y, out_width, grad_y_packed.data());
  }
  if (grad_x != nullptr) grad_x_packed.resize(static_cast<std::size_t>(layout.rows() * I));
  if (grad_h0 != nullptr) grad_h0_sorted.resize(static_cast<std::size_t>(states * N * H));
  if (lstm && grad_c0 != nullptr) grad_c0_sorted.resize(static_cast<std::size_t>(states * N * H));
  backward_stack(config, weights, layout, cache.layer_inputs_, cache.directions_,
                 cache.dropout_masks_, grad_y != nullptr ? grad_y_packed.data() : nullptr,
                 layout.reorder_states(grad_h_n, states, H, true, grad_h_n_sorted),
                 lstm ? layout.reorder_states(grad_c_n, states, H, true, grad_c_n_sorted) : nullptr,
                 grad_x != nullptr ? grad_x_packed.data() : nullptr,
                 grad_h0 != nullptr ? grad_h0_sorted.data() : nullptr,
                 lstm && grad_c0 != nullptr ? grad_c0_sorted.data() : nullptr, grads);
  if (grad_x != nullptr) layout.scatter(static_cast<const S*>(grad_x_packed.data()), I, grad_x);
  if (grad_h0 != nullptr) {
    layout.reorder_states_into(static_cast<const S*>(grad_h0_sorted.data()), states, H, false, grad_h0);
  }
  if (lstm && grad_c0 != nullptr) {
    layout.reorder_states_into(static_cast<const S*>(grad_c0_sorted.data()), states, H, false, grad_c0);
  }
}

namespace detail {

template <typename S>
int wavefront_threads(const ModelConfig& config, int64_t steps, int64_t batch) {
  config.validate();
  check_lengths(nullptr, steps, batch);
  check_call_sizes<S>(config, steps, batch);
  return wavefront_plan<S>(config, steps, batch).threads;
}

template <typename S>
TimeLoopSplit time_loop_split(const ModelConfig& config, int64_t steps, int64_t batch) {
  config.validate();
  check_lengths(nullptr, steps, batch);
  check_call_sizes<S>(config, steps, batch);
  const TimeLoopSplit plan = time_loop_plan<S>(config.gates(), config.hidden_size, batch, steps);
  return {plan.threads, plan.threads > 1 && plan.by_rows};
}

template int wavefront_threads<float>(const ModelConfig&, int64_t, int64_t);
template int wavefront_threads<double>(const ModelConfig&, int64_t, int64_t);
template TimeLoopSplit time_loop_split<float>(const ModelConfig&, int64_t, int64_t);
template TimeLoopSplit time_loop_split<double>(const ModelConfig&, int64_t, int64_t);

}  // namespace detail

template class TrainingCache<float>;
template class TrainingCache<double>;
template class PreparedWeights<float>;
template class PreparedWeights<double>;

#define RNNCORE_INSTANTIATE(S)                                                                   \
  template void sequence_forward<S>(const ModelConfig&, const std::vector<DirectionWeights<S>>&, \
                                    int64_t, int64_t, const S*, const S*, const S*,              \
                                    const int64_t*, S*, S*, S*, TrainingCache<S>*, const S*);    \
  template void sequence_forward<S>(const PreparedWeights<S>&, int64_t, int64_t, const S*,       \
                                    const S*, const S*, const int64_t*, S*, S*, S*);             \
  template void sequence_backward<S>(const ModelConfig&,                                         \
                                     const std::vector<DirectionWeights<S>>&,                    \
                                     const TrainingCache<S>&, const S*, const S*, const S*, S*,  \
                                     S*, S*, const std::vector<DirectionGrads<S>>&);

RNNCORE_INSTANTIATE(float)
RNNCORE_INSTANTIATE(double)
#undef RNNCORE_INSTANTIATE

}  // namespace rnncore
