// The workspace pool (memory.h) and the time loop's StepBarrier (parallel.h).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "address_sanitizer.h"  // cpp/src
#include "rnncore/memory.h"
#include "parallel.h"

namespace {

using rnncore::Buffer;
namespace memory = rnncore::memory;

TEST(WorkspacePool, BlocksAreAlignedAndWritable) {
  for (std::size_t bytes : {std::size_t(1), std::size_t(1000), memory::kMinPooledBytes - 1,
                            memory::kMinPooledBytes, std::size_t(3) << 20}) {
    void* block = memory::allocate(bytes);
    ASSERT_NE(block, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(block) % memory::kAlignment, 0u) << bytes;
    std::memset(block, 0xab, bytes);
    memory::release(block);
  }
  memory::release(nullptr);  // a no-op
}

TEST(WorkspacePool, ReleasedLargeBlockIsReusedForTheSameSize) {
  memory::empty_cache();
  const std::size_t bytes = std::size_t(2) << 20;
  void* first = memory::allocate(bytes);
  memory::release(first);
  EXPECT_GE(memory::cached_bytes(), bytes);
  void* second = memory::allocate(bytes);
  EXPECT_EQ(second, first);  // warm pages, not a fresh mapping
  EXPECT_EQ(memory::cached_bytes(), 0u);
  memory::release(second);
}

TEST(WorkspacePool, SmallRequestDoesNotTakeAMuchLargerBlock) {
  memory::empty_cache();
  void* big = memory::allocate(std::size_t(8) << 20);
  memory::release(big);
  void* small = memory::allocate(std::size_t(1) << 20);  // less than half of the cached block
  EXPECT_NE(small, big);
  EXPECT_GE(memory::cached_bytes(), std::size_t(8) << 20);
  memory::release(small);
}

TEST(WorkspacePool, EmptyCacheReturnsEverything) {
  void* a = memory::allocate(std::size_t(1) << 20);
  void* b = memory::allocate(std::size_t(3) << 20);
  memory::release(a);
  memory::release(b);
  const std::size_t cached = memory::cached_bytes();
  EXPECT_GE(cached, std::size_t(4) << 20);
  EXPECT_EQ(memory::empty_cache(), cached);
  EXPECT_EQ(memory::cached_bytes(), 0u);
  EXPECT_LE(memory::cached_bytes(), memory::cache_limit());
}

TEST(WorkspacePool, BufferKeepsValuesAcrossGrowth) {
  Buffer<float> v(10, 1.5f);
  v.resize(1 << 20);  // moves to a pooled block
  for (int i = 0; i < 10; ++i) EXPECT_EQ(v[i], 1.5f);
  Buffer<double> zeros(1 << 16, 0.0);
  for (double z : zeros) ASSERT_EQ(z, 0.0);
}

// The pool keeps a released block allocated, so AddressSanitizer alone would let a workspace be
// read after its release or past the bytes asked for (up to the pool's rounding): the pool marks
// those bytes off limits itself.
TEST(WorkspacePool, AddressSanitizerSeesReleasedAndExcessBytesOffLimits) {
#ifndef RNNCORE_ASAN
  GTEST_SKIP() << "not an AddressSanitizer build";
#else
  memory::empty_cache();
  const std::size_t bytes = memory::kMinPooledBytes + 100;  // rounded up to 128 KiB in the pool
  auto* block = static_cast<char*>(memory::allocate(bytes));
  EXPECT_EQ(__asan_region_is_poisoned(block, bytes), nullptr);
  EXPECT_TRUE(__asan_address_is_poisoned(block + bytes));
  memory::release(block);
  EXPECT_TRUE(__asan_address_is_poisoned(block));
  EXPECT_TRUE(__asan_address_is_poisoned(block + bytes - 1));
  const std::size_t fewer = memory::kMinPooledBytes;  // half the block: it is handed out again
  auto* again = static_cast<char*>(memory::allocate(fewer));
  ASSERT_EQ(again, block);
  EXPECT_EQ(__asan_region_is_poisoned(again, fewer), nullptr);
  EXPECT_TRUE(__asan_address_is_poisoned(again + fewer));
  memory::release(again);
  memory::empty_cache();
#endif
}

// Each step every thread writes its slot, waits, then checks every slot: a barrier that let a
// thread through early would show a stale value.
TEST(StepBarrier, OrdersTheStepsOfATeam) {
  constexpr int kSteps = 2000;
  for (int threads : {1, 2, 3}) {
    std::vector<std::atomic<int>> slots(static_cast<std::size_t>(threads));
    for (auto& s : slots) s.store(-1);
    std::atomic<int> errors{0};
    rnncore::parallel_team(threads, [&](int thread, int team, rnncore::StepBarrier& barrier) {
      for (int step = 0; step < kSteps; ++step) {
        slots[static_cast<std::size_t>(thread)].store(step, std::memory_order_relaxed);
        barrier.wait();
        for (int other = 0; other < team; ++other) {
          if (slots[static_cast<std::size_t>(other)].load(std::memory_order_relaxed) != step) ++errors;
        }
        barrier.wait();  // nobody overwrites a slot before all have read this step
      }
    });
    EXPECT_EQ(errors.load(), 0) << threads << " threads";
  }
}

}  // namespace
