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
#include <set>
#include <sstream>
#include <string_view>
#include <utility>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rnncore's model files are little-endian; this reader supports little-endian hosts only"
#endif

namespace rnncore {

namespace {

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

// "[a, b, ...]", cut short past 80 characters: a header may hold a shape of millions of entries.
template <typename Int>
std::string shape_string(const std::vector<Int>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (s.size() > 80) return s + ", ...]";
    s += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return s + "]";
}

// Two lowercase hex digits.
std::string hex_byte(unsigned char b) {
  static const char digits[] = "0123456789abcdef";
  return {digits[b >> 4], digits[b & 15]};
}

// A string from the header as error messages quote it: in quotes, control characters escaped as
// in JSON (a NUL would end what() early), cut after about 60 bytes on a UTF-8 boundary (a name
// may be megabytes long). The header is valid UTF-8, so the message is too.
std::string in_quotes(const std::string& text) {
  constexpr std::size_t kMaxBytes = 60;
  std::string out = "\"";
  std::size_t i = 0;
  for (; i < text.size() && out.size() < kMaxBytes; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') out += std::string("\\") + static_cast<char>(c);
    else if (c < 0x20) out += "\\u00" + hex_byte(c);
    else out += static_cast<char>(c);
  }
  while (i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) out += text[i++];
  return out + (i < text.size() ? "...\"" : "\"");
}

// One byte of the header for an error message: itself when printable ASCII, else its value (a lone
// byte of a multi-byte character would make the message invalid UTF-8).
std::string describe_byte(char c) {
  const auto b = static_cast<unsigned char>(c);
  if (b >= 0x20 && b < 0x7F) return std::string("'") + c + "'";
  return "byte 0x" + hex_byte(b);
}

// A tensor's fields as the header spells them, before they are checked.
struct EntryFields {
  bool has_dtype = false, has_shape = false, has_offsets = false;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::vector<std::uint64_t> offsets;
};

// Checks one tensor's fields against the buffer (known dtype, offsets in range, exactly the bytes
// its shape and dtype need).
TensorEntry checked_entry(const std::string& what, EntryFields fields, std::uint64_t buffer_size,
                          const std::string& source) {
  for (const auto& [present, key] : {std::pair{fields.has_dtype, "dtype"}, std::pair{fields.has_shape, "shape"},
                                     std::pair{fields.has_offsets, "data_offsets"}}) {
    if (!present) throw ModelFileError(source, what + ": \"" + key + "\" is missing");
  }
  TensorEntry entry;
  entry.dtype = std::move(fields.dtype);
  const std::size_t item = dtype_size(entry.dtype);
  if (item == 0) throw ModelFileError(source, what + ": unknown dtype " + in_quotes(entry.dtype));
  // The byte count saturates instead of overflowing; it must equal end - begin below.
  std::uint64_t bytes = item;
  bool empty = false;
  for (const std::uint64_t d : fields.shape) {
    if (d > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw ModelFileError(source, what + ": shape dimension too large");
    }
    entry.shape.push_back(static_cast<int64_t>(d));
    if (d == 0) empty = true;
    else if (bytes > std::numeric_limits<std::uint64_t>::max() / d) bytes = std::numeric_limits<std::uint64_t>::max();
    else bytes *= d;
  }
  if (empty) bytes = 0;
  if (fields.offsets.size() != 2) {
    throw ModelFileError(source, what + ": data_offsets must be two integers [begin, end]");
  }
  entry.begin = fields.offsets[0];
  entry.end = fields.offsets[1];
  if (entry.begin > entry.end || entry.end > buffer_size) {
    throw ModelFileError(source, what + ": data_offsets [" + std::to_string(entry.begin) + ", " +
                                     std::to_string(entry.end) + "] out of range (the buffer holds " +
                                     std::to_string(buffer_size) + " bytes)");
  }
  if (entry.end - entry.begin != bytes) {
    const std::string need = bytes <= buffer_size ? "need " + std::to_string(bytes)
                                                  : "need more than the " + std::to_string(buffer_size) +
                                                        " the buffer holds";
    throw ModelFileError(source, what + ": " + std::to_string(entry.end - entry.begin) + " bytes for shape " +
                                     shape_string(entry.shape) + " and dtype " + entry.dtype + ", which " + need);
  }
  return entry;
}

// ------------------------------------------------------------------ the header's JSON
// Enough JSON for safetensors headers: objects, arrays, strings (with escapes), integers in
// 0 ... 2^64 - 1, true/false/null. Fractions, exponents, negative numbers ("-0" included) and
// lone surrogates are refused, as the safetensors reference refuses them; so are duplicate keys
// and nesting deeper than kMaxDepth. Python's reader (rnncore/io.py) accepts exactly the same.
//
// The text is read twice and no document tree is built: check_syntax() checks all of it, so a
// syntax error is reported as one wherever it is, then read_header() walks the now well-formed
// text again, reading the safetensors schema straight into a SafetensorsHeader. Memory stays a
// few bytes per header byte (a tree took ~80 for an array of zeros) and time linear but for
// sorting each object's keys to find duplicates.
class HeaderJson {
 public:
  HeaderJson(const char* begin, const char* end, const std::string& source)
      : p_(begin), begin_(begin), end_(end), source_(source) {}

