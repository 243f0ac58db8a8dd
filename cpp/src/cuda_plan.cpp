// The host-side part of rnncore/cuda.h that every build has: argument checks, the persistent
// kernel's plan and the choice of kernel (plain arithmetic, tested without a GPU), and, in a build
// without RNNCORE_CUDA, the entry points that say so.
#include <limits>
#include <stdexcept>
#include <string>

#include "rnncore/cuda.h"

namespace rnncore {
namespace cuda {

namespace {

[[noreturn]] void invalid(const std::string& what) { throw std::invalid_argument(what); }

int64_t checked_product(int64_t a, int64_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) {
    throw std::length_error(std::string(what) + ": element count overflows int64");
  }
  return a * b;
}

}  // namespace

PersistentPlan persistent_plan(CellKind cell, int64_t hidden_size, int64_t batch,
                               std::size_t scalar_bytes, int directions, int multiprocessors,
                               std::size_t shared_bytes_per_block) {
  PersistentPlan plan;
  if (batch > kPersistentMaxBatch) {
    plan.why_not = "batch " + std::to_string(batch) + " > " + std::to_string(kPersistentMaxBatch);
    return plan;
  }
  const int grid = multiprocessors / (directions < 1 ? 1 : directions);
  if (hidden_size < 1 || batch < 1 || grid < 1 || scalar_bytes == 0) {
    plan.why_not = "no multiprocessor or no work";
    return plan;
  }
  const int64_t G = gate_count(cell);
  plan.units_per_block = (hidden_size + grid - 1) / grid;
  plan.blocks = static_cast<int>((hidden_size + plan.units_per_block - 1) / plan.units_per_block);
  // The block's rows of W_hh, plus the hidden projections of its units for every sequence.
  const int64_t rows = G * plan.units_per_block;
  const double bytes = (static_cast<double>(rows) * static_cast<double>(hidden_size) +
                        static_cast<double>(rows) * static_cast<double>(kPersistentMaxBatch)) *
                       static_cast<double>(scalar_bytes);
  plan.shared_bytes = bytes > 1e18 ? std::size_t(-1) : static_cast<std::size_t>(bytes);
  if (plan.shared_bytes > shared_bytes_per_block) {
    plan.why_not = "W_hh needs " + std::to_string(plan.shared_bytes) +
                   " bytes of shared memory per block, the device has " +
                   std::to_string(shared_bytes_per_block);
    return plan;
  }
  plan.fits = true;
  return plan;
}

ForwardPath choose_path(const ModelConfig& config, int64_t batch, std::size_t scalar_bytes,
                        bool training, ForwardPath requested, int multiprocessors,
                        std::size_t shared_bytes_per_block) {
  if (requested == ForwardPath::Launches) return ForwardPath::Launches;
  std::string why_not;
  if (training) {
    why_not = "a forward with a training cache runs the per-step kernels";
  } else {
    const PersistentPlan plan =
        persistent_plan(config.cell, config.hidden_size, batch, scalar_bytes,
                        config.directions(), multiprocessors, shared_bytes_per_block);
    if (plan.fits) return ForwardPath::Persistent;
    why_not = plan.why_not;
  }
  if (requested == ForwardPath::Persistent) {
    invalid("path: the persistent kernel cannot run this call: " + why_not);
  }
  return ForwardPath::Launches;
}

template <typename S>
void check_forward_args(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                        int64_t steps, int64_t batch, const S* x, const int64_t* lengths,
                        const S* y) {
  config.validate();
  if (steps < 1) invalid("steps must be >= 1, got " + std::to_string(steps));
  if (batch < 1) invalid("batch must be >= 1, got " + std::to_string(batch));
  const int64_t slots = config.num_layers * config.directions();
  if (static_cast<int64_t>(weights.size()) != slots) {
    invalid("weights: needs one DirectionWeights per (layer, direction), " +
            std::to_string(slots) + ", got " + std::to_string(weights.size()));
  }
  for (std::size_t k = 0; k < weights.size(); ++k) {
    const DirectionWeights<S>& w = weights[k];
    const std::string where = "weights[" + std::to_string(k) + "]";
    if (w.w_ih == nullptr || w.w_hh == nullptr) invalid(where + ": w_ih and w_hh must not be null");
    if (config.bias && (w.b_ih == nullptr || w.b_hh == nullptr)) {
      invalid(where + ": the model has bias, so b_ih and b_hh must not be null");
    }
  }
  if (x == nullptr) invalid("x must not be null");
  if (y == nullptr) invalid("y must not be null");
  const int64_t rows = checked_product(steps, batch, "x");
  checked_product(rows, config.input_size, "x");
  checked_product(checked_product(rows, config.directions(), "y"), config.hidden_size, "y");
  checked_product(checked_product(rows, config.gates(), "cache"), config.hidden_size, "cache");
  if (lengths != nullptr) {
    for (int64_t b = 0; b < batch; ++b) {
      if (lengths[b] < 1 || lengths[b] > steps) {
        invalid("lengths[" + std::to_string(b) + "] must be in 1.." + std::to_string(steps) +
                ", got " + std::to_string(lengths[b]));
      }
    }
  }
}

template <typename S>
void check_backward_grads(const ModelConfig& config, const std::vector<DirectionGrads<S>>& grads,
                          const S* grad_x, const S* grad_h0) {
  const int64_t slots = config.num_layers * config.directions();
  if (static_cast<int64_t>(grads.size()) != slots) {
    invalid("grads: needs one DirectionGrads per (layer, direction), " + std::to_string(slots) +
            ", got " + std::to_string(grads.size()));
  }
  for (std::size_t k = 0; k < grads.size(); ++k) {
    const std::string where = "grads[" + std::to_string(k) + "]";
    if (grads[k].w_ih == nullptr || grads[k].w_hh == nullptr) {
      invalid(where + ": w_ih and w_hh must not be null");
    }
    if (config.bias && (grads[k].b_ih == nullptr || grads[k].b_hh == nullptr)) {
      invalid(where + ": the model has bias, so b_ih and b_hh must not be null");
    }
  }
  if (grad_x == nullptr) invalid("grad_x must not be null");
  if (grad_h0 == nullptr) invalid("grad_h0 must not be null");
}

template void check_forward_args<float>(const ModelConfig&,
                                        const std::vector<DirectionWeights<float>>&, int64_t,
                                        int64_t, const float*, const int64_t*, const float*);
template void check_forward_args<double>(const ModelConfig&,
                                         const std::vector<DirectionWeights<double>>&, int64_t,
                                         int64_t, const double*, const int64_t*, const double*);
template void check_backward_grads<float>(const ModelConfig&,
                                          const std::vector<DirectionGrads<float>>&, const float*,
                                          const float*);
template void check_backward_grads<double>(const ModelConfig&,
                                           const std::vector<DirectionGrads<double>>&,
                                           const double*, const double*);

#ifndef RNNCORE_WITH_CUDA
// A build without RNNCORE_CUDA: the entry points exist (a program compiled against cuda.h links
// with either build) and say why they cannot run.
namespace {
[[noreturn]] void not_built() {
  throw std::runtime_error(
      "rnncore was built without CUDA; rebuild with the CMake option RNNCORE_CUDA=ON "
      "(pip install . -Ccmake.define.RNNCORE_CUDA=ON)");
}
}  // namespace

bool built() noexcept { return false; }
std::string compiled_version() { return ""; }
std::optional<DeviceInfo> device(std::string* why) {
  if (why != nullptr) *why = "rnncore was built without CUDA";
  return std::nullopt;
}

struct Context::Impl {};
Context::Context(int) { not_built(); }
Context::~Context() = default;
const DeviceInfo& Context::info() const noexcept {
  static const DeviceInfo none;
  return none;
}
void Context::synchronize() { not_built(); }

template <typename S>
struct DeviceCache<S>::Impl {};
template <typename S>
DeviceCache<S>::DeviceCache() : impl_(std::make_unique<Impl>()) {}
template <typename S>
DeviceCache<S>::~DeviceCache() = default;
template <typename S>
std::size_t DeviceCache<S>::nbytes() const noexcept {
  return 0;
}

template <typename S>
void forward(Context&, const ModelConfig&, const std::vector<DirectionWeights<S>>&, int64_t,
             int64_t, const S*, const S*, const S*, const int64_t*, S*, S*, S*, DeviceCache<S>*,
             ForwardPath) {
  not_built();
}
template <typename S>
void backward(Context&, const ModelConfig&, const std::vector<DirectionWeights<S>>&,
              const DeviceCache<S>&, const S*, const S*, const S*, S*, S*, S*,
              const std::vector<DirectionGrads<S>>&) {
  not_built();
}

template <typename S>
struct DeviceStream<S>::Impl {};
template <typename S>
DeviceStream<S>::DeviceStream(Context&, const ModelConfig&,
                              const std::vector<DirectionWeights<S>>&, int64_t batch)
    : batch_(batch) {
  not_built();
}
template <typename S>
DeviceStream<S>::~DeviceStream() = default;
template <typename S>
void DeviceStream<S>::step(const S*, S*) {
  not_built();
}
template <typename S>
void DeviceStream<S>::set_state(const S*, const S*) {
  not_built();
}
template <typename S>
void DeviceStream<S>::get_state(S*, S*) const {
  not_built();
}

#define RNNCORE_CUDA_INSTANTIATE(S)                                                              \
  template class DeviceCache<S>;                                                                 \
  template class DeviceStream<S>;                                                                \
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
#endif  // RNNCORE_WITH_CUDA

}  // namespace cuda
}  // namespace rnncore
