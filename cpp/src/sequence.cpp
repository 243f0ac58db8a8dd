// The layer stack: sequence_forward and sequence_backward check a call, lay out its rows, and run
// its layers one after the other (each direction's pass threads its own time loop, passes.h) or
// as a wavefront (wavefront.h); PreparedWeights and the training cache.
#include "rnncore/sequence.h"

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <exception>
#include <string>

#include "rnncore/checked.h"
#include "batch_layout.h"
#include "parallel.h"
#include "passes.h"
#include "thread_policy.h"
#include "wavefront.h"

namespace rnncore {

// The passes, products, layouts and wavefront (internal headers) are in detail.
using namespace detail;

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

}  // namespace

namespace {

// The layers of forward_layers over the rows of `layout` (inputs, outputs and the cache's
// arrays packed as it says, except y, the caller's (make_run); states in its sequence order).
// first_rows: where the first layer's input is the caller's x, not packed rows
// (DirectionRun::in_rows), else nullptr. Training: the cache's layer inputs (the first one
// filled) and directions, else nullptr. masks: none, or one per layer below the top, in the
// layout's rows.
template <typename S>
void forward_stack(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                   const typename PreparedWeights<S>::Impl* prepared, const BatchLayout& layout,
                   const S* first_input, const int64_t* first_rows, const S* h0, const S* c0,
                   S* y, S* h_n, S* c_n,
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
  const auto layer_run = [&](int64_t k, int d) {
    const int64_t slot = k * D + d;
    DirectionRun<S> run = make_run(config, weights[slot], k, d, layout, prepared_at(slot));
    if (k == 0) run.in_rows = first_rows;
    return run;
  };
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
      const DirectionRun<S> run = layer_run(k, 0);
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
      const DirectionRun<S> run = layer_run(k, d);
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

  // Variable lengths: the stack runs on packed rows in length order (BatchLayout). The first
  // layer reads x and the top layer writes y where they lie (the caller's rows of each packed
  // row, caller_rows), except that training keeps x's packed rows in the cache for the weight
  // gradients; the states are reordered on the way in and out.
  Buffer<S> h0_sorted, c0_sorted, h_n_sorted, c_n_sorted;
  S* h_n_run = h_n;
  S* c_n_run = lstm ? c_n : nullptr;
  if (layout.packed()) {
    h0 = layout.reorder_states(h0, states, H, true, h0_sorted);
    c0 = lstm ? layout.reorder_states(c0, states, H, true, c0_sorted) : nullptr;
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
  const int64_t* first_rows = layout.caller_rows();
  if (cache != nullptr) {
    cache->config_ = config;
    cache->steps_ = steps;
    cache->batch_ = batch;
    cache->lengths_.assign(lengths, lengths == nullptr ? lengths : lengths + batch);
    cache->layer_inputs_.assign(static_cast<std::size_t>(config.num_layers), {});
    cache->directions_.assign(static_cast<std::size_t>(states), {});
    input_rows(cache->layer_inputs_[0]);
    first_input = cache->layer_inputs_[0].data();
    first_rows = nullptr;
  }
  if (cache != nullptr) cache->dropout_masks_.clear();
  std::vector<Buffer<S>> own_masks;
  const std::vector<const S*> masks = layer_masks(layout, dropout_masks, config.num_layers - 1,
                                                  out_width, cache != nullptr ? cache->dropout_masks_ : own_masks);

  forward_stack(config, weights, prepared, layout, first_input, first_rows, h0, c0, y, h_n_run,
                c_n_run,
                cache != nullptr ? &cache->layer_inputs_ : nullptr,
                cache != nullptr ? &cache->directions_ : nullptr, masks);

  if (layout.packed()) {
    layout.zero_ended(y, out_width);
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

namespace {

// The layers of sequence_backward over the rows of `layout` (as forward_stack); grad_y is the
// caller's [T, N, D*H], read where it lies (the top layer's out_rows, make_run).
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
      packed_product(w_ih_packed, in_width, RowsOf<S>{grad_in_gates[d].data(), gh}, rows, grad_in,
                     in_width, d > 0, static_cast<const S*>(nullptr));
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
  // (dL/dy is read where it lies, see backward_stack.)
  Buffer<S> grad_h_n_sorted, grad_c_n_sorted, grad_x_packed, grad_h0_sorted, grad_c0_sorted;
  if (grad_x != nullptr) grad_x_packed.resize(static_cast<std::size_t>(layout.rows() * I));
  if (grad_h0 != nullptr) grad_h0_sorted.resize(static_cast<std::size_t>(states * N * H));
  if (lstm && grad_c0 != nullptr) grad_c0_sorted.resize(static_cast<std::size_t>(states * N * H));
  backward_stack(config, weights, layout, cache.layer_inputs_, cache.directions_,
                 cache.dropout_masks_, grad_y,
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
