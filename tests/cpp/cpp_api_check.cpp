// Runs every C++ entry point on one case that check_cpp_api.py wrote, under a list of settings,
// and writes what each returned; check_cpp_api.py compares it with the NumPy reference.
//
//   cpp_api_check CASE_DIR
//
// CASE_DIR holds model.safetensors (read with rnncore::load_model, so the C++ reader is part of
// the check), case.txt ("dtype steps batch has_state has_lengths", dtype float32 or float64,
// then one setting per line:
// "name threads plan time_loop wavefront", "-" for an unset variable), and the raw arrays in the
// model's dtype: x [T, N, I], h0 / c0 [L*D, N, H], grad_y [T, N, D*H], grad_h / grad_c
// [L*D, N, H], lengths [N] (int64). For each setting it writes <setting>.<entry>.<array>.bin for
// the entries forward (sequence_forward), prepared (PreparedWeights, each call twice),
// train (sequence_forward with a TrainingCache, then sequence_backward) and, for one-direction
// models without lengths, stream_step and stream_many (rnncore::Stream).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rnncore/io.h"
#include "rnncore/model.h"
#include "rnncore/sequence.h"
#include "rnncore/stream.h"
#include "rnncore/thread_plan.h"
#include "api_check_case.h"
#include "thread_policy.h"

namespace {

using api_check::Case;
using api_check::read_array;
using api_check::read_case;
using api_check::Setting;
using api_check::write_array;

void set_env(const char* name, const std::string& value) {
  if (value == "-") {
    unsetenv(name);
  } else {
    setenv(name, value.c_str(), 1);
  }
}

void apply(const Setting& s) {
#ifdef _OPENMP
  omp_set_num_threads(s.threads);
#endif
  rnncore::set_thread_plan(s.plan == "fixed" ? rnncore::ThreadPlan::Fixed : rnncore::ThreadPlan::Measured);
  rnncore::reset_thread_plan();
  set_env("RNNCORE_TIME_LOOP", s.time_loop);
  set_env("RNNCORE_WAVEFRONT", s.wavefront);
  rnncore::detail::reload_thread_settings();  // the library reads them once otherwise
}

template <typename S>
void run(const Case& c, const rnncore::Model<S>& model) {
  const rnncore::ModelConfig& config = model.config();
  const int64_t T = c.steps, N = c.batch, I = config.input_size, H = config.hidden_size;
  const int64_t D = config.directions(), states = config.num_layers * D;
  const auto n = [](int64_t v) { return static_cast<std::size_t>(v); };
  const std::string& dir = c.dir;
  const auto x = read_array<S>(dir + "/x.bin", n(T * N * I));
  const auto grad_y = read_array<S>(dir + "/grad_y.bin", n(T * N * D * H));
  const auto grad_h = read_array<S>(dir + "/grad_h.bin", n(states * N * H));
  const bool lstm = config.cell == rnncore::CellKind::Lstm;
  const auto grad_c = lstm ? read_array<S>(dir + "/grad_c.bin", n(states * N * H)) : std::vector<S>();
  std::vector<S> h0, c0;
  if (c.has_state) {
    h0 = read_array<S>(dir + "/h0.bin", n(states * N * H));
    if (lstm) c0 = read_array<S>(dir + "/c0.bin", n(states * N * H));
  }
  std::vector<int64_t> lengths;
  if (c.has_lengths) lengths = read_array<int64_t>(dir + "/lengths.bin", n(N));
  const S* h0p = h0.empty() ? nullptr : h0.data();
  const S* c0p = c0.empty() ? nullptr : c0.data();
  const int64_t* lens = lengths.empty() ? nullptr : lengths.data();
  const auto weights = model.weights();

  for (const Setting& s : c.settings) {
    apply(s);
    const std::string prefix = dir + "/" + s.name + ".";
    std::vector<S> y(n(T * N * D * H)), h_n(n(states * N * H)), c_n(n(states * N * H));
    const auto save_outputs = [&](const std::string& entry) {
      write_array(prefix + entry + ".y.bin", y);
      write_array(prefix + entry + ".h_n.bin", h_n);
      if (lstm) write_array(prefix + entry + ".c_n.bin", c_n);
    };

    rnncore::sequence_forward<S>(config, weights, T, N, x.data(), h0p, c0p, lens, y.data(),
                                 h_n.data(), c_n.data(), nullptr);
    save_outputs("forward");

    const rnncore::PreparedWeights<S> prepared(config, weights);
    for (int call = 1; call <= 2; ++call) {
      rnncore::sequence_forward<S>(prepared, T, N, x.data(), h0p, c0p, lens, y.data(), h_n.data(),
                                   c_n.data());
      save_outputs("prepared" + std::to_string(call));
    }

    rnncore::TrainingCache<S> cache;
    rnncore::sequence_forward<S>(config, weights, T, N, x.data(), h0p, c0p, lens, y.data(),
                                 h_n.data(), c_n.data(), &cache);
    save_outputs("train");
    std::vector<S> grad_x(n(T * N * I)), grad_h0(n(states * N * H)), grad_c0(n(states * N * H));
    std::vector<std::vector<S>> grad_params;
    std::vector<rnncore::DirectionGrads<S>> grads;
    for (int64_t slot = 0; slot < states; ++slot) {
      const int64_t gh = config.gates() * H, in = config.layer_input_size(slot / D);
      for (int64_t size : {gh * in, gh * H, gh, gh}) grad_params.emplace_back(n(size));
    }
    for (int64_t slot = 0; slot < states; ++slot) {
      const auto at = [&](int k) { return grad_params[n(4 * slot + k)].data(); };
      grads.push_back({at(0), at(1), at(2), at(3)});
    }
    rnncore::sequence_backward<S>(config, weights, cache, grad_y.data(), grad_h.data(),
                                  lstm ? grad_c.data() : nullptr, grad_x.data(), grad_h0.data(),
                                  lstm ? grad_c0.data() : nullptr, grads);
    write_array(prefix + "train.grad_x.bin", grad_x);
    write_array(prefix + "train.grad_h0.bin", grad_h0);
    if (lstm) write_array(prefix + "train.grad_c0.bin", grad_c0);
    for (std::size_t p = 0; p < grad_params.size(); ++p) {
      if (!config.bias && p % 4 >= 2) continue;
      write_array(prefix + "train.grad_param" + std::to_string(p) + ".bin", grad_params[p]);
    }

    if (D == 1 && lens == nullptr) {
      for (const bool many : {false, true}) {
        rnncore::Stream<S> stream(model, N);
        stream.set_state(h0p, c0p);
        if (many) {
          stream.step_many(T, x.data(), y.data());
        } else {
          for (int64_t t = 0; t < T; ++t) stream.step(x.data() + t * N * I, y.data() + t * N * H);
        }
        stream.get_state(h_n.data(), lstm ? c_n.data() : nullptr);
        const std::string entry = many ? "stream_many" : "stream_step";
        write_array(prefix + entry + ".y.bin", std::vector<S>(y.begin(), y.begin() + T * N * H));
        write_array(prefix + entry + ".h_n.bin", h_n);
        if (lstm) write_array(prefix + entry + ".c_n.bin", c_n);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: cpp_api_check CASE_DIR\n";
    return 2;
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
    std::cerr << "cpp_api_check: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
