// rnncore::cuda::forward and backward: the orchestration of cuBLAS GEMMs and the kernels of
// kernels.cuh over layers, directions (one stream each) and steps.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.cuh"

namespace rnncore {
namespace cuda {

namespace {

using detail::check;
using detail::DeviceArray;
using detail::gemm;
using detail::to_int;

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

// Carves one call's scratch out of the context's grow-only buffer (256-byte aligned pieces).
class Carver {
 public:
  template <typename T>
  void want(T** p, int64_t count) {
    requests_.push_back({reinterpret_cast<void**>(p), align(static_cast<std::size_t>(count) * sizeof(T))});
  }
  void allocate(Context::Impl& c) {
    std::size_t total = 0;
    for (const auto& r : requests_) total += r.bytes;
    if (total > c.scratch.size()) {
      // The previous call may still be reading the old buffer.
      for (cudaStream_t s : c.streams) check(cudaStreamSynchronize(s), "a queued kernel");
      c.scratch.reserve(total);
    }
    std::size_t at = 0;
    for (const auto& r : requests_) {
      *r.p = c.scratch.data() + at;
      at += r.bytes;
    }
  }

 private:
  static std::size_t align(std::size_t n) { return (n + 255) / 256 * 256; }
  struct Request {
    void** p;
    std::size_t bytes;
  };
  std::vector<Request> requests_;
};

template <typename S>
void copy_async(S* dst, const S* src, int64_t count, cudaStream_t stream) {
  check(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(count) * sizeof(S),
                        cudaMemcpyDeviceToDevice, stream),
        "cudaMemcpyAsync");
}

template <typename S>
void zero_async(S* dst, int64_t count, cudaStream_t stream) {
  check(cudaMemsetAsync(dst, 0, static_cast<std::size_t>(count) * sizeof(S), stream),
        "cudaMemsetAsync");
}

template <typename S>
__global__ void fill_kernel(S* p, int n, S value) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = value;
}

// Launches kernel<Cell> for the model's cell.
template <template <CellKind> class Launch, typename... Args>
void by_cell(CellKind cell, Args&&... args) {
  switch (cell) {
    case CellKind::RnnTanh:
    case CellKind::RnnRelu:
      Launch<CellKind::RnnTanh>::run(args...);
      break;
    case CellKind::Lstm:
      Launch<CellKind::Lstm>::run(args...);
      break;
    case CellKind::Gru:
      Launch<CellKind::Gru>::run(args...);
      break;
  }
}

template <CellKind Cell>
struct ForwardStep {
  template <typename S>
  static void run(const detail::ForwardStepArgs<S>& a, cudaStream_t stream) {
    detail::forward_step_kernel<Cell, S><<<blocks_for(int64_t(a.N) * a.H), kThreads, 0, stream>>>(a);
    check(cudaGetLastError(), "forward_step_kernel launch");
  }
};

template <CellKind Cell>
struct BackwardStep {
  template <typename S>
  static void run(const detail::BackwardStepArgs<S>& a, cudaStream_t stream) {
    detail::backward_step_kernel<Cell, S><<<blocks_for(int64_t(a.N) * a.H), kThreads, 0, stream>>>(a);
    check(cudaGetLastError(), "backward_step_kernel launch");
  }
};

template <CellKind Cell>
struct Persistent {
  template <typename S>
  static void run(detail::PersistentArgs<S> a, const PersistentPlan& plan, cudaStream_t stream) {
    const auto kernel = detail::persistent_forward_kernel<Cell, S>;
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(plan.shared_bytes)),
          "cudaFuncSetAttribute (persistent kernel shared memory)");
    void* params[] = {&a};
    check(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(plan.blocks),
                                      dim3(kThreads), params, plan.shared_bytes, stream),
          "cudaLaunchCooperativeKernel (persistent kernel)");
  }
};

