// One (layer, direction) of a whole sequence: ForwardPass (the hoisted input product, then the
// time loop) and BackwardPass (BPTT's time loop, then the weight gradients), each runnable a
// chunk of steps at a time for the wavefront. Internal to the sequence kernels.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include "batch_layout.h"
#include "parallel.h"
#include "products.h"
#include "recurrent_gemm.h"
#include "rnncore/cell.h"
#include "thread_policy.h"

namespace rnncore {
namespace detail {

// The hidden units [begin, end) that thread `thread` of `threads` owns in the time loop: an even
// share of the slots (SIMD packets of units) of the packed recurrent weights, so its share of the
// recurrent product and of the pointwise cell math touch the same units and need no barrier
// between them. Slots, not two-packet panels, for an even split (bench/README.md, "The numbers
// behind the thread rules").
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
      const BatchLayout& layout = *run_.layout;
      return {layout.share_begin(thread, team), layout.share_begin(thread + 1, team),
              unit_range(w_hh(), H, 0, 1), true};
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
  // (BatchLayout; with run.in_rows, the caller's [T, N, input_size]). Runs on the calling thread
  // when called inside a parallel region, else may use a team.
  void project(const S* in, int64_t t0, int64_t t1) {
    const int64_t I = run_.input_size, gh = run_.gate_rows();
    const int64_t r0 = run_.row0(t0), r1 = run_.row0(t1);
    const RowsOf<S> rows{in, I, run_.in_rows};
    if (direct_) {
      for (int64_t r = r0; r < r1; ++r) {
        Eigen::Map<RowVec<S>> g(gates_ + r * gh, gh);
        g.noalias() = Eigen::Map<const RowVec<S>>(rows.row(r), I) * weights(run_.w.w_ih, I).transpose();
        if (bias_.size() > 0) g += bias_;
      }
      return;
    }
    packed_product(*w_ih_t_, gh, rows.from(r0), r1 - r0, gates_ + r0 * gh, gh, false,
                   bias_.size() > 0 ? bias_.data() : nullptr);
  }

  // Thread `thread` of `team`'s share of project(in, 0, T), for a team that then runs the time
  // loop (after a barrier: a thread's steps read rows that others projected). `scratch` holds
  // project_scratch_size() elements. Only where !is_direct().
  void project_share(const S* in, int thread, int team, S* scratch) {
    const int64_t gh = run_.gate_rows();
    packed_product_share(*w_ih_t_, gh, RowsOf<S>{in, run_.input_size, run_.in_rows}, run_.rows(),
                         gates_, gh, false,
                         bias_.size() > 0 ? bias_.data() : nullptr, thread, team, scratch);
  }
  std::size_t project_scratch_size() const {
    return static_cast<std::size_t>(product_scratch_size(*w_ih_t_, run_.rows()));
  }
  bool is_direct() const { return direct_; }

  // Steps s in [s0, s1) (processing order), thread `thread` of `team` taking its share (units or
  // sequences, see TimeLoopSplit); the steps' projections must be done. h goes to out's rows
  // (row stride out_stride; with run.out_rows, the caller's [T, N, *]). `scratch` holds
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

      // The step's output rows arrive while its product runs.
      fetch_output_rows(out, out_stride, r0, b0, b1, j0, n);
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
        // Every other step walks W_hh backwards (PackedPanels::multiply): it starts on the
        // panels the previous step read last.
        w_hh().multiply(h + b0 * H, H, b1 - b0, hidden_proj_.data() + b0 * gh, gh, false,
                       u.slot_begin, u.slot_end, scratch, s % 2 == 1);
      } else {
        w_hh().multiply(h + b0 * H, H, b1 - b0, gates_t + b0 * gh, gh, true, u.slot_begin,
                       u.slot_end, scratch, s % 2 == 1);
      }

      for (int64_t b = b0; b < b1; ++b) {
        S* y_part = out + run_.out_row(r0 + b) * out_stride + j0;
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
  // sequence, on the weights as they are (bench/README.md, "A single step of a few sequences:
  // no packing"). Prepared weights are packed already.
  static bool direct(const DirectionRun<S>& run) {
    return run.prepared == nullptr && run.steps == 1 && run.batch <= 4;
  }
  // Where the pass writes the caller's [T, N, *] rows (run.out_rows), asks for the `n` columns
  // from j0 of packed rows [r0 + b0, r0 + b1) to be fetched for writing. Those rows are the
  // step's sequences in the layout's order (longest first), not the caller's, and only those
  // still running: a walk the hardware prefetcher does not follow, where each row's first store
  // otherwise waited on L3 (LSTM 64x16x1000 with lengths, Zen 4: 0.94 of the time with the rows
  // fetched during the step's product; bench/README.md, "Variable lengths: fetching the
  // caller's rows"). Dense rows: nothing (the hardware prefetcher follows them).
  void fetch_output_rows(const S* out, int64_t stride, int64_t r0, int64_t b0, int64_t b1,
                         int64_t j0, int64_t n) const noexcept {
    if (run_.out_rows == nullptr) return;
    constexpr int64_t kLine = 64;
    const int64_t bytes = n * static_cast<int64_t>(sizeof(S));
    for (int64_t b = b0; b < b1; ++b) {
      const char* row = reinterpret_cast<const char*>(out + run_.out_rows[r0 + b] * stride + j0);
      for (int64_t at = 0; at < bytes; at += kLine) __builtin_prefetch(row + at, 1);
    }
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
  // sequences, see TimeLoopSplit). grad_out [T, N, *] (row stride grad_out_stride; BatchLayout's
  // rows, or with run.out_rows the caller's) is dL/d(this pass's output), or nullptr; its rows
  // for these steps must be ready.
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
          const S* gy = grad_out + run_.out_row(r0 + b) * grad_out_stride + j0;
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
                     u.slot_end, scratch, s % 2 == 1);  // (alternating, as in the forward pass)
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

}  // namespace detail
}  // namespace rnncore
