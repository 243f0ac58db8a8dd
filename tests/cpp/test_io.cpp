// Model files (io.h): round trips, and every kind of broken file gives ModelFileError.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/resource.h>
#endif

#include "rnncore/io.h"

namespace {

using rnncore::CellKind;
using rnncore::Model;
using rnncore::ModelConfig;
using rnncore::ModelFileError;
using Bytes = std::vector<unsigned char>;

ModelConfig small_config(CellKind cell = CellKind::Lstm, int64_t layers = 1, bool bidirectional = false) {
  ModelConfig c;
  c.cell = cell;
  c.input_size = 2;
  c.hidden_size = 3;
  c.num_layers = layers;
  c.bidirectional = bidirectional;
  return c;
}

template <typename S>
Model<S> random_model(const ModelConfig& config) {
  Model<S> m(config);
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-1, 1);
  for (std::size_t i = 0; i < m.specs().size(); ++i) {
    for (S& v : m.parameter(i)) v = static_cast<S>(u(rng));
  }
  return m;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("rnncore_test_" + name)).string();
}

// A file from a header string and a buffer.
Bytes make_file(const std::string& header, const Bytes& buffer) {
  Bytes out(8);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<unsigned char>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), buffer.begin(), buffer.end());
  return out;
}

const char* kMeta =
    "\"__metadata__\":{\"format\":\"rnncore\",\"format_version\":\"1\",\"cell\":\"rnn_tanh\","
    "\"input_size\":\"1\",\"hidden_size\":\"1\",\"num_layers\":\"1\",\"bias\":\"false\","
    "\"bidirectional\":\"false\"}";

// A valid 1x1 tanh RNN without bias: two F32 tensors of 4 bytes.
std::string tensors(const std::string& ih, const std::string& hh) {
  return std::string("{") + kMeta + ",\"weight_ih_l0\":" + ih + ",\"weight_hh_l0\":" + hh + "}";
}
const std::string kIh = "{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}";
const std::string kHh = "{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[4,8]}";
const Bytes kEight(8, 0);

std::string load_error(const Bytes& file) {
  try {
    rnncore::load_model_from_memory<float>(file.data(), file.size(), "test.safetensors");
  } catch (const ModelFileError& e) {
    return e.what();
  }
  return "";
}

TEST(ModelFile, RoundTripsEveryCellAndDtype) {
  for (CellKind cell : {CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru}) {
    const auto model = random_model<double>(small_config(cell, 2, true));
    const std::string path = temp_path("roundtrip.safetensors");
    rnncore::save_model(path, model);
    const auto back = rnncore::load_model<double>(path);
    EXPECT_TRUE(back.config() == model.config());
    for (std::size_t i = 0; i < model.specs().size(); ++i) EXPECT_EQ(back.parameter(i), model.parameter(i));
    // Read into the other float type: converted.
    const auto as_float = rnncore::load_model<float>(path);
    EXPECT_EQ(as_float.parameter(0)[0], static_cast<float>(model.parameter(0)[0]));
    std::filesystem::remove(path);
  }
}

TEST(ModelFile, HandMadeFileLoads) {
  Bytes buffer(8);
  const float w[2] = {0.5f, -2.0f};
  std::memcpy(buffer.data(), w, 8);
  const Bytes file = make_file(tensors(kIh, kHh), buffer);
  const auto m = rnncore::load_model_from_memory<float>(file.data(), file.size());
  EXPECT_EQ(m.parameter("weight_ih_l0")[0], 0.5f);
  EXPECT_EQ(m.parameter("weight_hh_l0")[0], -2.0f);
}

TEST(ModelFile, TruncationAtEveryByteIsAnError) {
  const Bytes file = rnncore::serialize_model(random_model<float>(small_config(CellKind::Gru)));
  for (std::size_t n = 0; n < file.size(); ++n) {
    const Bytes cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_NE(load_error(cut), "") << "truncated to " << n << " bytes";
  }
}

TEST(ModelFile, FlippedHeaderBytesNeverCrash) {
  const Bytes file = rnncore::serialize_model(random_model<float>(small_config(CellKind::Lstm, 2)));
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[static_cast<std::size_t>(i)];
  std::mt19937 rng(3);
  for (std::size_t at = 0; at < 8 + n; ++at) {
    for (unsigned char mask : {0x01, 0x20, 0x80, 0xff}) {
      Bytes bad = file;
      bad[at] ^= mask;
      // Either a clean error or (rarely: a flipped digit in padding or inside a value that stays
      // valid) a model; never a crash or an out-of-bounds read (run under ASan to be sure).
      try {
        rnncore::load_model_from_memory<float>(bad.data(), bad.size());
      } catch (const ModelFileError&) {
      }
    }
  }
}

