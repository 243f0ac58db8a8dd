// Sizes that come from a caller (batch_size, hidden_size, num_layers, steps) are multiplied into
// element and byte counts. In int64 arithmetic a large enough size wraps around, an array is then
// allocated for the wrapped count and written far past its end (a Stream of batch_size 2^62 did
// exactly that). Every such product goes through these helpers instead: an overflow, or an array
// larger than any object can be (kMaxArrayBytes), throws std::length_error naming the factors,
// before anything is allocated. A size that passes but that the system cannot supply fails
// later with std::bad_alloc; AllocationError is a std::bad_alloc that says what it was for.
//
// From Python (pybind11) std::length_error arrives as ValueError and std::bad_alloc as
// MemoryError, with these messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

namespace rnncore {

// The largest size (of any dimension) the library takes: sizes are int64_t throughout.
constexpr int64_t kMaxSize = std::numeric_limits<int64_t>::max();
// The most bytes one array may hold: the largest object C++ can address with ptrdiff_t (and what
// std::vector's max_size allows). Nothing larger can be allocated anywhere.
constexpr int64_t kMaxArrayBytes = static_cast<int64_t>(std::numeric_limits<std::ptrdiff_t>::max());

namespace detail {
[[noreturn]] inline void throw_size_overflow(const std::string& what, const std::string& factors) {
  throw std::length_error("rnncore: " + what + " = " + factors +
                          " does not fit in 64 bits: more than any array can hold");
}
}  // namespace detail

// a * b for sizes a, b >= 0. `what` names the product, in the caller's words and with the
// argument it comes from ("batch_size * scratch values per row"); it is read only on overflow.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  if (a < 0 || b < 0) {
    throw std::length_error(std::string("rnncore: ") + what + ": negative size " +
                            std::to_string(a < 0 ? a : b));
  }
  if (b != 0 && a > kMaxSize / b) {
    detail::throw_size_overflow(what, std::to_string(a) + " * " + std::to_string(b));
  }
  return a * b;
}

// The product of several sizes, each >= 0 (see checked_mul).
inline int64_t checked_product(std::initializer_list<int64_t> sizes, const char* what) {
  for (int64_t s : sizes) {
    if (s < 0) {
      throw std::length_error(std::string("rnncore: ") + what + ": negative size " +
                              std::to_string(s));
    }
    if (s == 0) return 0;
  }
  int64_t product = 1;
  for (int64_t s : sizes) {
    if (product > kMaxSize / s) {
      std::string factors;
      for (int64_t f : sizes) factors += (factors.empty() ? "" : " * ") + std::to_string(f);
      detail::throw_size_overflow(what, factors);
    }
    product *= s;
  }
  return product;
}

// a + b for sizes a, b >= 0 (see checked_mul).
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  if (a < 0 || b < 0 || a > kMaxSize - b) {
    throw std::length_error(std::string("rnncore: ") + what + " = " + std::to_string(a) + " + " +
                            std::to_string(b) + " does not fit in 64 bits");
  }
  return a + b;
}

// `count` elements of T as a std::size_t, after checking that their bytes fit kMaxArrayBytes.
template <typename T>
std::size_t checked_elements(int64_t count, const char* what) {
  constexpr int64_t most = kMaxArrayBytes / static_cast<int64_t>(sizeof(T));
  if (count < 0 || count > most) {
    throw std::length_error("rnncore: " + std::string(what) + ": " + std::to_string(count) +
                            " elements of " + std::to_string(sizeof(T)) +
                            " bytes are more than any array can hold (" +
                            std::to_string(kMaxArrayBytes) + " bytes)");
  }
  return static_cast<std::size_t>(count);
}

// A std::bad_alloc that names what was being allocated and how many bytes it needed.
class AllocationError : public std::bad_alloc {
 public:
  AllocationError(const std::string& what, int64_t bytes)
      : message_("rnncore: cannot allocate " + std::to_string(bytes) + " bytes for " + what) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

}  // namespace rnncore
