#include "rnncore/model.h"

#include <algorithm>
#include <new>
#include <stdexcept>

#include "rnncore/checked.h"

namespace rnncore {

const char* cell_name(CellKind cell) noexcept {
  switch (cell) {
    case CellKind::RnnTanh:
      return "rnn_tanh";
    case CellKind::RnnRelu:
      return "rnn_relu";
    case CellKind::Lstm:
      return "lstm";
    case CellKind::Gru:
      return "gru";
  }
  return "unknown";
}

CellKind cell_from_name(const std::string& name) {
  for (CellKind cell : {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
    if (name == cell_name(cell)) return cell;
  }
  throw std::invalid_argument("rnncore: unknown cell \"" + name +
                              "\" (expected rnn_tanh, rnn_relu, lstm or gru)");
}

// Shapes come from parameter_specs, whose sizes ModelConfig::validate has bounded.
int64_t ParameterSpec::numel() const noexcept {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<ParameterSpec> parameter_specs(const ModelConfig& config) {
  config.validate();
  static const char* const kinds[] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
  const int64_t gh = config.gates() * config.hidden_size;
  const int per = config.bias ? 4 : 2;
  std::vector<ParameterSpec> specs;
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    for (int d = 0; d < config.directions(); ++d) {
      for (int kind = 0; kind < per; ++kind) {
        ParameterSpec spec;
        spec.name = std::string(kinds[kind]) + "_l" + std::to_string(layer) + (d ? "_reverse" : "");
        spec.layer = layer;
        spec.direction = d;
        spec.kind = kind;
        if (kind == 0) spec.shape = {gh, config.layer_input_size(layer)};
        if (kind == 1) spec.shape = {gh, config.hidden_size};
        if (kind >= 2) spec.shape = {gh};
        specs.push_back(std::move(spec));
      }
    }
  }
  return specs;
}

template <typename S>
Model<S>::Model(const ModelConfig& config) : config_(config), specs_(parameter_specs(config)) {
  // validate() has checked that the parameter count fits in 64 bits; its bytes must fit too.
  int64_t count = 0;
  for (const auto& spec : specs_) count = checked_add(count, spec.numel(), "the parameter count");
  const std::size_t elements = checked_elements<S>(count, "the model's parameters");
  try {
    values_.reserve(specs_.size());
    for (const auto& spec : specs_) values_.emplace_back(static_cast<std::size_t>(spec.numel()), S(0));
  } catch (const std::bad_alloc&) {
    throw AllocationError("the parameters of a model with input_size " +
                              std::to_string(config.input_size) + ", hidden_size " +
                              std::to_string(config.hidden_size) + ", num_layers " +
                              std::to_string(config.num_layers),
                          static_cast<int64_t>(elements * sizeof(S)));
  }
}

template <typename S>
Model<S>::Model(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights)
    : Model(config) {
  const std::size_t slots = static_cast<std::size_t>(config.num_layers * config.directions());
  if (weights.size() != slots) {
    throw std::invalid_argument("rnncore: expected " + std::to_string(slots) +
                                " DirectionWeights (num_layers * directions), got " +
                                std::to_string(weights.size()));
  }
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const auto& spec = specs_[i];
    const auto& w = weights[static_cast<std::size_t>(spec.layer * config.directions() + spec.direction)];
    const S* src = spec.kind == 0 ? w.w_ih : spec.kind == 1 ? w.w_hh : spec.kind == 2 ? w.b_ih : w.b_hh;
    if (src == nullptr) throw std::invalid_argument("rnncore: " + spec.name + " is a null pointer");
    std::copy(src, src + spec.numel(), values_[i].begin());
  }
}

template <typename S>
std::vector<S>& Model<S>::parameter(const std::string& name) {
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].name == name) return values_[i];
  }
  throw std::out_of_range("rnncore: the model has no parameter \"" + name + "\"");
}

template <typename S>
const std::vector<S>& Model<S>::parameter(const std::string& name) const {
  return const_cast<Model*>(this)->parameter(name);
}

template <typename S>
std::vector<DirectionWeights<S>> Model<S>::weights() const {
  std::vector<DirectionWeights<S>> w(static_cast<std::size_t>(config_.num_layers * config_.directions()));
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    auto& slot = w[static_cast<std::size_t>(specs_[i].layer * config_.directions() + specs_[i].direction)];
    const S* data = values_[i].data();
    switch (specs_[i].kind) {
      case 0: slot.w_ih = data; break;
      case 1: slot.w_hh = data; break;
      case 2: slot.b_ih = data; break;
      default: slot.b_hh = data; break;
    }
  }
  return w;
}

template class Model<float>;
template class Model<double>;

}  // namespace rnncore
