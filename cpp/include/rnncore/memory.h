// Workspace memory: large blocks are recycled instead of being returned to the system.
//
// Why: a training step allocates its cache and workspaces (megabytes) and frees them when the
// step ends. glibc serves such blocks with mmap, or trims them off the heap when they are freed,
// so every call page-faults its memory in again and the kernel zero-fills each page: measured
// 2x the time of an RNN 48x4x500 training step and 1.4x of a GRU 64x8x200 one, in a process
// whose heap layout happened to allow trimming (importing PyTorch changed it, hiding the cost).
// Blocks of kMinPooledBytes or more are kept in a process-wide pool after release and handed
// out again to requests of up to the same size (never to one less than half of it), so a
// repeated call finds its pages mapped and warm. The pool holds at most cache_limit() bytes of
// free blocks (1 GiB, or RNNCORE_CACHE_LIMIT_MB from the environment, read once); empty_cache()
// returns them all to the system. Blocks in use are never counted against the limit.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace rnncore {
namespace memory {

constexpr std::size_t kAlignment = 64;                // a cache line, and an AVX-512 register
constexpr std::size_t kMinPooledBytes = 64 * 1024;    // smaller blocks: plain operator new

// A block of at least `bytes` bytes, kAlignment-aligned. Throws std::bad_alloc.
void* allocate(std::size_t bytes);
// Gives back a block from allocate() (nullptr: nothing happens).
void release(void* block) noexcept;
// Bytes of free blocks the pool holds now, and the most it will hold.
std::size_t cached_bytes() noexcept;
std::size_t cache_limit() noexcept;
// Returns every free block to the system; returns how many bytes that was.
std::size_t empty_cache() noexcept;

}  // namespace memory

// An allocator for workspace and cache arrays: memory from the pool above, and resize() leaves
// new elements uninitialised (the kernels write every element of their workspaces before
// reading it; zero-filling megabytes per call cost several percent of a training step).
template <typename T>
struct UninitializedAllocator {
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() noexcept = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(memory::allocate(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t) noexcept { memory::release(p); }

  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <typename U>
  bool operator==(const UninitializedAllocator<U>&) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const UninitializedAllocator<U>&) const noexcept {
    return false;
  }
};

// A workspace or cache array (see UninitializedAllocator).
template <typename S>
using Buffer = std::vector<S, UninitializedAllocator<S>>;

}  // namespace rnncore
