// Sequence kernels: the hoisted input GEMM, the time loop (one recurrent GEMM and one pointwise
// pass per step) and BPTT with the weight gradients as one GEMM each over all steps.
#include "rnncore/sequence.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

#include "rnncore/parallel.h"

namespace rnncore {

void ModelConfig::validate() const {
  if (input_size <= 0 || hidden_size <= 0 || num_layers <= 0) {
    throw std::invalid_argument("rnncore: input_size, hidden_size and num_layers must be positive");
  }
}

namespace {
// Multiply-add work of one direction of one layer's forward pass.
double layer_flops(const ModelConfig& config, int64_t layer, int64_t steps, int64_t batch) {
  return 2.0 * static_cast<double>(steps * batch) * config.gates() * config.hidden_size *
         static_cast<double>(config.layer_input_size(layer) + config.hidden_size);
}

}  // namespace

double forward_flops(const ModelConfig& config, int64_t steps, int64_t batch) noexcept {
  double flops = 0.0;
  for (int64_t k = 0; k < config.num_layers; ++k) {
    flops += config.directions() * layer_flops(config, k, steps, batch);
  }
  return flops;
}

template <typename S>
std::size_t TrainingCache<S>::nbytes() const noexcept {
  std::size_t n = 0;
  for (const auto& v : layer_inputs_) n += v.size();
  for (const auto& d : directions_) {
    n += d.gates.size() + d.h_prev.size() + d.c_prev.size() + d.tanh_c.size() + d.hn.size();
  }
  return n * sizeof(S);
}

namespace {

template <typename S>
using RowMatrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename S>
using MatView = Eigen::Map<RowMatrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename S>
using ConstMatView = Eigen::Map<const RowMatrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename S>
using RowVec = Eigen::Matrix<S, 1, Eigen::Dynamic>;

template <typename S>
MatView<S> view(S* data, int64_t rows, int64_t cols) {
  return MatView<S>(data, rows, cols, Eigen::OuterStride<>(cols));
}
template <typename S>
ConstMatView<S> view(const S* data, int64_t rows, int64_t cols) {
  return ConstMatView<S>(data, rows, cols, Eigen::OuterStride<>(cols));
}

template <typename S>
void copy_rows(const S* src, S* dst, int64_t count) {
  std::memcpy(dst, src, static_cast<std::size_t>(count) * sizeof(S));
}

// Everything one (layer, direction) pass needs to know besides the arrays.
template <typename S>
struct DirectionRun {
  CellKind cell;
  int64_t steps, batch, input_size, hidden_size;
  bool reverse;
  const int64_t* lengths;  // nullptr: every sequence runs all steps
  DirectionWeights<S> w;

