// rnncore::cuda::DeviceStream: one step of a unidirectional stack for many concurrent sequences,
// the state kept on the device. Per layer: two GEMMs (W_ih x, W_hh h) and the forward step
// kernel of the sequence path with one step.
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.cuh"

namespace rnncore {
namespace cuda {

template <typename S>
struct DeviceStream<S>::Impl {
  Context* ctx = nullptr;
  ModelConfig config;
  std::vector<DirectionWeights<S>> weights;
  int N = 0, H = 0, GH = 0;
  detail::DeviceArray<S> h, c;        // [L, N, H]
  detail::DeviceArray<S> gates, hproj;  // [N, GH]
  detail::DeviceArray<S> between;     // [N, H]: the output of the layers below the top
};

namespace {

template <CellKind Cell, typename S>
void launch_step(const detail::ForwardStepArgs<S>& a, cudaStream_t stream) {
  constexpr int threads = 256;
  const int blocks = (a.N * a.H + threads - 1) / threads;
  detail::forward_step_kernel<Cell, S><<<blocks, threads, 0, stream>>>(a);
  detail::check(cudaGetLastError(), "forward_step_kernel launch");
}

}  // namespace

template <typename S>
DeviceStream<S>::DeviceStream(Context& ctx, const ModelConfig& config,
                              const std::vector<DirectionWeights<S>>& weights, int64_t batch)
    : batch_(batch), impl_(std::make_unique<Impl>()) {
  if (config.bidirectional) {
    throw std::invalid_argument("config: a stream runs a unidirectional model only");
  }
  // A stand-in x and y: the step's own arguments are checked per call.
  const S probe{};
  check_forward_args(config, weights, 1, batch, &probe, nullptr, &probe);
  Impl& m = *impl_;
  m.ctx = &ctx;
  m.config = config;
  m.weights = weights;
  m.N = detail::to_int(batch, "batch");
  m.H = detail::to_int(config.hidden_size, "hidden_size");
  m.GH = detail::to_int(config.gates() * config.hidden_size, "gates");
  detail::check(cudaSetDevice(ctx.impl().device), "cudaSetDevice");
  const std::size_t state = static_cast<std::size_t>(config.num_layers) * m.N * m.H;
  m.h.reserve(state);
  if (config.cell == CellKind::Lstm) m.c.reserve(state);
  m.gates.reserve(static_cast<std::size_t>(m.N) * m.GH);
  m.hproj.reserve(static_cast<std::size_t>(m.N) * m.GH);
  m.between.reserve(static_cast<std::size_t>(m.N) * m.H);
  set_state(nullptr, nullptr);
}

template <typename S>
DeviceStream<S>::~DeviceStream() = default;

template <typename S>
void DeviceStream<S>::set_state(const S* h, const S* c) {
  Impl& m = *impl_;
  cudaStream_t stream = m.ctx->impl().streams[0];
  const std::size_t bytes = m.h.size() * sizeof(S);
  if (h != nullptr) {
    detail::check(cudaMemcpyAsync(m.h.data(), h, bytes, cudaMemcpyDeviceToDevice, stream), "set_state h");
  } else {
    detail::check(cudaMemsetAsync(m.h.data(), 0, bytes, stream), "set_state h");
  }
  if (m.config.cell != CellKind::Lstm) return;
  if (c != nullptr) {
    detail::check(cudaMemcpyAsync(m.c.data(), c, bytes, cudaMemcpyDeviceToDevice, stream), "set_state c");
  } else {
    detail::check(cudaMemsetAsync(m.c.data(), 0, bytes, stream), "set_state c");
  }
}

template <typename S>
void DeviceStream<S>::get_state(S* h, S* c) const {
  const Impl& m = *impl_;
  cudaStream_t stream = m.ctx->impl().streams[0];
  const std::size_t bytes = m.h.size() * sizeof(S);
  if (h != nullptr) {
    detail::check(cudaMemcpyAsync(h, m.h.data(), bytes, cudaMemcpyDeviceToDevice, stream), "get_state h");
  }
  if (c != nullptr && m.config.cell == CellKind::Lstm) {
    detail::check(cudaMemcpyAsync(c, m.c.data(), bytes, cudaMemcpyDeviceToDevice, stream), "get_state c");
  }
}

template <typename S>
void DeviceStream<S>::step(const S* x, S* y) {
  if (x == nullptr) throw std::invalid_argument("x must not be null");
  if (y == nullptr) throw std::invalid_argument("y must not be null");
  Impl& m = *impl_;
  Context::Impl& c = m.ctx->impl();
  detail::check(cudaSetDevice(c.device), "cudaSetDevice");
  cudaStream_t stream = c.streams[0];
  blas::Handle handle = c.handles[0];
  const int N = m.N, H = m.H, GH = m.GH;
  const S* input = x;
  for (int64_t l = 0; l < m.config.num_layers; ++l) {
    const int I = static_cast<int>(m.config.layer_input_size(l));
    const DirectionWeights<S>& w = m.weights[static_cast<std::size_t>(l)];
    S* h = m.h.data() + static_cast<std::size_t>(l) * N * H;
    detail::gemm(handle, true, false, GH, N, I, S(1), w.w_ih, I, input, I, S(0), m.gates.data(), GH);
    detail::gemm(handle, true, false, GH, N, H, S(1), w.w_hh, H, h, H, S(0), m.hproj.data(), GH);
    detail::ForwardStepArgs<S> a;
    a.N = N, a.H = H, a.steps = 1, a.s = 0, a.relu = m.config.cell == CellKind::RnnRelu;
    a.gates = m.gates.data(), a.hproj = m.hproj.data();
    a.b_ih = m.config.bias ? w.b_ih : nullptr, a.b_hh = m.config.bias ? w.b_hh : nullptr;
    a.h = h;
    a.c = m.config.cell == CellKind::Lstm ? m.c.data() + static_cast<std::size_t>(l) * N * H : nullptr;
    a.y = l + 1 == m.config.num_layers ? y : m.between.data();
    a.y_stride = H, a.y_offset = 0;
    switch (m.config.cell) {
      case CellKind::Lstm: launch_step<CellKind::Lstm>(a, stream); break;
      case CellKind::Gru: launch_step<CellKind::Gru>(a, stream); break;
      default: launch_step<CellKind::RnnTanh>(a, stream); break;
    }
    input = m.between.data();
  }
}

template class DeviceStream<float>;
template class DeviceStream<double>;

}  // namespace cuda
}  // namespace rnncore
