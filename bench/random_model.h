// A float model with uniform random weights, for the streaming benchmarks.
#pragma once

#include <cstdint>
#include <random>

#include "rnncore/model.h"

namespace rnncore_bench {

// One layer of `cell`, every parameter drawn from U(-bound, bound) with a fixed seed.
inline rnncore::Model<float> random_model(rnncore::CellKind cell, int64_t input_size,
                                          int64_t hidden_size, float bound) {
  rnncore::ModelConfig c;
  c.cell = cell;
  c.input_size = input_size;
  c.hidden_size = hidden_size;
  rnncore::Model<float> m(c);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-bound, bound);
  for (std::size_t i = 0; i < m.specs().size(); ++i) {
    for (float& v : m.parameter(i)) v = u(rng);
  }
  return m;
}

}  // namespace rnncore_bench