  int64_t gate_rows() const { return gate_count(cell) * hidden_size; }
  int64_t time_of(int64_t s) const { return reverse ? steps - 1 - s : s; }
  // Masking with "t < length" serves both directions: the forward one freezes the state after
  // the last step, the reverse one keeps h0 until it reaches the sequence's last step.
  bool active(int64_t t, int64_t b) const { return lengths == nullptr || t < lengths[b]; }
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
void direction_forward(const DirectionRun<S>& run, const S* in, const S* h0, const S* c0, S* out,
                       int64_t out_stride, S* h_n, S* c_n,
                       typename TrainingCache<S>::Direction* cache) {
  const int64_t T = run.steps, N = run.batch, H = run.hidden_size, gh = run.gate_rows();
  const int64_t rows = T * N, NH = N * H;
  const bool lstm = run.cell == CellKind::Lstm, gru = run.cell == CellKind::Gru;
  const bool relu = run.cell == CellKind::RnnRelu;

  std::vector<S> local_gates;
  std::vector<S>& gates_buf = cache != nullptr ? cache->gates : local_gates;
  gates_buf.resize(static_cast<std::size_t>(rows * gh));
  S* gates = gates_buf.data();

  // Hoisted input projection: one GEMM over all T*N rows instead of T small ones.
  auto projected = view(gates, rows, gh);
  projected.noalias() = view(in, rows, run.input_size) * view(run.w.w_ih, gh, run.input_size).transpose();
  if (run.w.b_ih != nullptr || run.w.b_hh != nullptr) projected.rowwise() += folded_bias(run);
  const S* b_hn = (gru && run.w.b_hh != nullptr) ? run.w.b_hh + 2 * H : nullptr;

  // Two state buffers swapped each step (a row that is masked out copies its old value over).
  std::vector<S> state(static_cast<std::size_t>(4 * NH), S(0));
  S* h = state.data();
  S* h_next = h + NH;
  S* c = h_next + NH;
  S* c_next = c + NH;
  if (h0 != nullptr) copy_rows(h0, h, NH);
  if (lstm && c0 != nullptr) copy_rows(c0, c, NH);

  std::vector<S> hidden_proj(gru ? static_cast<std::size_t>(N * gh) : 0);
  std::vector<S> step_scratch;  // tanh(c') or W_hn h + b_hn when nothing is cached
  if (cache != nullptr) {
    cache->h_prev.resize(static_cast<std::size_t>(rows * H));
    if (lstm) {
      cache->c_prev.resize(static_cast<std::size_t>(rows * H));
      cache->tanh_c.resize(static_cast<std::size_t>(rows * H));
    }
    if (gru) cache->hn.resize(static_cast<std::size_t>(rows * H));
  } else if (lstm || gru) {
    step_scratch.resize(static_cast<std::size_t>(NH));
  }
  const auto w_hh_t = view(run.w.w_hh, gh, H).transpose();

  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = run.time_of(s);
    S* gates_t = gates + t * N * gh;
    S* tanh_c_t = nullptr;
    S* hn_t = nullptr;
    if (cache != nullptr) {
      copy_rows(h, cache->h_prev.data() + t * NH, NH);
      if (lstm) {
        copy_rows(c, cache->c_prev.data() + t * NH, NH);
        tanh_c_t = cache->tanh_c.data() + t * NH;
      }
      if (gru) hn_t = cache->hn.data() + t * NH;
    } else {
      tanh_c_t = hn_t = step_scratch.data();
    }

    if (gru) {
      view(hidden_proj.data(), N, gh).noalias() = view(static_cast<const S*>(h), N, H) * w_hh_t;
    } else {
      view(gates_t, N, gh).noalias() += view(static_cast<const S*>(h), N, H) * w_hh_t;
    }

    for (int64_t b = 0; b < N; ++b) {
      S* y_row = out + (t * N + b) * out_stride;
      const int64_t o = b * H;
      if (!run.active(t, b)) {
        copy_rows(h + o, h_next + o, H);
        if (lstm) copy_rows(c + o, c_next + o, H);
        std::fill(y_row, y_row + H, S(0));
        continue;
      }
      S* g = gates_t + b * gh;
      switch (run.cell) {
        case CellKind::RnnTanh:
        case CellKind::RnnRelu:
          cell::rnn_forward_row(H, relu, g, h_next + o);
          break;
        case CellKind::Lstm:
          cell::lstm_forward_row(H, g, c + o, c_next + o, tanh_c_t + o, h_next + o);
          break;
        case CellKind::Gru:
          cell::gru_forward_row(H, g, hidden_proj.data() + b * gh, b_hn, h + o, hn_t + o,
                                h_next + o);
          break;
      }
      copy_rows(h_next + o, y_row, H);
    }
    std::swap(h, h_next);
    std::swap(c, c_next);
  }
  if (h_n != nullptr) copy_rows(h, h_n, NH);
  if (lstm && c_n != nullptr) copy_rows(c, c_n, NH);
}

// grad_in_gates / grad_hidden_gates [T*N, G*H] receive dL/d(W_ih x + b_ih) and
// dL/d(W_hh h + b_hh); they are the same buffer except for the GRU.
template <typename S>
void direction_backward(const DirectionRun<S>& run, const S* in,
                        const typename TrainingCache<S>::Direction& cache, const S* grad_out,
                        int64_t grad_out_stride, const S* grad_h_n, const S* grad_c_n,
                        S* grad_in_gates, S* grad_hidden_gates, S* grad_h0, S* grad_c0,
                        const DirectionGrads<S>& grads) {
  const int64_t T = run.steps, N = run.batch, H = run.hidden_size, gh = run.gate_rows();
  const int64_t rows = T * N, NH = N * H;
  const bool lstm = run.cell == CellKind::Lstm, gru = run.cell == CellKind::Gru;
  const bool relu = run.cell == CellKind::RnnRelu;

  std::vector<S> state(static_cast<std::size_t>(5 * NH), S(0));
  S* dh = state.data();
  S* dh_next = dh + NH;
  S* dc = dh_next + NH;
  S* dc_next = dc + NH;
  S* dh_total = dc_next + NH;
  if (grad_h_n != nullptr) copy_rows(grad_h_n, dh, NH);
  if (lstm && grad_c_n != nullptr) copy_rows(grad_c_n, dc, NH);
  const auto w_hh = view(run.w.w_hh, gh, H);

  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = run.time_of(s);
    const S* gates_t = cache.gates.data() + t * N * gh;
    S* dgi_t = grad_in_gates + t * N * gh;
    S* dgh_t = grad_hidden_gates + t * N * gh;
    for (int64_t b = 0; b < N; ++b) {
      const int64_t o = b * H;
      S* dgi = dgi_t + b * gh;
      S* dgh = dgh_t + b * gh;
      if (!run.active(t, b)) {
        // The state passed through unchanged, and so does its gradient.
        std::fill(dgi, dgi + gh, S(0));
        if (gru) std::fill(dgh, dgh + gh, S(0));
        copy_rows(dh + o, dh_next + o, H);
        if (lstm) copy_rows(dc + o, dc_next + o, H);
        continue;
      }
      S* dht = dh_total + o;
      if (grad_out != nullptr) {
        const S* gy = grad_out + (t * N + b) * grad_out_stride;
        for (int64_t j = 0; j < H; ++j) dht[j] = dh[o + j] + gy[j];
      } else {
        copy_rows(dh + o, dht, H);
      }
      const S* g = gates_t + b * gh;
      switch (run.cell) {
        case CellKind::RnnTanh:
        case CellKind::RnnRelu:
          cell::rnn_backward_row(H, relu, g, dht, dgi);
          std::fill(dh_next + o, dh_next + o + H, S(0));
          break;
        case CellKind::Lstm:
          cell::lstm_backward_row(H, g, cache.c_prev.data() + t * NH + o,
                                  cache.tanh_c.data() + t * NH + o, dht, dc + o, dgi,
                                  dc_next + o);
          std::fill(dh_next + o, dh_next + o + H, S(0));
          break;
        case CellKind::Gru:
          cell::gru_backward_row(H, g, cache.hn.data() + t * NH + o,
                                 cache.h_prev.data() + t * NH + o, dht, dgi, dgh, dh_next + o);
          break;
      }
    }
    view(dh_next, N, H).noalias() += view(static_cast<const S*>(dgh_t), N, gh) * w_hh;
    std::swap(dh, dh_next);
    std::swap(dc, dc_next);
  }
  if (grad_h0 != nullptr) copy_rows(dh, grad_h0, NH);
  if (lstm && grad_c0 != nullptr) copy_rows(dc, grad_c0, NH);