// Whether the device can hold the whole persistent grid at once (the cooperative launch's
// condition); the plan's arithmetic assumed one block per multiprocessor.
template <typename S>
bool persistent_resident(CellKind cell, const PersistentPlan& plan, int multiprocessors) {
  int per_sm = 0;
  cudaError_t e = cudaSuccess;
  const auto ask = [&](auto kernel) {
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(plan.shared_bytes));
    if (e == cudaSuccess) {
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads,
                                                        plan.shared_bytes);
    }
  };
  switch (cell) {
    case CellKind::Lstm: ask(detail::persistent_forward_kernel<CellKind::Lstm, S>); break;
    case CellKind::Gru: ask(detail::persistent_forward_kernel<CellKind::Gru, S>); break;
    default: ask(detail::persistent_forward_kernel<CellKind::RnnTanh, S>); break;
  }
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it: the per-step path runs instead
    return false;
  }
  return per_sm * multiprocessors >= plan.blocks;
}

}  // namespace

template <typename S>
void forward(Context& ctx, const ModelConfig& config,
             const std::vector<DirectionWeights<S>>& weights, int64_t steps, int64_t batch,
             const S* x, const S* h0, const S* c0, const int64_t* lengths, S* y, S* h_n, S* c_n,
             DeviceCache<S>* cache, ForwardPath path) {
  check_forward_args(config, weights, steps, batch, x, lengths, y);
  Context::Impl& c = ctx.impl();
  check(cudaSetDevice(c.device), "cudaSetDevice");
  const bool lstm = config.cell == CellKind::Lstm;
  const int D = config.directions(), G = config.gates();
  const int T = to_int(steps, "steps"), N = to_int(batch, "batch");
  const int H = to_int(config.hidden_size, "hidden_size"), GH = to_int(G * config.hidden_size, "gates");
  const int M = to_int(steps * batch, "steps * batch");
  to_int(steps * batch * G * config.hidden_size, "the gate array");
  const ForwardPath chosen =
      choose_path(config, batch, sizeof(S), cache != nullptr, path, c.info.multiprocessors,
                  c.info.shared_bytes_per_block);
  PersistentPlan plan;
  bool persistent = chosen == ForwardPath::Persistent;
  if (persistent) {
    plan = persistent_plan(config.cell, H, N, sizeof(S), D, c.info.multiprocessors,
                           c.info.shared_bytes_per_block);
    if (!persistent_resident<S>(config.cell, plan, c.info.multiprocessors)) {
      if (path == ForwardPath::Persistent) {
        throw std::invalid_argument("path: the persistent grid does not fit on this device at once");
      }
      persistent = false;
    }
  }

  // Scratch: per direction the gate array (unless the cache holds it), the hidden projection,
  // the state (two halves for the persistent kernel) and c; two layer-output buffers for the
  // layers below the top (inference); the lengths.
  typename DeviceCache<S>::Impl* store = cache != nullptr ? &cache->impl() : nullptr;
  const int64_t L = config.num_layers;
  Carver carve;
  S* gates_scratch[2] = {nullptr, nullptr};
  S* hproj[2] = {nullptr, nullptr};
  S* h[2] = {nullptr, nullptr};
  S* cs[2] = {nullptr, nullptr};
  for (int d = 0; d < D; ++d) {
    if (store == nullptr) carve.want(&gates_scratch[d], int64_t(M) * GH);
    carve.want(&hproj[d], int64_t(N) * GH);
    carve.want(&h[d], 2 * int64_t(N) * H);
    carve.want(&cs[d], int64_t(N) * H);
  }
  S* between[2] = {nullptr, nullptr};
  if (store == nullptr && L > 1) {
    for (int k = 0; k < std::min<int64_t>(2, L - 1); ++k) carve.want(&between[k], int64_t(M) * D * H);
  }
  carve.allocate(c);
  const int64_t* lengths_device = nullptr;
  if (lengths != nullptr) {
    c.lengths.reserve(static_cast<std::size_t>(N));
    check(cudaMemcpyAsync(c.lengths.data(), lengths, sizeof(int64_t) * N, cudaMemcpyHostToDevice,
                          c.streams[0]),
          "cudaMemcpyAsync (lengths)");
    lengths_device = c.lengths.data();
  }

  if (store != nullptr) {
    store->config = config;
    store->steps = steps;
    store->batch = batch;
    store->lengths.clear();
    if (lengths != nullptr) store->lengths.assign(lengths, lengths + N);
    store->layer_inputs.resize(static_cast<std::size_t>(L));
    store->directions.resize(static_cast<std::size_t>(L * D));
    if (lengths != nullptr) {
      store->lengths_device.reserve(static_cast<std::size_t>(N));
      copy_async(store->lengths_device.data(), lengths_device, N, c.streams[0]);
    }
    store->filled = false;
  }

  const S* input = x;
  for (int64_t l = 0; l < L; ++l) {
    const int I = to_int(config.layer_input_size(l), "input size");
    S* out = y;
    if (l + 1 < L) {
      if (store != nullptr) {
        auto& next = store->layer_inputs[static_cast<std::size_t>(l + 1)];
        next.reserve(static_cast<std::size_t>(M) * D * H);
        out = next.data();
      } else {
        out = between[l % 2];
      }
    }
    if (store != nullptr && l == 0) {
      auto& first = store->layer_inputs[0];
      first.reserve(static_cast<std::size_t>(M) * I);
      copy_async(first.data(), x, int64_t(M) * I, c.streams[0]);
    }
    if (D == 2) c.join(1, 0);  // direction 1 starts once this layer's input is written
    for (int d = 0; d < D; ++d) {
      const int64_t slot = l * D + d;
      const DirectionWeights<S>& w = weights[static_cast<std::size_t>(slot)];
      cudaStream_t stream = c.streams[d];
      blas::Handle handle = c.handles[d];
      S* gates = gates_scratch[d];
      S *cache_h = nullptr, *cache_c = nullptr, *cache_tc = nullptr, *cache_hn = nullptr;
      if (store != nullptr) {
        auto& dir = store->directions[static_cast<std::size_t>(slot)];
        dir.gates.reserve(static_cast<std::size_t>(M) * GH);
        dir.h_prev.reserve(static_cast<std::size_t>(M) * H);
        gates = dir.gates.data();
        cache_h = dir.h_prev.data();
        // Steps past a row's length are never written; BPTT's weight GEMMs read them (times a
        // zero gradient), so they must be finite.
        zero_async(cache_h, int64_t(M) * H, stream);
        if (lstm) {
          dir.c_prev.reserve(static_cast<std::size_t>(M) * H);
          dir.tanh_c.reserve(static_cast<std::size_t>(M) * H);
          cache_c = dir.c_prev.data();
          cache_tc = dir.tanh_c.data();
        }
        if (config.cell == CellKind::Gru) {
          dir.hn.reserve(static_cast<std::size_t>(M) * H);
          cache_hn = dir.hn.data();
        }
      }
      // The input projection of every step: one GEMM, gates [M, GH] = input [M, I] W_ih^T.
      gemm(handle, true, false, GH, M, I, S(1), w.w_ih, I, input, I, S(0), gates, GH);
      const int64_t state = slot * int64_t(N) * H;
      if (h0 != nullptr) {
        copy_async(h[d], h0 + state, int64_t(N) * H, stream);
      } else {
        zero_async(h[d], int64_t(N) * H, stream);
      }
      if (lstm) {
        if (c0 != nullptr) {
          copy_async(cs[d], c0 + state, int64_t(N) * H, stream);
        } else {
          zero_async(cs[d], int64_t(N) * H, stream);
        }
      }
      const bool reverse = d == 1, relu = config.cell == CellKind::RnnRelu;
      const S* final_h = h[d];
      if (persistent) {
        detail::PersistentArgs<S> a;
        a.N = N, a.H = H, a.steps = T, a.units = static_cast<int>(plan.units_per_block);
        a.reverse = reverse, a.relu = relu, a.lengths = lengths_device;
        a.w_hh = w.w_hh, a.b_ih = config.bias ? w.b_ih : nullptr;
        a.b_hh = config.bias ? w.b_hh : nullptr;
        a.gates = gates, a.h = h[d], a.c = cs[d], a.y = out, a.y_stride = D * H, a.y_offset = d * H;
        by_cell<Persistent>(config.cell, a, plan, stream);
        final_h = h[d] + static_cast<std::size_t>(T % 2) * N * H;
      } else {
        detail::ForwardStepArgs<S> a;
        a.N = N, a.H = H, a.steps = T, a.reverse = reverse, a.relu = relu;
        a.lengths = lengths_device, a.gates = gates, a.hproj = hproj[d];
        a.b_ih = config.bias ? w.b_ih : nullptr, a.b_hh = config.bias ? w.b_hh : nullptr;
        a.h = h[d], a.c = cs[d], a.y = out, a.y_stride = D * H, a.y_offset = d * H;
        a.cache_h_prev = cache_h, a.cache_c_prev = cache_c, a.cache_tanh_c = cache_tc;
        a.cache_hn = cache_hn;
        for (int s = 0; s < T; ++s) {
          // hproj [N, GH] = h [N, H] W_hh^T
          gemm(handle, true, false, GH, N, H, S(1), w.w_hh, H, h[d], H, S(0), hproj[d], GH);
          a.s = s;
          by_cell<ForwardStep>(config.cell, a, stream);
        }
      }
      if (h_n != nullptr) copy_async(h_n + state, final_h, int64_t(N) * H, stream);
      if (lstm && c_n != nullptr) copy_async(c_n + state, cs[d], int64_t(N) * H, stream);
    }
    if (D == 2) c.join(0, 1);  // the next layer (or the caller) waits for both directions
    input = out;
  }
  if (store != nullptr) store->filled = true;
}

