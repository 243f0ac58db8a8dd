// safetensors reading and writing (see io.h). The parser trusts nothing in the file: every length
// is checked against the bytes that are really there before it is used.
#include "rnncore/io.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <utility>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rnncore's model files are little-endian; this reader supports little-endian hosts only"
#endif

namespace rnncore {

namespace {

// ------------------------------------------------------------------ a strict, small JSON parser
// Enough JSON for safetensors headers: objects, arrays, strings (with escapes), non-negative
// integers, true/false/null. Fractions, exponents and negative numbers are refused (no header
// field needs them), as are duplicate keys and nesting deeper than kMaxDepth.
struct Json {
  enum class Type { Null, Bool, Integer, String, Array, Object } type = Type::Null;
  bool boolean = false;
  std::uint64_t integer = 0;
  std::string string;
  std::vector<Json> items;                             // Array
  std::vector<std::pair<std::string, Json>> members;   // Object, in file order
};

class JsonParser {
 public:
  JsonParser(const char* begin, const char* end, const std::string& source)
      : p_(begin), begin_(begin), end_(end), source_(source) {}

  Json parse_document() {
    skip_space();
    if (p_ == end_ || *p_ != '{') fail("the header is not a JSON object");
    Json value = parse_value(0);
    skip_space();
    if (p_ != end_) fail("unexpected bytes after the JSON object");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 32;

  [[noreturn]] void fail(const std::string& what) const {
    throw ModelFileError(source_, "bad header JSON at byte " + std::to_string(p_ - begin_) +
                                      " of the header: " + what);
  }
  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  void expect(char c) {
    skip_space();
    if (p_ == end_ || *p_ != c) fail(std::string("expected '") + c + "'");
    ++p_;
  }
  bool literal(const char* word) {
    const std::size_t n = std::strlen(word);
    if (static_cast<std::size_t>(end_ - p_) >= n && std::memcmp(p_, word, n) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    skip_space();
    if (p_ == end_) fail("unexpected end of the header");
    Json v;
    const char c = *p_;
    if (c == '{') {
      v.type = Json::Type::Object;
      ++p_;
      skip_space();
      if (p_ != end_ && *p_ == '}') {
        ++p_;
        return v;
      }
      while (true) {
        skip_space();
        if (p_ == end_ || *p_ != '"') fail("expected a string key");
        std::string key = parse_string();
        for (const auto& m : v.members) {
          if (m.first == key) fail("duplicate key \"" + key + "\"");
        }
        expect(':');
        Json member = parse_value(depth + 1);
        v.members.emplace_back(std::move(key), std::move(member));
        skip_space();
        if (p_ != end_ && *p_ == ',') {
          ++p_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = Json::Type::Array;
      ++p_;
      skip_space();
      if (p_ != end_ && *p_ == ']') {
        ++p_;
        return v;
      }
      while (true) {
        v.items.push_back(parse_value(depth + 1));
        skip_space();
        if (p_ != end_ && *p_ == ',') {
          ++p_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = Json::Type::String;
      v.string = parse_string();
      return v;
    }
    if (c >= '0' && c <= '9') {
      v.type = Json::Type::Integer;
      v.integer = parse_integer();
      return v;
    }
    if (literal("true")) {
      v.type = Json::Type::Bool;
      v.boolean = true;
      return v;
    }
    if (literal("false")) {
      v.type = Json::Type::Bool;
      return v;
    }
    if (literal("null")) return v;
    if (c == '-') fail("negative numbers are not valid here");
    fail(std::string("unexpected character '") + c + "'");
  }

  std::uint64_t parse_integer() {
    const char* start = p_;
    std::uint64_t value = 0;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
      const unsigned digit = static_cast<unsigned>(*p_ - '0');
      if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) fail("integer too large");
      value = value * 10 + digit;
      ++p_;
    }
    if (p_ - start > 1 && *start == '0') fail("integer with a leading zero");
    if (p_ != end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) fail("expected an integer");
    return value;
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::uint32_t parse_hex4() {
    if (end_ - p_ < 4) fail("truncated \\u escape");
    std::uint32_t cp = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      const char h = *p_;
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') cp |= static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') cp |= static_cast<std::uint32_t>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return cp;
  }

  std::string parse_string() {
    ++p_;  // the opening quote
    std::string out;
    while (true) {
      if (p_ == end_) fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(*p_++);
      if (c == '"') return out;
      if (c < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (p_ == end_) fail("unterminated escape");
      const char e = *p_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail("lone surrogate");
            p_ += 2;
            const std::uint32_t low = parse_hex4();
            if (low < 0xDC00 || low >= 0xE000) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("lone surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  const char* p_;
  const char* begin_;
  const char* end_;
  const std::string& source_;
};

// Bytes per element of every safetensors dtype name (0: unknown).
std::size_t dtype_size(const std::string& dtype) {
  static const std::pair<const char*, std::size_t> sizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
      {"I64", 8},  {"U64", 8}, {"F64", 8}};
  for (const auto& s : sizes) {
    if (dtype == s.first) return s.second;
  }
  return 0;
}

// The offset of the first byte that is not well-formed UTF-8 (no overlong forms, surrogates or
// code points past U+10FFFF), or n when all are. Error messages quote names from the header, so
// it must be valid text.
std::size_t invalid_utf8_at(const unsigned char* s, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    const std::uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return i;
    i += len;
  }
  return n;
}

std::uint64_t read_u64_le(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const Json& member(const Json& object, const std::string& key, Json::Type type,
                   const std::string& what, const std::string& source) {
  for (const auto& m : object.members) {
    if (m.first == key) {
      if (m.second.type != type) throw ModelFileError(source, what + ": \"" + key + "\" has the wrong JSON type");
      return m.second;
    }
  }
  throw ModelFileError(source, what + ": \"" + key + "\" is missing");
}

TensorEntry parse_entry(const std::string& name, const Json& value, std::uint64_t buffer_size,
                        const std::string& source) {
  const std::string what = "tensor \"" + name + "\"";
  if (value.type != Json::Type::Object) throw ModelFileError(source, what + " is not a JSON object");
  for (const auto& m : value.members) {
    if (m.first != "dtype" && m.first != "shape" && m.first != "data_offsets") {
      throw ModelFileError(source, what + ": unknown field \"" + m.first + "\"");
    }
  }
  TensorEntry entry;
  entry.dtype = member(value, "dtype", Json::Type::String, what, source).string;
  const std::size_t item = dtype_size(entry.dtype);
  if (item == 0) throw ModelFileError(source, what + ": unknown dtype \"" + entry.dtype + "\"");
  const Json& shape = member(value, "shape", Json::Type::Array, what, source);
  // The byte count saturates instead of overflowing; it must equal end - begin below.
  std::uint64_t bytes = item;
  bool empty = false;
  for (const Json& d : shape.items) {
    if (d.type != Json::Type::Integer) throw ModelFileError(source, what + ": shape holds a non-integer");
    if (d.integer > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw ModelFileError(source, what + ": shape dimension too large");
    }
    entry.shape.push_back(static_cast<int64_t>(d.integer));
    if (d.integer == 0) empty = true;
    else if (bytes > std::numeric_limits<std::uint64_t>::max() / d.integer) bytes = std::numeric_limits<std::uint64_t>::max();
    else bytes *= d.integer;
  }
  if (empty) bytes = 0;
  const Json& offsets = member(value, "data_offsets", Json::Type::Array, what, source);
  if (offsets.items.size() != 2 || offsets.items[0].type != Json::Type::Integer ||
      offsets.items[1].type != Json::Type::Integer) {
    throw ModelFileError(source, what + ": data_offsets must be two integers [begin, end]");
  }
  entry.begin = offsets.items[0].integer;
  entry.end = offsets.items[1].integer;
  if (entry.begin > entry.end || entry.end > buffer_size) {
    throw ModelFileError(source, what + ": data_offsets [" + std::to_string(entry.begin) + ", " +
                                     std::to_string(entry.end) + "] out of range (the buffer holds " +
                                     std::to_string(buffer_size) + " bytes)");
  }
  if (entry.end - entry.begin != bytes) {
    throw ModelFileError(source, what + ": " + std::to_string(entry.end - entry.begin) +
                                     " bytes for shape " + shape_string(entry.shape) + " and dtype " +
                                     entry.dtype + ", which need " + std::to_string(bytes));
  }
  return entry;
}

int64_t metadata_int(const std::map<std::string, std::string>& meta, const std::string& key,
                     const std::string& source) {
  auto it = meta.find(key);
  if (it == meta.end()) throw ModelFileError(source, "metadata: \"" + key + "\" is missing");
  const std::string& s = it->second;
  // Decimal digits only; at most 9 of them, so every size product below stays far from overflow.
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    throw ModelFileError(source, "metadata: \"" + key + "\" = \"" + s + "\" is not a positive integer");
  }
  const int64_t v = std::stoll(s);
  if (v <= 0) throw ModelFileError(source, "metadata: \"" + key + "\" = \"" + s + "\" is not a positive integer");
  return v;
}

bool metadata_bool(const std::map<std::string, std::string>& meta, const std::string& key,
                   const std::string& source, bool required = true) {
  auto it = meta.find(key);
  if (it == meta.end()) {
    if (required) throw ModelFileError(source, "metadata: \"" + key + "\" is missing");
    return false;
  }
  if (it->second == "true") return true;
  if (it->second == "false") return false;
  throw ModelFileError(source, "metadata: \"" + key + "\" = \"" + it->second + "\" is not true or false");
}

template <typename S>
const char* dtype_name() {
  return sizeof(S) == 4 ? "F32" : "F64";
}

}  // namespace

SafetensorsHeader parse_safetensors(const unsigned char* data, std::size_t size,
                                    const std::string& source) {
  if (size < 8) {
    throw ModelFileError(source, "truncated: " + std::to_string(size) +
                                     " bytes, fewer than the 8-byte header length");
  }
  const std::uint64_t n = read_u64_le(data);
  if (n > kMaxHeaderBytes) {
    throw ModelFileError(source, "header length " + std::to_string(n) + " is absurd (limit " +
                                     std::to_string(kMaxHeaderBytes) + ")");
  }
  if (n > size - 8) {
    throw ModelFileError(source, "truncated: the header says " + std::to_string(n) +
                                     " bytes of JSON but only " + std::to_string(size - 8) + " follow");
  }
  if (n < 2) throw ModelFileError(source, "header of " + std::to_string(n) + " bytes is too short");
  const std::size_t bad = invalid_utf8_at(data + 8, static_cast<std::size_t>(n));
  if (bad != n) {
    throw ModelFileError(source, "the header is not UTF-8 (invalid byte at byte " + std::to_string(bad) +
                                     " of the header)");
  }
  const char* json = reinterpret_cast<const char*>(data + 8);
  const Json root = JsonParser(json, json + n, source).parse_document();

  SafetensorsHeader header;
  header.buffer_offset = 8 + n;
  const std::uint64_t buffer_size = size - header.buffer_offset;
  for (const auto& m : root.members) {
    if (m.first == "__metadata__") {
      if (m.second.type != Json::Type::Object) throw ModelFileError(source, "__metadata__ is not a JSON object");
      for (const auto& kv : m.second.members) {
        if (kv.second.type != Json::Type::String) {
          throw ModelFileError(source, "__metadata__: \"" + kv.first + "\" is not a string");
        }
        header.metadata[kv.first] = kv.second.string;
      }
      continue;
    }
    header.tensors[m.first] = parse_entry(m.first, m.second, buffer_size, source);
  }
  // The tensors must tile the buffer: no overlap (two names for the same bytes), no hole and no
  // trailing bytes (data the header does not describe).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
  for (const auto& t : header.tensors) spans.emplace_back(t.second.begin, t.second.end);
  std::sort(spans.begin(), spans.end());
  std::uint64_t at = 0;
  for (const auto& s : spans) {
    if (s.first < at) throw ModelFileError(source, "tensors overlap at byte " + std::to_string(s.first) + " of the buffer");
    if (s.first > at) throw ModelFileError(source, "a hole in the buffer at byte " + std::to_string(at));
    at = s.second;
  }
  if (at != buffer_size) {
    throw ModelFileError(source, std::to_string(buffer_size - at) +
                                     " bytes after the last tensor that no tensor describes");
  }
  return header;
}

ModelConfig config_from_metadata(const SafetensorsHeader& header, const std::string& source) {
  const auto& meta = header.metadata;
  auto text = [&](const std::string& key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) throw ModelFileError(source, "metadata: \"" + key + "\" is missing (not an rnncore model file?)");
    return it->second;
  };
  if (text("format") != "rnncore") {
    throw ModelFileError(source, "metadata: format is \"" + text("format") + "\", not \"rnncore\"");
  }
  if (text("format_version") != "1") {
    throw ModelFileError(source, "metadata: format_version \"" + text("format_version") +
                                     "\" is not one this version reads (1)");
  }
  ModelConfig config;
  try {
    config.cell = cell_from_name(text("cell"));
  } catch (const std::invalid_argument&) {
    throw ModelFileError(source, "metadata: unknown cell \"" + text("cell") + "\"");
  }
  config.input_size = metadata_int(meta, "input_size", source);
  config.hidden_size = metadata_int(meta, "hidden_size", source);
  config.num_layers = metadata_int(meta, "num_layers", source);
  config.bias = metadata_bool(meta, "bias", source);
  config.bidirectional = metadata_bool(meta, "bidirectional", source);
  metadata_bool(meta, "batch_first", source, /*required=*/false);  // Python's; checked, not used
  return config;
}

template <typename S>
Model<S> load_model_from_memory(const unsigned char* data, std::size_t size, const std::string& source) {
  const SafetensorsHeader header = parse_safetensors(data, size, source);
  const ModelConfig config = config_from_metadata(header, source);
  // Shapes first (no element counts are computed from the metadata before they match the file).
  std::vector<ParameterSpec> specs;
  try {
    specs = parameter_specs(config);
  } catch (const std::invalid_argument& e) {
    throw ModelFileError(source, std::string("metadata: ") + e.what());
  }
  std::string dtype;
  for (const auto& spec : specs) {
    auto it = header.tensors.find(spec.name);
    if (it == header.tensors.end()) throw ModelFileError(source, "tensor \"" + spec.name + "\" is missing");
    const TensorEntry& e = it->second;
    if (e.dtype != "F32" && e.dtype != "F64") {
      throw ModelFileError(source, "tensor \"" + spec.name + "\" has dtype " + e.dtype +
                                       "; rnncore reads F32 and F64");
    }
    if (dtype.empty()) dtype = e.dtype;
    if (e.dtype != dtype) {
      throw ModelFileError(source, "tensors of two dtypes (" + dtype + " and " + e.dtype + ")");
    }
    if (e.shape != spec.shape) {
      throw ModelFileError(source, "tensor \"" + spec.name + "\" has shape " + shape_string(e.shape) +
                                       ", the hyper-parameters need " + shape_string(spec.shape));
    }
  }
  if (header.tensors.size() != specs.size()) {
    for (const auto& t : header.tensors) {
      if (std::none_of(specs.begin(), specs.end(), [&](const ParameterSpec& s) { return s.name == t.first; })) {
        throw ModelFileError(source, "unexpected tensor \"" + t.first + "\" for this " +
                                         cell_name(config.cell) + " model");
      }
    }
  }
  Model<S> model(config);
  const unsigned char* buffer = data + header.buffer_offset;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const TensorEntry& e = header.tensors.at(specs[i].name);
    std::vector<S>& dst = model.parameter(i);
    const unsigned char* src = buffer + e.begin;
    if (dtype == "F32") {
      for (std::size_t j = 0; j < dst.size(); ++j) {
        float v;
        std::memcpy(&v, src + 4 * j, 4);
        dst[j] = static_cast<S>(v);
      }
    } else {
      for (std::size_t j = 0; j < dst.size(); ++j) {
        double v;
        std::memcpy(&v, src + 8 * j, 8);
        dst[j] = static_cast<S>(v);
      }
    }
  }
  return model;
}

template <typename S>
Model<S> load_model(const std::string& path, std::uint64_t max_bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw ModelFileError(path, "no such file");
  if (!fs::is_regular_file(status)) throw ModelFileError(path, "not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelFileError(path, std::string("cannot open: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  if (end < 0) throw ModelFileError(path, "cannot tell the file size");
  const std::uint64_t size = static_cast<std::uint64_t>(end);
  if (size > max_bytes) {
    throw ModelFileError(path, "file is " + std::to_string(size) + " bytes, more than the limit of " +
                                   std::to_string(max_bytes));
  }
  in.seekg(0, std::ios::beg);
  std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    throw ModelFileError(path, "read error (the file changed while it was read?)");
  }
  return load_model_from_memory<S>(bytes.data(), bytes.size(), path);
}

// The header is compact JSON in a fixed key order, byte for byte what rnncore.save writes
// (json.dumps with separators=(",", ":")), so both writers produce identical files.
template <typename S>
std::vector<unsigned char> serialize_model(const Model<S>& model) {
  const ModelConfig& c = model.config();
  std::ostringstream json;
  json << "{\"__metadata__\":{\"format\":\"rnncore\",\"format_version\":\"1\",\"cell\":\""
       << cell_name(c.cell) << "\",\"input_size\":\"" << c.input_size << "\",\"hidden_size\":\""
       << c.hidden_size << "\",\"num_layers\":\"" << c.num_layers << "\",\"bias\":\""
       << (c.bias ? "true" : "false") << "\",\"bidirectional\":\""
       << (c.bidirectional ? "true" : "false") << "\",\"batch_first\":\"false\"}";
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < model.specs().size(); ++i) {
    const ParameterSpec& spec = model.specs()[i];
    const std::uint64_t bytes = static_cast<std::uint64_t>(spec.numel()) * sizeof(S);
    json << ",\"" << spec.name << "\":{\"dtype\":\"" << dtype_name<S>() << "\",\"shape\":[";
    for (std::size_t d = 0; d < spec.shape.size(); ++d) json << (d ? "," : "") << spec.shape[d];
    json << "],\"data_offsets\":[" << offset << "," << offset + bytes << "]}";
    offset += bytes;
  }
  json << "}";
  std::string header = json.str();
  while ((8 + header.size()) % 8 != 0) header += ' ';  // aligns the buffer to 8 bytes
  std::vector<unsigned char> out(8 + header.size() + offset);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<unsigned char>(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  unsigned char* dst = out.data() + 8 + header.size();
  for (std::size_t i = 0; i < model.specs().size(); ++i) {
    const std::vector<S>& values = model.parameter(i);
    std::memcpy(dst, values.data(), values.size() * sizeof(S));
    dst += values.size() * sizeof(S);
  }
  return out;
}

template <typename S>
void save_model(const std::string& path, const Model<S>& model) {
  const std::vector<unsigned char> bytes = serialize_model(model);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw ModelFileError(path, std::string("cannot write: ") + std::strerror(errno));
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw ModelFileError(path, "write error");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw ModelFileError(path, "cannot rename the written file into place: " + ec.message());
  }
}

template Model<float> load_model<float>(const std::string&, std::uint64_t);
template Model<double> load_model<double>(const std::string&, std::uint64_t);
template Model<float> load_model_from_memory<float>(const unsigned char*, std::size_t, const std::string&);
template Model<double> load_model_from_memory<double>(const unsigned char*, std::size_t, const std::string&);
template void save_model<float>(const std::string&, const Model<float>&);
template void save_model<double>(const std::string&, const Model<double>&);
template std::vector<unsigned char> serialize_model<float>(const Model<float>&);
template std::vector<unsigned char> serialize_model<double>(const Model<double>&);

}  // namespace rnncore
