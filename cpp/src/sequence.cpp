// Sequence kernels: the hoisted input GEMM, the time loop (one recurrent GEMM and one pointwise
// pass per step) and BPTT with the weight gradients as one GEMM each over all steps.
#include "rnncore/sequence.h"

#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

#include "rnncore/parallel.h"
#include "recurrent_gemm.h"

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
using RowVec = Eigen::Matrix<S, 1, Eigen::Dynamic>;

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

// A product over all T*N rows (the hoisted input projection, dL/dx): out[rows, cols] (+)= a * B
// with B packed. Each thread takes an even share of the rows (in whole micro-kernel row blocks)
// and works through it kRowBlock rows at a time: their packed copy stays in L2 while every panel
// of B streams past. `bias`, when given, is added to each block while it is still in cache.
// Measured ~10-20% above Eigen's GEMM at these shapes, which packs both operands on every call
// and splits the columns, not the rows, across threads.
constexpr int64_t kRowBlock = 96;
// A thread per 16 MFLOP (~150 us on one core): a second thread must first pull the packed
// operand from the other core's cache and leaves its share of the output in its own, and on a
// shared 2-core VM it is sometimes late to start; at 4 MFLOP a GRU 128x1x100 forward ran 0.8x of
// one thread with two.
constexpr double kMinProductFlopsPerThread = 16.0e6;

