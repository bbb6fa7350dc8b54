// ueq/uthread/stack_pool.hpp — uthread stacks: mmap'd, lazily committed,
// with a guard page while the mapping budget allows, else a canary.
//
// What it is for: giving each uthread a stack cheaply. Stacks are carved from
// slabs (one mmap of many stacks, MAP_NORESERVE, so untouched pages cost
// nothing); freed stacks go to a free list per size and are reused, most
// recently freed first (its pages are likely still warm).
//
// Guard pages: a PROT_NONE page below each stack makes an overflow a SIGSEGV
// at the guard, but each mprotect inside a slab splits the mapping, and Linux
// caps mappings per process (vm.max_map_count, 65530 by default). So the pool
// guards stacks only while guarded stacks number under a quarter of that cap;
// beyond it, the lowest word of a stack holds a canary that the scheduler
// checks each time the uthread switches out, aborting with "uthread stack
// overflow" if it changed. 100k uthreads therefore fit on a default machine.
//
// Thread-safety: allocate/release from any thread (one internal lock).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ueq {

struct stack_slot {
  char* base = nullptr;  // lowest usable address (above the guard)
  std::size_t size = 0;  // usable bytes
  bool guarded = false;  // false: a canary at *base
};

struct stack_pool_stats {
  std::size_t slabs = 0, stacks_carved = 0, free_stacks = 0, guarded = 0, canaried = 0;
};

inline constexpr std::uint64_t kStackCanary = 0x5ca1ab1e0ddba11ull;

namespace stack_pool {
// A stack of at least `size` usable bytes; base == nullptr if out of memory.
stack_slot allocate(std::size_t size) noexcept;
void release(const stack_slot& s) noexcept;
inline bool canary_intact(const stack_slot& s) noexcept {
  return s.guarded || *reinterpret_cast<const std::uint64_t*>(s.base) == kStackCanary;
}
stack_pool_stats stats() noexcept;
}  // namespace stack_pool

}  // namespace ueq
