// A model's hyper-parameters and parameters, owned, with PyTorch's names and shapes.
//
// This is what a C++ program holds between loading a file (io.h) and running it, either a whole
// sequence at a time (sequence.h, through weights()) or one frame at a time (stream.h).
//
// Parameters, per layer k and direction suffix ("" or "_reverse"), in this order:
//   weight_ih_l{k}{suffix}  [G*H, I_k]      G = gate_count(cell): 1 (RNN), 4 (LSTM), 3 (GRU)
//   weight_hh_l{k}{suffix}  [G*H, H]        I_0 = input_size, I_k = D*H for k > 0
//   bias_ih_l{k}{suffix}    [G*H]           only when config.bias
//   bias_hh_l{k}{suffix}    [G*H]
// Gate rows are ordered i, f, g, o (LSTM) and r, z, n (GRU), as in torch.nn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rnncore/sequence.h"

namespace rnncore {

// The name cell code used in model files and by the Python package: "rnn_tanh", "rnn_relu",
// "lstm", "gru".
const char* cell_name(CellKind cell) noexcept;
// The inverse of cell_name; throws std::invalid_argument for an unknown name.
CellKind cell_from_name(const std::string& name);

// One parameter's name and shape, in the order above.
struct ParameterSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t layer = 0;
  int direction = 0;  // 0 forward, 1 reverse
  int kind = 0;       // 0 weight_ih, 1 weight_hh, 2 bias_ih, 3 bias_hh

  int64_t numel() const noexcept;
};

// Every parameter the configuration has, in PyTorch's order. Calls config.validate().
std::vector<ParameterSpec> parameter_specs(const ModelConfig& config);

template <typename S>
class Model {
 public:
  // All parameters zero. Throws std::invalid_argument when a size is not positive.
  explicit Model(const ModelConfig& config);

  // Copies the weights of every (layer, direction), layer-major (l0-fwd, l0-rev, l1-fwd, ...),
  // laid out as in sequence.h. Biases are read only when config.bias.
  Model(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights);

  const ModelConfig& config() const noexcept { return config_; }
  const std::vector<ParameterSpec>& specs() const noexcept { return specs_; }

  // The parameter called `name` (a PyTorch name, see above); throws std::out_of_range for a name
  // this model does not have.
  std::vector<S>& parameter(const std::string& name);
  const std::vector<S>& parameter(const std::string& name) const;
  // The i-th parameter in specs() order.
  std::vector<S>& parameter(std::size_t index) { return values_.at(index); }
  const std::vector<S>& parameter(std::size_t index) const { return values_.at(index); }

  // Views for sequence_forward / sequence_backward and Stream: one per (layer, direction).
  // They point into this model and stay valid while it lives and is not moved from.
  std::vector<DirectionWeights<S>> weights() const;

 private:
  ModelConfig config_;
  std::vector<ParameterSpec> specs_;
  std::vector<std::vector<S>> values_;  // specs_ order
};

extern template class Model<float>;
extern template class Model<double>;

}  // namespace rnncore