  // Weight gradients as one GEMM each over all T*N rows (oneDNN's merged-GEMM trick).
  const auto dgi_all = view(static_cast<const S*>(grad_in_gates), rows, gh);
  const auto dgh_all = view(static_cast<const S*>(grad_hidden_gates), rows, gh);
  view(grads.w_ih, gh, run.input_size).noalias() =
      dgi_all.transpose() * view(in, rows, run.input_size);
  view(grads.w_hh, gh, H).noalias() = dgh_all.transpose() * view(cache.h_prev.data(), rows, H);
  if (grads.b_ih != nullptr) Eigen::Map<RowVec<S>>(grads.b_ih, gh) = dgi_all.colwise().sum();
  if (grads.b_hh != nullptr) Eigen::Map<RowVec<S>>(grads.b_hh, gh) = dgh_all.colwise().sum();
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

template <typename S>
DirectionRun<S> make_run(const ModelConfig& config, const DirectionWeights<S>& w, int64_t layer,
                         int direction, int64_t steps, int64_t batch, const int64_t* lengths) {
  DirectionWeights<S> used = w;
  if (!config.bias) used.b_ih = used.b_hh = nullptr;
  return DirectionRun<S>{config.cell,      steps, batch, config.layer_input_size(layer),
                         config.hidden_size, direction == 1, lengths, used};
}

}  // namespace

template <typename S>
void sequence_forward(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                      int64_t steps, int64_t batch, const S* x, const S* h0, const S* c0,
                      const int64_t* lengths, S* y, S* h_n, S* c_n, TrainingCache<S>* cache) {
  check_weights(config, weights.size());
  check_lengths(lengths, steps, batch);
  const int D = config.directions();
  const int64_t H = config.hidden_size, L = config.num_layers, NH = batch * H;
  const int64_t out_width = D * H;
  const bool lstm = config.cell == CellKind::Lstm;

  if (cache != nullptr) {
    cache->config_ = config;
    cache->steps_ = steps;
    cache->batch_ = batch;
    cache->lengths_.assign(lengths, lengths == nullptr ? lengths : lengths + batch);
    cache->layer_inputs_.assign(static_cast<std::size_t>(L), {});
    cache->directions_.assign(static_cast<std::size_t>(L * D), {});
    cache->layer_inputs_[0].assign(x, x + steps * batch * config.input_size);
  }
  // Outputs of the layers below the top: kept in the cache when training, else ping-ponged.
  std::vector<S> ping, pong;
  const S* in = cache != nullptr ? cache->layer_inputs_[0].data() : x;
  for (int64_t k = 0; k < L; ++k) {
    S* out = y;
    if (k + 1 < L) {
      std::vector<S>& next = cache != nullptr ? cache->layer_inputs_[k + 1] : (k % 2 ? pong : ping);
      next.resize(static_cast<std::size_t>(steps * batch * out_width));
      out = next.data();
    }
    parallel_directions(D, layer_flops(config, k, steps, batch), [&](int d) {
      const int64_t slot = k * D + d;
      const DirectionRun<S> run = make_run(config, weights[slot], k, d, steps, batch, lengths);
      direction_forward(run, in, h0 != nullptr ? h0 + slot * NH : nullptr,
                        lstm && c0 != nullptr ? c0 + slot * NH : nullptr, out + d * H, out_width,
                        h_n != nullptr ? h_n + slot * NH : nullptr,
                        lstm && c_n != nullptr ? c_n + slot * NH : nullptr,
                        cache != nullptr ? &cache->directions_[slot] : nullptr);
    });
    in = out;
  }
}

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
  const int D = config.directions();
  const int64_t T = cache.steps_, N = cache.batch_, H = config.hidden_size;
  const int64_t rows = T * N, NH = N * H, gh = config.gates() * H, out_width = D * H;
  const bool lstm = config.cell == CellKind::Lstm, gru = config.cell == CellKind::Gru;
  const int64_t* lengths = cache.has_lengths() ? cache.lengths_.data() : nullptr;

