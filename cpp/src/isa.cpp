// What the build's kernels were compiled for (kernel_isa) and what the running CPU supports
// (cpu_isa_features); sequence.h.
#include <optional>
#include <string>
#include <vector>

#include "recurrent_gemm.h"
#include "rnncore/sequence.h"

namespace rnncore {

namespace {
// Every x86 extension that RNNCORE_ARCH can turn on, each with the compiler's macro for it.
struct X86Feature {
  const char* name;
  bool compiled_in;
};
constexpr X86Feature kX86Features[] = {
#if defined(__x86_64__) || defined(_M_X64)
    {"SSE2", true},  // part of x86-64
#ifdef __SSE3__
    {"SSE3", true},
#else
    {"SSE3", false},
#endif
#ifdef __SSSE3__
    {"SSSE3", true},
#else
    {"SSSE3", false},
#endif
#ifdef __SSE4_1__
    {"SSE4.1", true},
#else
    {"SSE4.1", false},
#endif
#ifdef __SSE4_2__
    {"SSE4.2", true},
#else
    {"SSE4.2", false},
#endif
#ifdef __POPCNT__
    {"POPCNT", true},
#else
    {"POPCNT", false},
#endif
#ifdef __AVX__
    {"AVX", true},
#else
    {"AVX", false},
#endif
#ifdef __AVX2__
    {"AVX2", true},
#else
    {"AVX2", false},
#endif
#ifdef __FMA__
    {"FMA", true},
#else
    {"FMA", false},
#endif
#ifdef __F16C__
    {"F16C", true},
#else
    {"F16C", false},
#endif
#ifdef __BMI2__
    {"BMI2", true},
#else
    {"BMI2", false},
#endif
#ifdef __AVX512F__
    {"AVX512F", true},
#else
    {"AVX512F", false},
#endif
#ifdef __AVX512BW__
    {"AVX512BW", true},
#else
    {"AVX512BW", false},
#endif
#ifdef __AVX512VL__
    {"AVX512VL", true},
#else
    {"AVX512VL", false},
#endif
#ifdef __AVX512DQ__
    {"AVX512DQ", true},
#else
    {"AVX512DQ", false},
#endif
#ifdef __AVX512CD__
    {"AVX512CD", true},
#else
    {"AVX512CD", false},
#endif
#endif
    {nullptr, false}};

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
// __builtin_cpu_supports takes only string literals, hence one line per extension.
bool cpu_supports(const std::string& name) {
  __builtin_cpu_init();
  if (name == "SSE2") return __builtin_cpu_supports("sse2");
  if (name == "SSE3") return __builtin_cpu_supports("sse3");
  if (name == "SSSE3") return __builtin_cpu_supports("ssse3");
  if (name == "SSE4.1") return __builtin_cpu_supports("sse4.1");
  if (name == "SSE4.2") return __builtin_cpu_supports("sse4.2");
  if (name == "POPCNT") return __builtin_cpu_supports("popcnt");
  if (name == "AVX") return __builtin_cpu_supports("avx");
  if (name == "AVX2") return __builtin_cpu_supports("avx2");
  if (name == "FMA") return __builtin_cpu_supports("fma");
  if (name == "F16C") return __builtin_cpu_supports("f16c");
  if (name == "BMI2") return __builtin_cpu_supports("bmi2");
  if (name == "AVX512F") return __builtin_cpu_supports("avx512f");
  if (name == "AVX512BW") return __builtin_cpu_supports("avx512bw");
  if (name == "AVX512VL") return __builtin_cpu_supports("avx512vl");
  if (name == "AVX512DQ") return __builtin_cpu_supports("avx512dq");
  if (name == "AVX512CD") return __builtin_cpu_supports("avx512cd");
  return false;
}
#define RNNCORE_CAN_ASK_CPU 1
#endif
}  // namespace

KernelIsa kernel_isa() {
  KernelIsa isa;
#if defined(__x86_64__) || defined(_M_X64)
  isa.arch = "x86-64";
#elif defined(__aarch64__)
  isa.arch = "aarch64";
#else
  isa.arch = "other";
#endif
  for (const X86Feature* f = kX86Features; f->name != nullptr; ++f) {
    if (f->compiled_in) isa.features.emplace_back(f->name);
  }
#if defined(__aarch64__) && defined(__ARM_NEON)
  isa.features.emplace_back("NEON");
#endif
  isa.vector_bytes = static_cast<int>(detail::PackedPanels<float>::kPacket * sizeof(float));
  isa.panel_floats = detail::PackedPanels<float>::kPanel;
  return isa;
}

std::optional<std::vector<std::string>> cpu_isa_features() {
#ifdef RNNCORE_CAN_ASK_CPU
  std::vector<std::string> supported;
  for (const X86Feature* f = kX86Features; f->name != nullptr; ++f) {
    if (cpu_supports(f->name)) supported.emplace_back(f->name);
  }
  return supported;
#else
  return std::nullopt;
#endif
}

}  // namespace rnncore
