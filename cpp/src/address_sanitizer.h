// RNNCORE_ASAN: defined when this translation unit is built with AddressSanitizer (GCC defines
// __SANITIZE_ADDRESS__, Clang answers __has_feature), which then also brings its interface for
// marking memory (ASAN_POISON_MEMORY_REGION, __asan_address_is_poisoned).
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define RNNCORE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RNNCORE_ASAN 1
#endif
#endif

#ifdef RNNCORE_ASAN
#include <sanitizer/asan_interface.h>
#endif