  std::vector<std::vector<S>> grad_in_gates(D), grad_hidden_gates(gru ? D : 0);
  for (int d = 0; d < D; ++d) {
    grad_in_gates[d].resize(static_cast<std::size_t>(rows * gh));
    if (gru) grad_hidden_gates[d].resize(static_cast<std::size_t>(rows * gh));
  }
  std::vector<S> grad_between[2];  // dL/d(output of layer k-1), ping-ponged
  const S* grad_out = grad_y;
  for (int64_t k = config.num_layers - 1; k >= 0; --k) {
    const S* in = cache.layer_inputs_[k].data();
    parallel_directions(D, 2.0 * layer_flops(config, k, T, N), [&](int d) {
      const int64_t slot = k * D + d;
      const DirectionRun<S> run = make_run(config, weights[slot], k, d, T, N, lengths);
      S* dgi = grad_in_gates[d].data();
      direction_backward(run, in, cache.directions_[slot],
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
      std::vector<S>& buf = grad_between[k % 2];
      buf.resize(static_cast<std::size_t>(rows * in_width));
      grad_in = buf.data();
    }
    auto gin = view(grad_in, rows, in_width);
    for (int d = 0; d < D; ++d) {
      const auto product = view(static_cast<const S*>(grad_in_gates[d].data()), rows, gh) *
                           view(weights[k * D + d].w_ih, gh, in_width);
      if (d == 0) {
        gin.noalias() = product;
      } else {
        gin.noalias() += product;
      }
    }
    grad_out = grad_in;
  }
}

template class TrainingCache<float>;
template class TrainingCache<double>;

#define RNNCORE_INSTANTIATE(S)                                                                   \
  template void sequence_forward<S>(const ModelConfig&, const std::vector<DirectionWeights<S>>&, \
                                    int64_t, int64_t, const S*, const S*, const S*,              \
                                    const int64_t*, S*, S*, S*, TrainingCache<S>*);              \
  template void sequence_backward<S>(const ModelConfig&,                                         \
                                     const std::vector<DirectionWeights<S>>&,                    \
                                     const TrainingCache<S>&, const S*, const S*, const S*, S*,  \
                                     S*, S*, const std::vector<DirectionGrads<S>>&);

RNNCORE_INSTANTIATE(float)
RNNCORE_INSTANTIATE(double)
#undef RNNCORE_INSTANTIATE

}  // namespace rnncore