  void check_syntax() {
    p_ = begin_;
    skip_space();
    if (p_ == end_ || *p_ != '{') fail("the header is not a JSON object");
    check_value(0);
    skip_space();
    if (p_ != end_) fail("unexpected bytes after the JSON object");
  }

  // Only after check_syntax(): the object's members as tensors and __metadata__.
  void read_header(SafetensorsHeader& header, std::uint64_t buffer_size) {
    p_ = begin_;
    expect('{');
    if (consume('}')) return;
    do {
      std::string name = read_key();
      if (name == "__metadata__") {
        read_metadata(header.metadata);
      } else {
        const std::string what = "tensor " + in_quotes(name);
        TensorEntry entry = checked_entry(what, read_entry_fields(what), buffer_size, source_);
        header.tensors.emplace(std::move(name), std::move(entry));
      }
    } while (consume(','));
    expect('}');
  }

 private:
  static constexpr int kMaxDepth = 32;
  // Where a key's decoded text lies in key_text_, and where the key starts in the header.
  struct KeySpan {
    std::uint32_t offset, length, at;
  };
  static_assert(kMaxHeaderBytes < (std::uint64_t(1) << 32), "KeySpan holds header offsets in 32 bits");

  [[noreturn]] void fail(const std::string& what) const { fail_at(static_cast<std::size_t>(p_ - begin_), what); }
  [[noreturn]] void fail_at(std::size_t at, const std::string& what) const {
    throw ModelFileError(source_, "bad header JSON at byte " + std::to_string(at) + " of the header: " + what);
  }
  [[noreturn]] void schema_error(const std::string& what) const { throw ModelFileError(source_, what); }

  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  // The next non-space character (0 at the end).
  char peek() {
    skip_space();
    return p_ == end_ ? '\0' : *p_;
  }
  bool consume(char c) {
    if (peek() != c) return false;
    ++p_;
    return true;
  }
  void expect(char c) {
    if (!consume(c)) fail(std::string("expected '") + c + "'");
  }
  bool literal(const char* word) {
    const std::size_t n = std::strlen(word);
    if (static_cast<std::size_t>(end_ - p_) >= n && std::memcmp(p_, word, n) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- pass 1: syntax
  void check_value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    const char c = peek();
    if (p_ == end_) fail("unexpected end of the header");
    if (c == '{') return check_object(depth);
    if (c == '[') return check_array(depth);
    if (c == '"') {
      scratch_.clear();
      return parse_string(scratch_);
    }
    if (c >= '0' && c <= '9') {
      parse_integer();
      return;
    }
    if (literal("true") || literal("false") || literal("null")) return;
    if (c == '-') fail("negative numbers are not valid here");
    fail("unexpected " + describe_byte(c));
  }

  void check_array(int depth) {
    ++p_;
    if (consume(']')) return;
    do {
      check_value(depth + 1);
    } while (consume(','));
    expect(']');
  }

  void check_object(int depth) {
    ++p_;
    const std::size_t first_key = keys_.size();
    const std::size_t text_mark = key_text_.size();
    if (!consume('}')) {
      do {
        if (peek() != '"') fail("expected a string key");
        const auto at = static_cast<std::uint32_t>(p_ - begin_);
        const std::size_t start = key_text_.size();
        parse_string(key_text_);
        keys_.push_back({static_cast<std::uint32_t>(start), static_cast<std::uint32_t>(key_text_.size() - start), at});
        expect(':');
        check_value(depth + 1);
      } while (consume(','));
      expect('}');
    }
    check_unique_keys(first_key);
    keys_.resize(first_key);
    key_text_.resize(text_mark);
  }

  // Reports the duplicate that comes first in the header, as a one-pass check would.
  void check_unique_keys(std::size_t first_key) {
    if (keys_.size() - first_key < 2) return;
    auto text = [this](const KeySpan& k) { return std::string_view(key_text_).substr(k.offset, k.length); };
    const auto begin = keys_.begin() + static_cast<std::ptrdiff_t>(first_key);
    std::sort(begin, keys_.end(), [&](const KeySpan& a, const KeySpan& b) {
      const int order = text(a).compare(text(b));
      return order != 0 ? order < 0 : a.at < b.at;
    });
    const KeySpan* duplicate = nullptr;
    for (auto k = begin + 1; k != keys_.end(); ++k) {
      if (text(*k) == text(*(k - 1)) && (duplicate == nullptr || k->at < duplicate->at)) duplicate = &*k;
    }
    if (duplicate != nullptr) fail_at(duplicate->at, "duplicate key \"" + std::string(text(*duplicate)) + "\"");
  }

  // ---------------------------------------------------------------- pass 2: the schema
  std::string read_key() {
    std::string key;
    peek();
    parse_string(key);
    expect(':');
    return key;
  }

  void read_metadata(std::map<std::string, std::string>& metadata) {
    if (peek() != '{') schema_error("__metadata__ is not a JSON object");
    ++p_;
    if (consume('}')) return;
    do {
      std::string key = read_key();
      if (peek() != '"') schema_error("__metadata__: " + in_quotes(key) + " is not a string");
      std::string value;
      parse_string(value);
      metadata.emplace(std::move(key), std::move(value));
    } while (consume(','));
    expect('}');
  }

  EntryFields read_entry_fields(const std::string& what) {
    if (peek() != '{') schema_error(what + " is not a JSON object");
    ++p_;
    EntryFields fields;
    if (consume('}')) return fields;
    do {
      const std::string key = read_key();
      const char next = peek();
      auto require = [&](bool ok) {
        if (!ok) schema_error(what + ": " + in_quotes(key) + " has the wrong JSON type");
      };
      if (key == "dtype") {
        require(next == '"');
        parse_string(fields.dtype);
        fields.has_dtype = true;
      } else if (key == "shape") {
        require(next == '[');
        fields.shape = read_integers(what + ": shape holds a non-integer", std::numeric_limits<std::size_t>::max());
        fields.has_shape = true;
      } else if (key == "data_offsets") {
        require(next == '[');
        fields.offsets = read_integers(what + ": data_offsets must be two integers [begin, end]", 2);
        fields.has_offsets = true;
      } else {
        schema_error(what + ": unknown field " + in_quotes(key));
      }
    } while (consume(','));
    expect('}');
    return fields;
  }

  std::vector<std::uint64_t> read_integers(const std::string& problem, std::size_t max_count) {
    std::vector<std::uint64_t> values;
    ++p_;  // '['
    if (consume(']')) return values;
    do {
      const char c = peek();
      if (c < '0' || c > '9' || values.size() == max_count) schema_error(problem);
      values.push_back(parse_integer());
    } while (consume(','));
    expect(']');
    return values;
  }

  // ---------------------------------------------------------------- tokens
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

  // Appends the decoded string that starts at the opening quote under p_.
  void parse_string(std::string& out) {
    ++p_;  // the opening quote
    while (true) {
      if (p_ == end_) fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(*p_++);
      if (c == '"') return;
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
          fail("bad escape: backslash and " + describe_byte(e));
      }
    }
  }

