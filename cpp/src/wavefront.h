// Stacked unidirectional layers as a pipeline over threads: layer k on thread k % team, a chunk
// of steps at a time (plan: thread_policy.h). Internal to the sequence kernels.
#pragma once

#include <atomic>
#include <exception>
#include <memory>
#include <vector>

#include "batch_layout.h"
#include "parallel.h"
#include "passes.h"
#include "thread_policy.h"

namespace rnncore {
namespace detail {

// detail::plan_wavefront for scalars S.
template <typename S>
WavefrontPlan wavefront_plan(const ModelConfig& config, int64_t steps, int64_t batch) {
  return detail::plan_wavefront(config, steps, batch,
                                detail::PackedPanels<S>::slot_count(config.hidden_size), sizeof(S));
}

// What the threads of a wavefront share: per layer, the chunks it has finished (its outputs up
// to there published with release), and whether any thread failed. Each counter has a cache
// line of its own, away from any thread's stack: a waiter polls it, and a line that the other
// thread also wrote every step would cost a coherence miss per step (bench/README.md).
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
                       RowsOf<S>{grad_in_gates[at(k)].data() + r0 * gh, gh}, r1 - r0,
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

}  // namespace detail
}  // namespace rnncore