TEST(ModelFile, TamperedHeadersGiveClearErrors) {
  EXPECT_EQ(load_error(make_file(tensors(kIh, kHh), kEight)), "");
  auto expect_error = [](const Bytes& file, const std::string& needle) {
    const std::string what = load_error(file);
    EXPECT_NE(what.find("test.safetensors: "), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << "expected '" << needle << "' in: " << what;
  };
  expect_error(make_file("{\"a\":", kEight), "bad header JSON");
  expect_error(make_file("[1, 2]", kEight), "not a JSON object");
  expect_error(make_file(tensors(kIh, kIh), kEight), "overlap");
  expect_error(make_file(tensors(kIh, "{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[4,12]}"), kEight),
               "out of range");
  expect_error(make_file(tensors(kIh, "{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[8,4]}"), kEight),
               "out of range");
  expect_error(make_file(tensors(kIh, "{\"dtype\":\"I32\",\"shape\":[1,1],\"data_offsets\":[4,8]}"), kEight),
               "dtype I32");
  expect_error(make_file(tensors(kIh, "{\"dtype\":\"Q7\",\"shape\":[1,1],\"data_offsets\":[4,8]}"), kEight),
               "unknown dtype");
  expect_error(make_file(tensors(kIh, "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}"),
                         Bytes(12, 0)),
               "shape [2]");
  expect_error(make_file(tensors(kIh, "{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[4,8]}"), kEight),
               "need 8");
  expect_error(make_file(tensors(kIh, kHh), Bytes(12, 0)), "no tensor describes");
  expect_error(make_file(std::string("{") + kMeta + ",\"weight_ih_l0\":" + kIh + "}", Bytes(4, 0)),
               "\"weight_hh_l0\" is missing");
  expect_error(make_file("{\"weight_ih_l0\":" + kIh + ",\"weight_hh_l0\":" + kHh + "}", kEight),
               "not an rnncore model file");
  expect_error(make_file(tensors(kIh, kHh) + "x", kEight), "after the JSON");
  expect_error(make_file("{\"a\":1,\"a\":2}", {}), "duplicate key");
  expect_error(make_file(std::string(40, '[') , {}), "not a JSON object");
  expect_error(make_file("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", {}), "nested too deeply");
  Bytes absurd = make_file(tensors(kIh, kHh), kEight);
  absurd[7] = 0x7f;
  expect_error(absurd, "is absurd");
  Bytes too_long = make_file(tensors(kIh, kHh), kEight);
  too_long[0] = static_cast<unsigned char>(too_long[0] + 9);
  expect_error(too_long, "truncated");
  std::string meta_bad = tensors(kIh, kHh);
  meta_bad.replace(meta_bad.find("\"hidden_size\":\"1\""), 17, "\"hidden_size\":\"x\"");
  expect_error(make_file(meta_bad, kEight), "not a positive integer");
}

TEST(ModelFile, MissingOversizedAndDirectoryPaths) {
  try {
    rnncore::load_model<float>(temp_path("does_not_exist.safetensors"));
    FAIL() << "no error";
  } catch (const ModelFileError& e) {
    EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos);
  }
  EXPECT_THROW(rnncore::load_model<float>(std::filesystem::temp_directory_path().string()), ModelFileError);
  const std::string path = temp_path("big.safetensors");
  rnncore::save_model(path, random_model<float>(small_config()));
  try {
    rnncore::load_model<float>(path, /*max_bytes=*/64);
    FAIL() << "no error";
  } catch (const ModelFileError& e) {
    EXPECT_NE(std::string(e.what()).find("more than the limit"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(rnncore::save_model("/nonexistent-dir/x.safetensors", random_model<float>(small_config())),
               ModelFileError);
}

// ------------------------------------------------------------------ work bounded by the file
// The peak resident memory of this process so far, in bytes (0 where it cannot be read). ctest
// runs each test in a process of its own, so a test's peak growth is what it allocated.
std::uint64_t peak_memory_bytes() {
#if defined(__linux__)
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
#endif
  return 0;
}

constexpr std::uint64_t kFewBytes = std::uint64_t(256) << 20;  // far below what each case once took

TEST(ModelFile, AHeaderClaimingTenMillionLayersFailsBeforeListingThem) {
  // 300 bytes that once cost 2.4 GB and 8 s: every layer's names were listed before any was looked up.
  std::string header = tensors(kIh, kHh);
  header.replace(header.find("\"num_layers\":\"1\""), 16, "\"num_layers\":\"10000000\"");
  const std::uint64_t before = peak_memory_bytes();
  const std::string what = load_error(make_file(header, kEight));
  EXPECT_NE(what.find("tensor \"weight_ih_l1\" is missing (num_layers = 10000000 needs 20000000 tensors, "
                      "the file holds 2)"),
            std::string::npos)
      << what;
  EXPECT_LT(peak_memory_bytes() - before, kFewBytes);
}

TEST(ModelFile, LargeHeadersTakeLinearTimeAndLittleMemory) {
  // 100,000 distinct keys: the duplicate check compared every pair (a 2 MB header took 4 minutes).
  std::string keys = "{";
  for (int i = 0; i < 100000; ++i) keys += (i ? ",\"" : "\"") + std::to_string(i) + "\":0";
  keys += "}";
  EXPECT_NE(load_error(make_file(keys, {})).find("tensor \"0\" is not a JSON object"), std::string::npos);
  // Four million array items: a document tree took ~80 bytes of memory per byte of header.
  std::string array = "{\"a\":[0";
  for (int i = 1; i < 4000000; ++i) array += ",0";
  array += "]}";
  const std::uint64_t before = peak_memory_bytes();
  EXPECT_NE(load_error(make_file(array, {})).find("tensor \"a\" is not a JSON object"), std::string::npos);
  EXPECT_LT(peak_memory_bytes() - before, kFewBytes);
}

TEST(ModelFile, DuplicateKeysAreFoundWhereverTheyAre) {
  auto expect_error = [](const std::string& header, const std::string& needle) {
    const std::string what = load_error(make_file(header, {}));
    EXPECT_NE(what.find(needle), std::string::npos) << "expected '" << needle << "' in: " << what;
  };
  expect_error("{\"a\":1,\"b\":2,\"b\":3,\"a\":4}", "at byte 13 of the header: duplicate key \"b\"");
  expect_error("{\"x\":{\"k\":1},\"y\":{\"k\":1,\"j\":{},\"k\":2}}", "duplicate key \"k\"");
  // The same key spelled two ways.
  expect_error("{\"ab\":1,\"a\\u0062\":2}", "duplicate key \"ab\"");
  // Keys of sibling and nested objects are not duplicates.
  EXPECT_EQ(load_error(make_file("{\"x\":{\"k\":1},\"y\":{\"k\":{\"k\":1}}}", {})).find("duplicate"), std::string::npos);
}

TEST(ModelFile, ErrorMessagesAreValidUtf8WhateverTheHeaderHolds) {
  // A lone byte of a multi-byte character once went into the message, and Python saw a
  // UnicodeDecodeError instead of ModelFileError.
  for (const std::string header : {"{\"a\":\xc3\xa9}", "{\"a\":\"\\\xc3\xa9\"}", "{\"a\":\xf0\x9f\x98\x80}"}) {
    const std::string what = load_error(make_file(header, {}));
    ASSERT_NE(what, "") << header;
    for (unsigned char c : what) EXPECT_LT(c, 0x80) << what;
  }
  // Names from the header are quoted with control characters escaped, and long ones cut short.
  const std::string long_name(5000, 'n');
  const std::string what = load_error(make_file("{\"" + long_name + "\\u0000\":1}", {}));
  EXPECT_LT(what.size(), 200u) << what;
  EXPECT_NE(what.find("tensor \"nnnn"), std::string::npos) << what;
}

// ------------------------------------------------------------------ seeded mutations
// A smaller C++-only version of tests/test_io_fuzz.py, so that the sanitizer build runs the
// parser over broken files: each gives a model or ModelFileError, never another exception, a
// crash or a read out of bounds.
struct Mutated {
  Bytes file;
  std::string what;
};

std::string header_of(const Bytes& file, Bytes* buffer) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[static_cast<std::size_t>(i)];
  buffer->assign(file.begin() + static_cast<std::ptrdiff_t>(8 + n), file.end());
  return std::string(file.begin() + 8, file.begin() + static_cast<std::ptrdiff_t>(8 + n));
}

Mutated mutate(const Bytes& base, std::mt19937_64& rng) {
  static const char* const kSnippets[] = {
      "-0", "-1", "0", "00", "1.0", "1e2", "18446744073709551615", "18446744073709551616", "9223372036854775808",
      "NaN", "null", "true", "\"4\"", "[", "]", "{", "}", ",", ":", "\"", "\\", " ", "\"\\ud800\"",
      "\"\\udc00\"", "\"\\ud83d\\ude00\"", "\"\\u00\"", "\xc3\xa9", "\xff", "\xed\xa0\x80", "\x00",
      "\"x\":1,", "\"__metadata__\":{},", "\"dtype\":\"F64\",", "\"shape\":[],",
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "\"10000000\""};
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % std::max<std::size_t>(n, 1)); };
  Bytes buffer;
  std::string header = header_of(base, &buffer);
  Mutated m{base, ""};
  switch (rng() % 7) {
    case 0: {  // flip bytes anywhere, mostly in the header
      for (int k = 0, flips = 1 + static_cast<int>(rng() % 4); k < flips; ++k) {
        const std::size_t at = rng() % 3 ? pick(8 + header.size()) : pick(m.file.size());
        const auto mask = static_cast<unsigned char>(1 + rng() % 255);
        m.file[at] ^= mask;
        m.what += "flip " + std::to_string(at) + "^" + std::to_string(mask) + "; ";
      }
      return m;
    }
    case 1: {
      const std::size_t cut = pick(m.file.size());
      m.file.resize(cut);
      m.what = "truncate to " + std::to_string(cut);
      return m;
    }
    case 2: {  // the header length off by a little
      const std::uint64_t n = header.size() + rng() % 19 - 9;
      for (int i = 0; i < 8; ++i) m.file[static_cast<std::size_t>(i)] = static_cast<unsigned char>(n >> (8 * i));
      m.what = "header length " + std::to_string(n);
      return m;
    }
    case 3: {
      const char* snippet = kSnippets[pick(std::size(kSnippets))];
      const std::size_t at = pick(header.size() + 1);
      header.insert(at, snippet);
      m.what = std::string("insert ") + snippet + " at " + std::to_string(at);
      break;
    }
    case 4: {  // replace a run of digits
      std::size_t at = pick(header.size());
      while (at < header.size() && !(header[at] >= '0' && header[at] <= '9')) ++at;
      std::size_t end = at;
      while (end < header.size() && header[end] >= '0' && header[end] <= '9') ++end;
      const char* snippet = kSnippets[pick(std::size(kSnippets))];
      header.replace(at, end - at, snippet);
      m.what = std::string("number at ") + std::to_string(at) + " -> " + snippet;
      break;
    }
    case 5: {  // delete a span
      const std::size_t at = pick(header.size());
      const std::size_t length = 1 + pick(std::min<std::size_t>(40, header.size() - at));
      header.erase(at, length);
      m.what = "delete " + std::to_string(length) + " at " + std::to_string(at);
      break;
    }
    default: {  // repeat a span (duplicate keys, entries, brackets)
      const std::size_t at = pick(header.size());
      const std::size_t length = 1 + pick(std::min<std::size_t>(120, header.size() - at));
      const std::size_t to = pick(header.size() + 1);
      header.insert(to, header.substr(at, length));
      m.what = "copy " + std::to_string(length) + " bytes from " + std::to_string(at) + " to " + std::to_string(to);
      break;
    }
  }
  m.file = make_file(header, buffer);
  return m;
}

