// The CUDA kernels on one case that check_cpp_api.py wrote: the same protocol as cpp_api_check
// (tests/cpp/cpp_api_check.cpp), so that check_cpp_api.py --driver cuda_api_check holds the GPU
// to the NumPy reference (float64 1e-10, float32 1e-5) on outputs, states and every gradient.
//   forward      cuda::forward, per-step kernels (ForwardPath::Launches)
//   prepared1/2  cuda::forward, ForwardPath::Auto twice (the persistent kernel where it fits)
//   train        cuda::forward with a DeviceCache, then cuda::backward
//   stream_step, stream_many   cuda::DeviceStream, one step per call
// The settings in case.txt only name the output files here (the GPU has no thread settings).
// Exits 77 when no CUDA device is present.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/cuda.h"
#include "rnncore/io.h"
#include "rnncore/model.h"
#include "rnncore/sequence.h"
#include "api_check_case.h"
#include "device_vector.h"

namespace {

using api_check::Case;
using api_check::read_array;
using api_check::read_case;
using api_check::Setting;
using api_check::write_array;

using rnncore_test::DeviceVector;

template <typename S>
void run(const Case& c, const rnncore::Model<S>& model) {
  namespace cuda = rnncore::cuda;
  const rnncore::ModelConfig& config = model.config();
  const int64_t T = c.steps, N = c.batch, I = config.input_size, H = config.hidden_size;
  const int64_t D = config.directions(), states = config.num_layers * D;
  const auto n = [](int64_t v) { return static_cast<std::size_t>(v); };
  const std::string& dir = c.dir;
  const bool lstm = config.cell == rnncore::CellKind::Lstm;
  DeviceVector<S> x(read_array<S>(dir + "/x.bin", n(T * N * I)));
  DeviceVector<S> grad_y(read_array<S>(dir + "/grad_y.bin", n(T * N * D * H)));
  DeviceVector<S> grad_h(read_array<S>(dir + "/grad_h.bin", n(states * N * H)));
  DeviceVector<S> grad_c(lstm ? read_array<S>(dir + "/grad_c.bin", n(states * N * H)) : std::vector<S>());
  std::unique_ptr<DeviceVector<S>> h0, c0;
  if (c.has_state) {
    h0 = std::make_unique<DeviceVector<S>>(read_array<S>(dir + "/h0.bin", n(states * N * H)));
    if (lstm) c0 = std::make_unique<DeviceVector<S>>(read_array<S>(dir + "/c0.bin", n(states * N * H)));
  }
  std::vector<int64_t> lengths;
  if (c.has_lengths) lengths = read_array<int64_t>(dir + "/lengths.bin", n(N));
  const S* h0p = h0 ? h0->get() : nullptr;
  const S* c0p = c0 ? c0->get() : nullptr;
  const int64_t* lens = lengths.empty() ? nullptr : lengths.data();

  // The model's weights on the device, in DirectionWeights order.
  const auto host_weights = model.weights();
  std::vector<std::unique_ptr<DeviceVector<S>>> params;
  std::vector<rnncore::DirectionWeights<S>> weights;
  const int64_t gh = config.gates() * H;
  for (int64_t slot = 0; slot < states; ++slot) {
    const int64_t in = config.layer_input_size(slot / D);
    const auto put = [&](const S* p, int64_t count) -> S* {
      if (p == nullptr) return nullptr;
      params.push_back(std::make_unique<DeviceVector<S>>(std::vector<S>(p, p + count)));
      return params.back()->get();
    };
    const auto& w = host_weights[n(slot)];
    weights.push_back({put(w.w_ih, gh * in), put(w.w_hh, gh * H), put(w.b_ih, gh), put(w.b_hh, gh)});
  }

  cuda::Context ctx;
  for (const Setting& s : c.settings) {
    const std::string prefix = dir + "/" + s.name + ".";
    DeviceVector<S> y(n(T * N * D * H)), h_n(n(states * N * H)), c_n(n(states * N * H));
    const auto save_outputs = [&](const std::string& entry) {
      ctx.synchronize();
      write_array(prefix + entry + ".y.bin", y.host());
      write_array(prefix + entry + ".h_n.bin", h_n.host());
      if (lstm) write_array(prefix + entry + ".c_n.bin", c_n.host());
    };
    cuda::forward<S>(ctx, config, weights, T, N, x.get(), h0p, c0p, lens, y.get(), h_n.get(),
                     c_n.get(), nullptr, cuda::ForwardPath::Launches);
    save_outputs("forward");
    for (int call = 1; call <= 2; ++call) {
      cuda::forward<S>(ctx, config, weights, T, N, x.get(), h0p, c0p, lens, y.get(), h_n.get(),
                       c_n.get(), nullptr, cuda::ForwardPath::Auto);
      save_outputs("prepared" + std::to_string(call));
    }

    cuda::DeviceCache<S> cache;
    cuda::forward<S>(ctx, config, weights, T, N, x.get(), h0p, c0p, lens, y.get(), h_n.get(),
                     c_n.get(), &cache);
    save_outputs("train");
    DeviceVector<S> grad_x(n(T * N * I)), grad_h0(n(states * N * H)), grad_c0(n(states * N * H));
    std::vector<std::unique_ptr<DeviceVector<S>>> grad_params;
    std::vector<rnncore::DirectionGrads<S>> grads;
    for (int64_t slot = 0; slot < states; ++slot) {
      const int64_t in = config.layer_input_size(slot / D);
      for (int64_t size : {gh * in, gh * H, gh, gh}) grad_params.push_back(std::make_unique<DeviceVector<S>>(n(size)));
      const auto at = [&](int k) { return grad_params[n(4 * slot + k)]->get(); };
      grads.push_back({at(0), at(1), at(2), at(3)});
    }
    cuda::backward<S>(ctx, config, weights, cache, grad_y.get(), grad_h.get(),
                      lstm ? grad_c.get() : nullptr, grad_x.get(), grad_h0.get(),
                      lstm ? grad_c0.get() : nullptr, grads);
    ctx.synchronize();
    write_array(prefix + "train.grad_x.bin", grad_x.host());
    write_array(prefix + "train.grad_h0.bin", grad_h0.host());
    if (lstm) write_array(prefix + "train.grad_c0.bin", grad_c0.host());
    for (std::size_t p = 0; p < grad_params.size(); ++p) {
      if (!config.bias && p % 4 >= 2) continue;
      write_array(prefix + "train.grad_param" + std::to_string(p) + ".bin", grad_params[p]->host());
    }

    if (D == 1 && lens == nullptr) {
      for (const char* entry : {"stream_step", "stream_many"}) {
        cuda::DeviceStream<S> stream(ctx, config, weights, N);
        stream.set_state(h0p, c0p);
        for (int64_t t = 0; t < T; ++t) stream.step(x.get() + t * N * I, y.get() + t * N * H);
        stream.get_state(h_n.get(), lstm ? c_n.get() : nullptr);
        ctx.synchronize();
        const std::vector<S> all = y.host();
        write_array(prefix + entry + std::string(".y.bin"), std::vector<S>(all.begin(), all.begin() + T * N * H));
        write_array(prefix + entry + std::string(".h_n.bin"), h_n.host());
        if (lstm) write_array(prefix + entry + std::string(".c_n.bin"), c_n.host());
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: cuda_api_check CASE_DIR\n";
    return 2;
  }
  std::string why;
  if (!rnncore::cuda::device(&why)) {
    std::cerr << "cuda_api_check: skipped, no CUDA device: " << why << "\n";
    return 77;
  }
  try {
    const Case c = read_case(argv[1]);
    const std::string model_path = c.dir + "/model.safetensors";
    if (c.dtype == "float64") {
      run(c, rnncore::load_model<double>(model_path));
    } else if (c.dtype == "float32") {
      run(c, rnncore::load_model<float>(model_path));
    } else {
      throw std::runtime_error("case.txt: dtype must be float32 or float64, got " + c.dtype);
    }
  } catch (const std::exception& e) {
    std::cerr << "cuda_api_check: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
