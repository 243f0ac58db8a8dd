// keep_in_register(value): makes a loaded SIMD value opaque to the compiler, so that it stays in
// the register it was loaded into. A kernel that loads a weight packet once and multiplies it
// into several rows' accumulators wants one load; left alone, g++ 12 folds the load into every
// row's FMA as a memory operand, so R rows issue R loads of the same packet (on a Xeon the
// 2-row product then took 1.6x the time of the 1-row one: bench/README.md, "A Xeon VM").
#pragma once

namespace rnncore {
namespace detail {

template <typename T>
inline void keep_in_register(T& value) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+v"(value));  // any SSE/AVX/AVX-512 register
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(value));  // any FP/SIMD register
#else
  (void)value;
#endif
}

// hide_value(pointer): makes a pointer opaque to the compiler, so that loads through it are not
// moved out of the loop it is called in. The stream's one-pass step reads the same h for every
// slice of units; left alone, g++ 12 hoisted all H broadcasts of h out of the slice loop and
// spilled them to the stack (GRU 1 -> 32: twice the time of the panel step).
template <typename T>
inline void hide_value(T*& pointer) noexcept {
#if defined(__GNUC__)
  __asm__("" : "+r"(pointer));
#else
  (void)pointer;
#endif
}

}  // namespace detail
}  // namespace rnncore
