// What every part of the library shares: the cell kinds, a stack's hyper-parameters
// (ModelConfig) and the weight and gradient pointers of one (layer, direction). Layout and
// shapes: sequence.h.
#pragma once

#include <cstdint>

namespace rnncore {

enum class CellKind : int { RnnTanh = 0, RnnRelu = 1, Lstm = 2, Gru = 3 };

// Rows of W_ih / W_hh per hidden unit: 1 for the vanilla RNN, 4 for LSTM, 3 for GRU.
constexpr int gate_count(CellKind cell) noexcept {
  return cell == CellKind::Lstm ? 4 : cell == CellKind::Gru ? 3 : 1;
}

struct ModelConfig {
  CellKind cell = CellKind::Lstm;
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  bool bidirectional = false;
  bool bias = true;

  int directions() const noexcept { return bidirectional ? 2 : 1; }
  int gates() const noexcept { return gate_count(cell); }
  int64_t layer_input_size(int64_t layer) const noexcept {
    return layer == 0 ? input_size : directions() * hidden_size;
  }
  // Throws std::invalid_argument when a size is not positive.
  void validate() const;
  bool operator==(const ModelConfig& o) const noexcept {
    return cell == o.cell && input_size == o.input_size && hidden_size == o.hidden_size &&
           num_layers == o.num_layers && bidirectional == o.bidirectional && bias == o.bias;
  }
};

template <typename S>
struct DirectionWeights {
  const S* w_ih = nullptr;
  const S* w_hh = nullptr;
  const S* b_ih = nullptr;
  const S* b_hh = nullptr;
};

// Gradient outputs for one (layer, direction); every array is overwritten (not accumulated).
// A nullptr array is not computed (a frozen weight: for w_ih and w_hh, a GEMM over all steps
// saved).
template <typename S>
struct DirectionGrads {
  S* w_ih = nullptr;
  S* w_hh = nullptr;
  S* b_ih = nullptr;  // ignored (may be nullptr) for a model without bias
  S* b_hh = nullptr;
};

// The floating-point operations of one forward pass (multiply-adds count 2), for GFLOP/s.
double forward_flops(const ModelConfig& config, int64_t steps, int64_t batch) noexcept;

}  // namespace rnncore