template <typename S>
void packed_product(const detail::PackedPanels<S>& b, int64_t cols, const S* a, int64_t a_stride,
                    int64_t rows, S* out, int64_t out_stride, bool accumulate, const S* bias) {
  constexpr int64_t unit = detail::PackedPanels<S>::kRows;
  const int64_t units = (rows + unit - 1) / unit;
  const double flops = 2.0 * static_cast<double>(rows) * b.depth() * cols;
  int threads = 1;
  if (!in_parallel()) {
    const double by_work = flops / kMinProductFlopsPerThread;
    threads = static_cast<int>(std::max(1.0, std::min({by_work, static_cast<double>(units),
                                                        static_cast<double>(max_threads())})));
  }
  parallel_team(threads, [&](int thread, int team, StepBarrier&) {
    const int64_t begin = std::min(rows, units * thread / team * unit);
    const int64_t end = std::min(rows, units * (thread + 1) / team * unit);
    Buffer<S> scratch(static_cast<std::size_t>(b.scratch_size(std::min(kRowBlock, end - begin))));
    for (int64_t r0 = begin; r0 < end; r0 += kRowBlock) {
      const int64_t n = std::min(kRowBlock, end - r0);
      S* o = out + r0 * out_stride;
      b.multiply(a + r0 * a_stride, a_stride, n, o, out_stride, accumulate, 0, b.chunks(),
                 scratch.data());
      if (bias != nullptr) {
        for (int64_t r = 0; r < n; ++r) {
          Eigen::Map<RowVec<S>>(o + r * out_stride, cols) += Eigen::Map<const RowVec<S>>(bias, cols);
        }
      }
    }
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
  const double flops = 2.0 * static_cast<double>(rows) * gh * width;
  int threads = 1;
  if (!in_parallel()) {
    const double by_work = flops / kMinProductFlopsPerThread;
    // Each thread keeps at least one SIMD-friendly block of 16 gate rows.
    threads = static_cast<int>(std::max(1.0, std::min({by_work, static_cast<double>(gh / 16),
                                                        static_cast<double>(max_threads())})));
  }
  parallel_team(threads, [&](int thread, int team, StepBarrier&) {
    const int64_t r0 = gh * thread / team, r1 = gh * (thread + 1) / team;
    serial_gemm<S, Eigen::ColMajor, Eigen::RowMajor>(r1 - r0, width, rows, grad_gates + r0, gh, x,
                                                     width, grad_w + r0 * width);
  });
}

// The hidden units [begin, end) that thread `thread` of `threads` owns in the time loop: whole
// panel chunks of the packed recurrent weights, so its share of the recurrent product and of the
// pointwise cell math touch the same units and need no barrier between them.
struct UnitRange {
  int64_t chunk_begin, chunk_end, begin, end;
  int64_t count() const { return end - begin; }
};

template <typename S>
UnitRange unit_range(const detail::PackedPanels<S>& packed, int64_t H, int thread, int threads) {
  const int64_t chunks = packed.chunks();
  const int64_t c0 = chunks * thread / threads, c1 = chunks * (thread + 1) / threads;
  return {c0, c1, detail::PackedPanels<S>::chunk_begin(c0),
          std::min(H, detail::PackedPanels<S>::chunk_begin(c1))};
}

template <typename S>
void direction_forward(const DirectionRun<S>& run, const S* in, const S* h0, const S* c0, S* out,
                       int64_t out_stride, S* h_n, S* c_n,
                       typename TrainingCache<S>::Direction* cache) {
  const int64_t T = run.steps, N = run.batch, H = run.hidden_size, gh = run.gate_rows();
  const int64_t rows = T * N, NH = N * H, G = gate_count(run.cell);
  const bool lstm = run.cell == CellKind::Lstm, gru = run.cell == CellKind::Gru;
  const bool relu = run.cell == CellKind::RnnRelu;

  Buffer<S> local_gates;
  Buffer<S>& gates_buf = cache != nullptr ? cache->gates : local_gates;
  gates_buf.resize(static_cast<std::size_t>(rows * gh));
  S* gates = gates_buf.data();

  // Hoisted input projection: one product over all T*N rows instead of T small ones.
  {
    const int64_t I = run.input_size;
    const S* w_ih = run.w.w_ih;
    detail::PackedPanels<S> w_ih_t;
    w_ih_t.pack(w_ih, I, true, I, G, H);
    const bool has_bias = run.w.b_ih != nullptr || run.w.b_hh != nullptr;
    const RowVec<S> bias = has_bias ? folded_bias(run) : RowVec<S>();
    packed_product(w_ih_t, gh, in, I, rows, gates, gh, false, has_bias ? bias.data() : nullptr);
  }
  const S* b_hn = (gru && run.w.b_hh != nullptr) ? run.w.b_hh + 2 * H : nullptr;

  // W_hh^T packed once: B[k, g*H + j] = W_hh[g*H + j, k], one panel group per gate.
  detail::PackedPanels<S> w_hh_t;
  const S* w_hh = run.w.w_hh;
  w_hh_t.pack(w_hh, H, true, H, G, H);

  // Two state buffers swapped each step (a row that is masked out copies its old value over).
  Buffer<S> state(static_cast<std::size_t>(4 * NH), S(0));
  S* const h_first = state.data();
  S* const h_second = h_first + NH;
  S* const c_first = h_second + NH;
  S* const c_second = c_first + NH;
  if (h0 != nullptr) copy_rows(h0, h_first, NH);
  if (lstm && c0 != nullptr) copy_rows(c0, c_first, NH);

  Buffer<S> hidden_proj(gru ? static_cast<std::size_t>(N * gh) : 0);
  Buffer<S> step_scratch;  // tanh(c') or W_hn h + b_hn when nothing is cached
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

  const double step_flops = 2.0 * static_cast<double>(N) * gh * H;
  const int threads = time_loop_threads(step_flops, w_hh_t.chunks());
  parallel_team(threads, [&](int thread, int team, StepBarrier& barrier) {
    const UnitRange u = unit_range(w_hh_t, H, thread, team);
    const int64_t j0 = u.begin, n = u.count();
    Buffer<S> scratch(static_cast<std::size_t>(w_hh_t.scratch_size(N)));
    S* h = h_first;
    S* h_next = h_second;
    S* c = c_first;
    S* c_next = c_second;
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = run.time_of(s);
      S* gates_t = gates + t * N * gh;
      S* tanh_c_t = nullptr;
      S* hn_t = nullptr;
      if (cache != nullptr) {
        for (int64_t b = 0; b < N; ++b) {
          copy_rows(h + b * H + j0, cache->h_prev.data() + t * NH + b * H + j0, n);
          if (lstm) copy_rows(c + b * H + j0, cache->c_prev.data() + t * NH + b * H + j0, n);
        }
        if (lstm) tanh_c_t = cache->tanh_c.data() + t * NH;
        if (gru) hn_t = cache->hn.data() + t * NH;
      } else {
        tanh_c_t = hn_t = step_scratch.data();
      }

      if (gru) {
        w_hh_t.multiply(h, H, N, hidden_proj.data(), gh, false, u.chunk_begin, u.chunk_end,
                        scratch.data());
      } else {
        w_hh_t.multiply(h, H, N, gates_t, gh, true, u.chunk_begin, u.chunk_end, scratch.data());
      }

      for (int64_t b = 0; b < N; ++b) {
        S* y_part = out + (t * N + b) * out_stride + j0;
        const int64_t o = b * H + j0;
        if (!run.active(t, b)) {
          copy_rows(h + o, h_next + o, n);
          if (lstm) copy_rows(c + o, c_next + o, n);
          std::fill(y_part, y_part + n, S(0));
          continue;
        }
        S* g = gates_t + b * gh + j0;
        switch (run.cell) {
          case CellKind::RnnTanh:
          case CellKind::RnnRelu:
            cell::rnn_forward_part(n, relu, g, h_next + o);
            break;
          case CellKind::Lstm:
            cell::lstm_forward_part(n, H, g, c + o, c_next + o, tanh_c_t + o, h_next + o);
            break;
          case CellKind::Gru:
            cell::gru_forward_part(n, H, g, hidden_proj.data() + b * gh + j0,
                                   b_hn != nullptr ? b_hn + j0 : nullptr, h + o, hn_t + o,
                                   h_next + o);
            break;
        }
        copy_rows(h_next + o, y_part, n);
      }
      std::swap(h, h_next);
      std::swap(c, c_next);
      barrier.wait();  // the next step's product reads every unit of h
    }
  });
  const S* h_last = T % 2 == 0 ? h_first : h_second;
  const S* c_last = T % 2 == 0 ? c_first : c_second;
  if (h_n != nullptr) copy_rows(h_last, h_n, NH);
  if (lstm && c_n != nullptr) copy_rows(c_last, c_n, NH);
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
  const int64_t rows = T * N, NH = N * H, G = gate_count(run.cell);
  const bool lstm = run.cell == CellKind::Lstm, gru = run.cell == CellKind::Gru;
  const bool relu = run.cell == CellKind::RnnRelu;

  Buffer<S> state(static_cast<std::size_t>(5 * NH), S(0));
  S* const dh_first = state.data();
  S* const dh_second = dh_first + NH;
  S* const dc_first = dh_second + NH;
  S* const dc_second = dc_first + NH;
  S* const dh_total = dc_second + NH;
  if (grad_h_n != nullptr) copy_rows(grad_h_n, dh_first, NH);
  if (lstm && grad_c_n != nullptr) copy_rows(grad_c_n, dc_first, NH);

  // W_hh packed once: B[k, j] = W_hh[k, j], k over the G*H gate rows, j over the H units.
  detail::PackedPanels<S> w_hh_packed;
  const S* w_hh = run.w.w_hh;
  w_hh_packed.pack(w_hh, H, false, gh, 1, H);

  const double step_flops = 2.0 * static_cast<double>(N) * gh * H;
  const int threads = time_loop_threads(step_flops, w_hh_packed.chunks());
  parallel_team(threads, [&](int thread, int team, StepBarrier& barrier) {
    const UnitRange u = unit_range(w_hh_packed, H, thread, team);
    const int64_t j0 = u.begin, n = u.count();
    Buffer<S> scratch(static_cast<std::size_t>(w_hh_packed.scratch_size(N)));
    S* dh = dh_first;
    S* dh_next = dh_second;
    S* dc = dc_first;
    S* dc_next = dc_second;
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t t = run.time_of(s);
      const S* gates_t = cache.gates.data() + t * N * gh;
      S* dgi_t = grad_in_gates + t * N * gh;
      S* dgh_t = grad_hidden_gates + t * N * gh;
      for (int64_t b = 0; b < N; ++b) {
        const int64_t o = b * H + j0;
        S* dgi = dgi_t + b * gh + j0;
        S* dgh = dgh_t + b * gh + j0;
        if (!run.active(t, b)) {
          // The state passed through unchanged, and so does its gradient.
          for (int64_t k = 0; k < G; ++k) {
            std::fill(dgi + k * H, dgi + k * H + n, S(0));
            if (gru) std::fill(dgh + k * H, dgh + k * H + n, S(0));
          }
          copy_rows(dh + o, dh_next + o, n);
          if (lstm) copy_rows(dc + o, dc_next + o, n);
          continue;
        }
        S* dht = dh_total + o;
        if (grad_out != nullptr) {
          const S* gy = grad_out + (t * N + b) * grad_out_stride + j0;
          for (int64_t j = 0; j < n; ++j) dht[j] = dh[o + j] + gy[j];
        } else {
          copy_rows(dh + o, dht, n);
        }
        const S* g = gates_t + b * gh + j0;
        switch (run.cell) {
          case CellKind::RnnTanh:
          case CellKind::RnnRelu:
            cell::rnn_backward_part(n, relu, g, dht, dgi);
            std::fill(dh_next + o, dh_next + o + n, S(0));
            break;
          case CellKind::Lstm:
            cell::lstm_backward_part(n, H, g, cache.c_prev.data() + t * NH + o,
                                     cache.tanh_c.data() + t * NH + o, dht, dc + o, dgi,
                                     dc_next + o);
            std::fill(dh_next + o, dh_next + o + n, S(0));
            break;
          case CellKind::Gru:
            cell::gru_backward_part(n, H, g, cache.hn.data() + t * NH + o,
                                    cache.h_prev.data() + t * NH + o, dht, dgi, dgh,
                                    dh_next + o);
            break;
        }
      }
      // The product below reads every unit's gate gradients. Nothing else needs a barrier: each
      // thread only reads and writes its own units of dh, dc and dh_next.
      barrier.wait();
      w_hh_packed.multiply(dgh_t, gh, N, dh_next, H, true, u.chunk_begin, u.chunk_end,
                           scratch.data());
      std::swap(dh, dh_next);
      std::swap(dc, dc_next);
    }
  });
  const S* dh_last = T % 2 == 0 ? dh_first : dh_second;
  const S* dc_last = T % 2 == 0 ? dc_first : dc_second;
  if (grad_h0 != nullptr) copy_rows(dh_last, grad_h0, NH);
  if (lstm && grad_c0 != nullptr) copy_rows(dc_last, grad_c0, NH);

  // Weight gradients as one GEMM each over all T*N rows (oneDNN's merged-GEMM trick).
  weight_gradient(rows, gh, run.input_size, static_cast<const S*>(grad_in_gates), in, grads.w_ih);
  weight_gradient(rows, gh, H, static_cast<const S*>(grad_hidden_gates), cache.h_prev.data(),
                  grads.w_hh);
  // Bias gradients as row sums added row by row (contiguous, vectorised), not colwise().sum(),
  // which walks the row-major array column by column.
  const auto sum_rows = [&](const S* data, S* sum) {
    Eigen::Map<RowVec<S>> total(sum, gh);
    total.setZero();
    for (int64_t r = 0; r < rows; ++r) total += Eigen::Map<const RowVec<S>>(data + r * gh, gh);
  };
  if (grads.b_ih != nullptr) sum_rows(grad_in_gates, grads.b_ih);
  if (grads.b_hh != nullptr) sum_rows(grad_hidden_gates, grads.b_hh);
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
  Buffer<S> ping, pong;
  const S* in = cache != nullptr ? cache->layer_inputs_[0].data() : x;
  for (int64_t k = 0; k < L; ++k) {
    S* out = y;
    if (k + 1 < L) {
      Buffer<S>& next = cache != nullptr ? cache->layer_inputs_[k + 1] : (k % 2 ? pong : ping);
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

  std::vector<Buffer<S>> grad_in_gates(D), grad_hidden_gates(gru ? D : 0);
  for (int d = 0; d < D; ++d) {
    grad_in_gates[d].resize(static_cast<std::size_t>(rows * gh));
    if (gru) grad_hidden_gates[d].resize(static_cast<std::size_t>(rows * gh));
  }
  Buffer<S> grad_between[2];  // dL/d(output of layer k-1), ping-ponged
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
      Buffer<S>& buf = grad_between[k % 2];
      buf.resize(static_cast<std::size_t>(rows * in_width));
      grad_in = buf.data();
    }
    for (int d = 0; d < D; ++d) {
      const S* w_ih = weights[k * D + d].w_ih;
      detail::PackedPanels<S> w_ih_packed;
      w_ih_packed.pack(w_ih, in_width, false, gh, 1, in_width);
      packed_product(w_ih_packed, in_width, static_cast<const S*>(grad_in_gates[d].data()), gh,
                     rows, grad_in, in_width, d > 0, static_cast<const S*>(nullptr));
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
