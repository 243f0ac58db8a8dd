// The case files that check_cpp_api.py writes and its drivers (cpp_api_check.cpp on the CPU,
// cuda_api_check.cpp on a GPU) read and answer: case.txt and raw arrays.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace api_check {

struct Setting {
  std::string name, plan, time_loop, wavefront;
  int threads = 1;
};

struct Case {
  std::string dir, dtype;
  int64_t steps = 0, batch = 0;
  bool has_state = false, has_lengths = false;
  std::vector<Setting> settings;
};

inline Case read_case(const std::string& dir) {
  std::ifstream in(dir + "/case.txt");
  if (!in) throw std::runtime_error("cannot read " + dir + "/case.txt");
  Case c;
  c.dir = dir;
  int has_state = 0, has_lengths = 0;
  in >> c.dtype >> c.steps >> c.batch >> has_state >> has_lengths;
  c.has_state = has_state != 0;
  c.has_lengths = has_lengths != 0;
  Setting s;
  while (in >> s.name >> s.threads >> s.plan >> s.time_loop >> s.wavefront) c.settings.push_back(s);
  if (!in.eof() || c.settings.empty()) throw std::runtime_error("bad case.txt in " + dir);
  return c;
}

template <typename T>
std::vector<T> read_array(const std::string& path, std::size_t count) {
  std::vector<T> v(count);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(T)))) {
    throw std::runtime_error("cannot read " + std::to_string(count) + " values from " + path);
  }
  return v;
}

template <typename T>
void write_array(const std::string& path, const std::vector<T>& v) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace api_check