template <typename S>
void backward(Context& ctx, const ModelConfig& config,
              const std::vector<DirectionWeights<S>>& weights, const DeviceCache<S>& cache,
              const S* grad_y, const S* grad_h_n, const S* grad_c_n, S* grad_x, S* grad_h0,
              S* grad_c0, const std::vector<DirectionGrads<S>>& grads) {
  const typename DeviceCache<S>::Impl& store = cache.impl();
  if (!store.filled) throw std::invalid_argument("cache: not filled by a forward call");
  if (!(store.config == config)) {
    throw std::invalid_argument("config: differs from the one the cache was filled with");
  }
  const bool lstm = config.cell == CellKind::Lstm, gru = config.cell == CellKind::Gru;
  if (lstm && grad_c0 == nullptr) throw std::invalid_argument("grad_c0 must not be null for an LSTM");
  check_backward_grads(config, grads, grad_x, grad_h0);
  // The weights' checks (the sizes and lengths were checked by the forward call).
  check_forward_args(config, weights, store.steps, store.batch, grad_x, nullptr, grad_x);
  Context::Impl& c = ctx.impl();
  check(cudaSetDevice(c.device), "cudaSetDevice");
  const int D = config.directions(), G = config.gates();
  const int T = static_cast<int>(store.steps), N = static_cast<int>(store.batch);
  const int H = static_cast<int>(config.hidden_size), GH = G * H, M = T * N;
  const int64_t L = config.num_layers;
  const int64_t* lengths_device = store.lengths.empty() ? nullptr : store.lengths_device.data();

  Carver carve;
  S *d_in[2], *d_hid[2] = {nullptr, nullptr}, *d_step[2], *dh[2], *dc[2] = {nullptr, nullptr};
  for (int d = 0; d < D; ++d) {
    carve.want(&d_in[d], int64_t(M) * GH);
    if (gru) carve.want(&d_hid[d], int64_t(M) * GH);
    carve.want(&d_step[d], int64_t(N) * GH);
    carve.want(&dh[d], int64_t(N) * H);
    if (lstm) carve.want(&dc[d], int64_t(N) * H);
  }
  S* ones = nullptr;
  carve.want(&ones, M);
  S* grad_between[2] = {nullptr, nullptr};  // dL/d(layer input) for layers above 0
  for (int k = 0; k < std::min<int64_t>(2, L - 1); ++k) carve.want(&grad_between[k], int64_t(M) * D * H);
  carve.allocate(c);
  fill_kernel<<<blocks_for(M), kThreads, 0, c.streams[0]>>>(ones, M, S(1));
  check(cudaGetLastError(), "fill_kernel launch");

  const S* grad_out = grad_y;
  for (int64_t l = L - 1; l >= 0; --l) {
    const int I = static_cast<int>(config.layer_input_size(l));
    const S* layer_input = store.layer_inputs[static_cast<std::size_t>(l)].data();
    S* grad_input = l == 0 ? grad_x : grad_between[l % 2];
    if (D == 2) c.join(1, 0);
    for (int d = 0; d < D; ++d) {
      const int64_t slot = l * D + d;
      const DirectionWeights<S>& w = weights[static_cast<std::size_t>(slot)];
      const DirectionGrads<S>& g = grads[static_cast<std::size_t>(slot)];
      const auto& dir = store.directions[static_cast<std::size_t>(slot)];
      cudaStream_t stream = c.streams[d];
      blas::Handle handle = c.handles[d];
      const int64_t state = slot * int64_t(N) * H;
      zero_async(d_in[d], int64_t(M) * GH, stream);
      if (gru) zero_async(d_hid[d], int64_t(M) * GH, stream);
      if (grad_h_n != nullptr) {
        copy_async(dh[d], grad_h_n + state, int64_t(N) * H, stream);
      } else {
        zero_async(dh[d], int64_t(N) * H, stream);
      }
      if (lstm) {
        if (grad_c_n != nullptr) {
          copy_async(dc[d], grad_c_n + state, int64_t(N) * H, stream);
        } else {
          zero_async(dc[d], int64_t(N) * H, stream);
        }
      }
      detail::BackwardStepArgs<S> a;
      a.N = N, a.H = H, a.steps = T, a.reverse = d == 1, a.relu = config.cell == CellKind::RnnRelu;
      a.lengths = lengths_device, a.gates = dir.gates.data(), a.h_prev = dir.h_prev.data();
      a.c_prev = dir.c_prev.data(), a.tanh_c = dir.tanh_c.data(), a.hn = dir.hn.data();
      a.grad_out = grad_out, a.grad_stride = D * H, a.grad_offset = d * H;
      a.dh = dh[d], a.dc = dc[d], a.d_input_gates = d_in[d], a.d_hidden_gates = d_hid[d];
      a.d_step = d_step[d];
      for (int s = T - 1; s >= 0; --s) {
        a.s = s;
        by_cell<BackwardStep>(config.cell, a, stream);
        // dh [N, H] += d_step [N, GH] W_hh [GH, H]
        gemm(handle, false, false, H, N, GH, S(1), w.w_hh, H, d_step[d], GH, S(1), dh[d], H);
      }
      copy_async(grad_h0 + state, dh[d], int64_t(N) * H, stream);
      if (lstm) copy_async(grad_c0 + state, dc[d], int64_t(N) * H, stream);
      // The weight gradients, one GEMM each over all steps: dW_ih [GH, I] = d_in^T input,
      // dW_hh [GH, H] = d_hidden^T h_prev, the biases as column sums (GEMMs with ones).
      const S* d_hidden = gru ? d_hid[d] : d_in[d];
      gemm(handle, false, true, I, GH, M, S(1), layer_input, I, d_in[d], GH, S(0), g.w_ih, I);
      gemm(handle, false, true, H, GH, M, S(1), dir.h_prev.data(), H, d_hidden, GH, S(0), g.w_hh, H);
      if (config.bias) {
        // `ones` was filled on stream 0 before the top layer's join.
        gemm(handle, false, false, GH, 1, M, S(1), d_in[d], GH, ones, M, S(0), g.b_ih, GH);
        gemm(handle, false, false, GH, 1, M, S(1), d_hidden, GH, ones, M, S(0), g.b_hh, GH);
      }
    }
    if (D == 2) c.join(0, 1);
    // dL/d(input) [M, I] = sum over directions of d_in [M, GH] W_ih [GH, I], on stream 0.
    for (int d = 0; d < D; ++d) {
      const DirectionWeights<S>& w = weights[static_cast<std::size_t>(l * D + d)];
      gemm(c.handles[0], false, false, I, M, GH, S(1), w.w_ih, I, d_in[d], GH, d == 0 ? S(0) : S(1),
           grad_input, I);
    }
    grad_out = grad_input;
  }
}

#define RNNCORE_CUDA_INSTANTIATE(S)                                                              \
  template void forward<S>(Context&, const ModelConfig&, const std::vector<DirectionWeights<S>>&, \
                           int64_t, int64_t, const S*, const S*, const S*, const int64_t*, S*,   \
                           S*, S*, DeviceCache<S>*, ForwardPath);                                \
  template void backward<S>(Context&, const ModelConfig&,                                        \
                            const std::vector<DirectionWeights<S>>&, const DeviceCache<S>&,      \
                            const S*, const S*, const S*, S*, S*, S*,                            \
                            const std::vector<DirectionGrads<S>>&);
RNNCORE_CUDA_INSTANTIATE(float)
RNNCORE_CUDA_INSTANTIATE(double)
#undef RNNCORE_CUDA_INSTANTIATE

}  // namespace cuda
}  // namespace rnncore
