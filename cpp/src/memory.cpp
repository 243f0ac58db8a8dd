// The workspace pool of memory.h.
#include "rnncore/memory.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#include "address_sanitizer.h"

namespace rnncore {
namespace memory {
namespace {

constexpr std::size_t kGranule = 64 * 1024;  // pooled sizes are rounded up to this

std::size_t limit_from_environment() noexcept {
  const char* text = std::getenv("RNNCORE_CACHE_LIMIT_MB");
  if (text == nullptr || *text == '\0') return std::size_t(1) << 30;
  char* end = nullptr;
  const unsigned long long mb = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0') return std::size_t(1) << 30;  // unparsable: the default
  return static_cast<std::size_t>(mb) << 20;
}

struct Pool {
  std::mutex mutex;
  std::multimap<std::size_t, void*> free_blocks;     // size -> block
  std::unordered_map<void*, std::size_t> in_use;     // pooled blocks handed out -> size
  std::size_t cached = 0;
  const std::size_t limit = limit_from_environment();
};

// Never destroyed: arrays released from other static destructors at exit still find it.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// AddressSanitizer sees a pooled block as one malloc'ed block of the rounded size for as long as
// the pool holds it, so a read past the bytes asked for, or of a block after its release, would
// go unseen; the pool marks those bytes itself (no code without ASan).
void mark_in_use(void* block, std::size_t bytes, std::size_t size) noexcept {
#ifdef RNNCORE_ASAN
  ASAN_UNPOISON_MEMORY_REGION(block, bytes);
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(block) + bytes, size - bytes);
#else
  (void)block, (void)bytes, (void)size;
#endif
}
void mark_free(void* block, std::size_t size) noexcept {
#ifdef RNNCORE_ASAN
  ASAN_POISON_MEMORY_REGION(block, size);
#else
  (void)block, (void)size;
#endif
}

void* system_allocate(std::size_t bytes) noexcept { return std::aligned_alloc(kAlignment, bytes); }

void system_free(void* block, std::size_t size) noexcept {
  mark_in_use(block, size, size);  // std::free's own bookkeeping takes over
  std::free(block);
}

// Frees the largest free blocks until at most `target` bytes stay cached. Caller holds the lock.
void shrink_locked(Pool& p, std::size_t target) noexcept {
  while (p.cached > target && !p.free_blocks.empty()) {
    auto largest = std::prev(p.free_blocks.end());
    p.cached -= largest->first;
    system_free(largest->second, largest->first);
    p.free_blocks.erase(largest);
  }
}

}  // namespace

void* allocate(std::size_t bytes) {
  if (bytes < kMinPooledBytes) {
    return ::operator new(bytes == 0 ? 1 : bytes, std::align_val_t(kAlignment));
  }
  if (bytes > static_cast<std::size_t>(-1) - kGranule) throw std::bad_alloc();
  const std::size_t size = (bytes + kGranule - 1) / kGranule * kGranule;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  auto it = p.free_blocks.lower_bound(size);
  if (it != p.free_blocks.end() && it->first / 2 <= size) {
    void* block = it->second;
    const std::size_t block_size = it->first;
    p.in_use.emplace(block, block_size);  // first: if this throws, the pool is unchanged
    p.cached -= block_size;
    p.free_blocks.erase(it);
    mark_in_use(block, bytes, block_size);
    return block;
  }
  void* block = system_allocate(size);
  if (block == nullptr) {  // the cached blocks may be what the system is missing
    shrink_locked(p, 0);
    block = system_allocate(size);
    if (block == nullptr) throw std::bad_alloc();
  }
  try {
    p.in_use.emplace(block, size);
  } catch (...) {
    std::free(block);
    throw;
  }
  mark_in_use(block, bytes, size);
  return block;
}

void release(void* block) noexcept {
  if (block == nullptr) return;
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    auto it = p.in_use.find(block);
    if (it != p.in_use.end()) {
      const std::size_t size = it->second;
      p.in_use.erase(it);
      if (size > p.limit) {
        system_free(block, size);
        return;
      }
      try {
        p.free_blocks.emplace(size, block);
      } catch (...) {  // no room to remember it: give it back instead
        system_free(block, size);
        return;
      }
      mark_free(block, size);
      p.cached += size;
      shrink_locked(p, p.limit);
      return;
    }
  }
  ::operator delete(block, std::align_val_t(kAlignment));
}

std::size_t cached_bytes() noexcept {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.cached;
}

std::size_t cache_limit() noexcept { return pool().limit; }

std::size_t empty_cache() noexcept {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  const std::size_t freed = p.cached;
  shrink_locked(p, 0);
  return freed;
}

}  // namespace memory
}  // namespace rnncore