TEST(ModelFile, SeededMutationsGiveAModelOrModelFileError) {
  const std::vector<Bytes> bases = {
      rnncore::serialize_model(random_model<float>(small_config(CellKind::Gru))),
      rnncore::serialize_model(random_model<double>(small_config(CellKind::Lstm, 2, true))),
      make_file(tensors(kIh, kHh), kEight)};
  std::mt19937_64 rng(20261201);
  int accepted = 0, refused = 0;
  for (int iteration = 0; iteration < 4000; ++iteration) {
    const Mutated m = mutate(bases[rng() % bases.size()], rng);
    try {
      const auto model = rnncore::load_model_from_memory<double>(m.file.data(), m.file.size(), "fuzz");
      // What was accepted is a model the writer can write and the reader read back the same.
      const Bytes again = rnncore::serialize_model(model);
      const auto back = rnncore::load_model_from_memory<double>(again.data(), again.size(), "again");
      for (std::size_t i = 0; i < model.specs().size(); ++i) {
        ASSERT_EQ(0, std::memcmp(back.parameter(i).data(), model.parameter(i).data(),
                                 model.parameter(i).size() * sizeof(double)))
            << "iteration " << iteration << " (" << m.what << ")";
      }
      ++accepted;
    } catch (const ModelFileError& e) {
      ASSERT_EQ(std::string(e.what()).rfind("fuzz: ", 0), 0u) << e.what();
      ++refused;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iteration << " (" << m.what << "): not a ModelFileError: " << e.what();
    }
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(refused, 2000);
}

}  // namespace
