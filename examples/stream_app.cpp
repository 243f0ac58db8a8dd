// rnncore_stream: runs a saved model over a stream of frames, one frame at a time.
//
//   rnncore_stream MODEL.safetensors [--input FILE] [--output FILE] [--quiet]
//
// Reads frames of input_size float32 values (raw, little-endian) from FILE or stdin ("-"),
// writes each frame's output, hidden_size float32 values, to FILE or stdout ("-") as soon as it
// is computed, and prints the step latency (p50, p99, max) to stderr at the end. The model is
// any unidirectional RNN / LSTM / GRU saved by rnncore.save() (Python) or rnncore::save_model.
#include <rnncore/io.h>
#include <rnncore/stream.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s MODEL.safetensors [--input FILE|-] [--output FILE|-] [--quiet]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path, input_path = "-", output_path = "-";
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--input" && i + 1 < argc) {
      input_path = argv[++i];
    } else if (arg == "--output" && i + 1 < argc) {
      output_path = argv[++i];
    } else if (arg == "--quiet") {
      quiet = true;
    } else if (model_path.empty() && !arg.empty() && arg[0] != '-') {
      model_path = arg;
    } else {
      return usage(argv[0]);
    }
  }
  if (model_path.empty()) return usage(argv[0]);

  try {
    const rnncore::Model<float> model = rnncore::load_model<float>(model_path);
    rnncore::Stream<float> stream(model, /*batch_size=*/1);
    const std::size_t I = static_cast<std::size_t>(stream.input_size());
    const std::size_t H = static_cast<std::size_t>(stream.output_size());

    std::FILE* in = input_path == "-" ? stdin : std::fopen(input_path.c_str(), "rb");
    if (in == nullptr) throw std::runtime_error(input_path + ": " + std::strerror(errno));
    std::FILE* out = output_path == "-" ? stdout : std::fopen(output_path.c_str(), "wb");
    if (out == nullptr) throw std::runtime_error(output_path + ": " + std::strerror(errno));

    std::vector<float> frame(I), output(H);
    std::vector<double> latency_us;
    latency_us.reserve(1 << 16);
    while (true) {
      const std::size_t got = std::fread(frame.data(), sizeof(float), I, in);
      if (got == 0) break;
      if (got != I) {
        throw std::runtime_error("the input ends inside a frame (" + std::to_string(got) + " of " +
                                 std::to_string(I) + " values)");
      }
      const auto start = std::chrono::steady_clock::now();
      stream.step(frame.data(), output.data());
      const auto stop = std::chrono::steady_clock::now();
      latency_us.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
      if (std::fwrite(output.data(), sizeof(float), H, out) != H) throw std::runtime_error("write error");
    }
    if (std::ferror(in)) throw std::runtime_error(input_path + ": read error");
    if (std::fflush(out) != 0) throw std::runtime_error("write error");
    if (in != stdin) std::fclose(in);
    if (out != stdout) std::fclose(out);

    if (!quiet) {
      const std::size_t n = latency_us.size();
      std::fprintf(stderr, "%s: %s, input %zu, hidden %zu, %lld layer(s); %zu frames\n",
                   model_path.c_str(), rnncore::cell_name(model.config().cell), I, H,
                   static_cast<long long>(model.config().num_layers), n);
      if (n > 0) {
        std::sort(latency_us.begin(), latency_us.end());
        auto pct = [&](double q) { return latency_us[static_cast<std::size_t>(q * static_cast<double>(n - 1))]; };
        std::fprintf(stderr, "step latency: p50 %.3f us, p99 %.3f us, max %.3f us\n", pct(0.5), pct(0.99),
                     latency_us.back());
      }
    }
  } catch (const rnncore::ModelFileError& e) {
    std::fprintf(stderr, "rnncore_stream: bad model file: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnncore_stream: %s\n", e.what());
    return 1;
  }
  return 0;
}