  const char* p_;
  const char* begin_;
  const char* end_;
  const std::string& source_;
  std::string scratch_;          // string values, checked and dropped
  std::string key_text_;         // the keys of the objects open at p_, decoded, back to back
  std::vector<KeySpan> keys_;    // and where each lies
};

int64_t metadata_int(const std::map<std::string, std::string>& meta, const std::string& key,
                     const std::string& source) {
  auto it = meta.find(key);
  if (it == meta.end()) throw ModelFileError(source, "metadata: \"" + key + "\" is missing");
  const std::string& s = it->second;
  // Decimal digits only; at most 9 of them, so every size product below stays far from overflow.
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    throw ModelFileError(source, "metadata: \"" + key + "\" = " + in_quotes(s) + " is not a positive integer");
  }
  const int64_t v = std::stoll(s);
  if (v <= 0) throw ModelFileError(source, "metadata: \"" + key + "\" = " + in_quotes(s) + " is not a positive integer");
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
  throw ModelFileError(source, "metadata: \"" + key + "\" = " + in_quotes(it->second) + " is not true or false");
}

std::vector<ParameterSpec> specs_or_file_error(const ModelConfig& config, const std::string& source) {
  try {
    return parameter_specs(config);
  } catch (const std::logic_error& e) {  // invalid_argument, length_error (sizes overflowing)
    throw ModelFileError(source, std::string("metadata: ") + e.what());
  }
}

// The parameters the hyper-parameters need, each present in the header and nothing else there.
// They are listed only once their count is known to be no more than the header holds: a 1 kB file
// claiming ten million layers fails after as many names as it has tensors, instead of after
// listing ten million layers' worth (seconds and gigabytes).
std::vector<ParameterSpec> expected_specs(const ModelConfig& config, const SafetensorsHeader& header,
                                          const std::string& source) {
  const auto present = [&](const ParameterSpec& spec) { return header.tensors.count(spec.name) != 0; };
  const int64_t per_layer = config.directions() * (config.bias ? 4 : 2);
  const auto held = static_cast<int64_t>(header.tensors.size());
  // num_layers has at most 9 digits (metadata_int): no overflow.
  const int64_t needed = config.num_layers * per_layer;
  if (needed > held) {
    // Names are layer-major, so the first held + 1 of them include one the header lacks.
    ModelConfig prefix = config;
    prefix.num_layers = std::min(config.num_layers, held / per_layer + 1);
    for (const ParameterSpec& spec : specs_or_file_error(prefix, source)) {
      if (!present(spec)) {
        throw ModelFileError(source, "tensor \"" + spec.name + "\" is missing (num_layers = " +
                                         std::to_string(config.num_layers) + " needs " + std::to_string(needed) +
                                         " tensors, the file holds " + std::to_string(held) + ")");
      }
    }
  }
  std::vector<ParameterSpec> specs = specs_or_file_error(config, source);
  for (const ParameterSpec& spec : specs) {
    if (!present(spec)) throw ModelFileError(source, "tensor \"" + spec.name + "\" is missing");
  }
  if (header.tensors.size() != specs.size()) {
    std::set<std::string> names;
    for (const ParameterSpec& spec : specs) names.insert(spec.name);
    for (const auto& t : header.tensors) {
      if (names.count(t.first) == 0) {
        throw ModelFileError(source, "unexpected tensor " + in_quotes(t.first) + " for this " +
                                         cell_name(config.cell) + " model");
      }
    }
  }
  return specs;
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
  HeaderJson reader(json, json + n, source);
  reader.check_syntax();
  SafetensorsHeader header;
  header.buffer_offset = 8 + n;
  reader.read_header(header, size - header.buffer_offset);
  const std::uint64_t buffer_size = size - header.buffer_offset;
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
    throw ModelFileError(source, "metadata: format is " + in_quotes(text("format")) + ", not \"rnncore\"");
  }
  if (text("format_version") != "1") {
    throw ModelFileError(source, "metadata: format_version " + in_quotes(text("format_version")) +
                                     " is not one this version reads (1)");
  }
  ModelConfig config;
  try {
    config.cell = cell_from_name(text("cell"));
  } catch (const std::invalid_argument&) {
    throw ModelFileError(source, "metadata: unknown cell " + in_quotes(text("cell")));
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
  // Names and shapes first: no element count is computed from the metadata before it matches the file.
  const std::vector<ParameterSpec> specs = expected_specs(config, header, source);
  std::string dtype;
  for (const auto& spec : specs) {
    const TensorEntry& e = header.tensors.at(spec.name);
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
std::vector<unsigned char> serialize_model(const Model<S>& model, bool batch_first) {
  const ModelConfig& c = model.config();
  std::ostringstream json;
  json << "{\"__metadata__\":{\"format\":\"rnncore\",\"format_version\":\"1\",\"cell\":\""
       << cell_name(c.cell) << "\",\"input_size\":\"" << c.input_size << "\",\"hidden_size\":\""
       << c.hidden_size << "\",\"num_layers\":\"" << c.num_layers << "\",\"bias\":\""
       << (c.bias ? "true" : "false") << "\",\"bidirectional\":\""
       << (c.bidirectional ? "true" : "false") << "\",\"batch_first\":\""
       << (batch_first ? "true" : "false") << "\"}";
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
void save_model(const std::string& path, const Model<S>& model, bool batch_first) {
  const std::vector<unsigned char> bytes = serialize_model(model, batch_first);
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
template void save_model<float>(const std::string&, const Model<float>&, bool);
template void save_model<double>(const std::string&, const Model<double>&, bool);
template std::vector<unsigned char> serialize_model<float>(const Model<float>&, bool);
template std::vector<unsigned char> serialize_model<double>(const Model<double>&, bool);

}  // namespace rnncore
