// Model files: safetensors (https://github.com/huggingface/safetensors), read and written here
// without any third-party code, the same format rnncore.save / rnncore.load use in Python.
//
// File layout:
//   [8 bytes]  header length n, unsigned little-endian
//   [n bytes]  UTF-8 JSON object: for each tensor
//                "weight_ih_l0": {"dtype": "F32", "shape": [256, 16], "data_offsets": [b, e]}
//              (offsets relative to the byte buffer, end exclusive), and "__metadata__", a
//              string-to-string object with the hyper-parameters:
//                format = "rnncore", format_version = "1", cell = rnn_tanh | rnn_relu | lstm | gru,
//                input_size, hidden_size, num_layers, bias = true | false,
//                bidirectional = true | false, batch_first = true | false (Python only)
//              The header may end with spaces (padding to 8 bytes).
//   [rest]     the byte buffer: raw little-endian tensors, C order, PyTorch's parameter names and
//              shapes (model.h), every tensor the same dtype, F32 or F64.
//
// Reading trusts nothing: the header length, the JSON (strictly parsed, depth-limited, no
// duplicate keys), every dtype, shape and offset, are checked against the file size and the
// hyper-parameters before a byte of tensor data is read; tensors must tile the buffer exactly
// (no overlap, no hole, no trailing bytes). Any problem throws ModelFileError naming the file.
// The JSON is what the safetensors reference reads: integers 0 ... 2^64 - 1 only (no "-0",
// fractions or exponents), no lone surrogates. rnncore.load (Python) runs this reader.
// A reader's time and memory are bounded by the file's size: the header is parsed without a
// document tree, and the tensors the hyper-parameters need are counted against those the header
// lists before any is named, so a 300-byte file claiming ten million layers fails at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/model.h"

namespace rnncore {

// A model file that cannot be read, written or trusted. what() names the file and the problem;
// it is valid UTF-8, with strings from the header quoted, control characters escaped and long
// ones cut short.
class ModelFileError : public std::runtime_error {
 public:
  ModelFileError(const std::string& path, const std::string& problem)
      : std::runtime_error(path + ": " + problem), path_(path), problem_(problem) {}
  const std::string& path() const noexcept { return path_; }
  const std::string& problem() const noexcept { return problem_; }

 private:
  std::string path_;
  std::string problem_;
};

// Files larger than this are refused before they are read (override per call).
constexpr std::uint64_t kDefaultMaxModelFileBytes = std::uint64_t(1) << 31;  // 2 GiB
// Header lengths above this are refused (the header of even a 1000-layer model is ~300 kB).
constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t(100) << 20;  // 100 MiB

struct TensorEntry {
  std::string dtype;  // "F32" | "F64" (others are refused by load_model, listed by the parser)
  std::vector<int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte offsets into the buffer, end exclusive
};

struct SafetensorsHeader {
  std::map<std::string, TensorEntry> tensors;
  std::map<std::string, std::string> metadata;
  std::uint64_t buffer_offset = 0;  // 8 + header length
};

// Parses and checks the header of an in-memory safetensors file of `size` bytes: the JSON, the
// dtypes (known safetensors names), shapes and offsets against the buffer, exact tiling.
// `source` names the data in error messages. Throws ModelFileError.
SafetensorsHeader parse_safetensors(const unsigned char* data, std::size_t size,
                                    const std::string& source);

// The hyper-parameters stored in a header's metadata. Throws ModelFileError.
ModelConfig config_from_metadata(const SafetensorsHeader& header, const std::string& source);

// Reads a model file; the parameters are converted to S when the file holds the other float
// type. Throws ModelFileError (missing, unreadable, too large, malformed, or not matching its
// own hyper-parameters).
template <typename S>
Model<S> load_model(const std::string& path,
                    std::uint64_t max_bytes = kDefaultMaxModelFileBytes);
// The same from bytes in memory.
template <typename S>
Model<S> load_model_from_memory(const unsigned char* data, std::size_t size,
                                const std::string& source = "<memory>");

// Writes the model (tensors in its own dtype). Written to "<path>.tmp" and renamed, so a failed
// write never leaves a half-written file at `path`. batch_first is only recorded in the metadata
// (the Python layers' input layout). Throws ModelFileError.
template <typename S>
void save_model(const std::string& path, const Model<S>& model, bool batch_first = false);
// The bytes save_model writes (rnncore.save writes these too: one writer for both languages).
template <typename S>
std::vector<unsigned char> serialize_model(const Model<S>& model, bool batch_first = false);

}  // namespace rnncore
