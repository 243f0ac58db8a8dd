// ModelConfig's checks and the work of a forward pass (config.h).
#include "rnncore/config.h"

#include <stdexcept>
#include <string>

#include "rnncore/checked.h"
#include "thread_policy.h"

namespace rnncore {

void ModelConfig::validate() const {
  if (input_size <= 0 || hidden_size <= 0 || num_layers <= 0) {
    throw std::invalid_argument("rnncore: input_size, hidden_size and num_layers must be positive");
  }
  // The parameter count, D * G*H * ((I + H + 2) + (L - 1) * (D*H + H + 2)), must fit in 64 bits:
  // every product of these sizes the library forms (a weight's elements, a layer's width, the
  // number of weight arrays) is then no larger and cannot overflow.
  try {
    const char* count = "the parameter count";
    const int64_t first_width = checked_add(input_size, checked_add(hidden_size, 2, count), count);
    const int64_t upper_width =
        checked_add(checked_mul(directions() + 1, hidden_size, count), 2, count);
    const int64_t widths =
        checked_add(first_width, checked_mul(num_layers - 1, upper_width, count), count);
    checked_product({directions(), gates(), hidden_size, widths}, count);
  } catch (const std::length_error&) {
    throw std::length_error("rnncore: input_size = " + std::to_string(input_size) +
                            ", hidden_size = " + std::to_string(hidden_size) +
                            ", num_layers = " + std::to_string(num_layers) +
                            (bidirectional ? " (bidirectional)" : "") +
                            ": the parameter count does not fit in 64 bits");
  }
}

double forward_flops(const ModelConfig& config, int64_t steps, int64_t batch) noexcept {
  double flops = 0.0;
  for (int64_t k = 0; k < config.num_layers; ++k) {
    flops += config.directions() * detail::layer_flops(config, k, steps, batch);
  }
  return flops;
}

}  // namespace rnncore
