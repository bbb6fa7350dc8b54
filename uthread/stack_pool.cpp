// The stack pool.
//
// Shared state: pool() (process-wide, never freed: uthreads may end during
// static destruction), all under its lock:
//   free        size -> stacks released and ready for reuse (LIFO).
//   carve       size -> the slab being carved: next free address, stacks
//               left, and how many stacks of that size exist.
// allocate() reserves room in free[size] for every stack of the size it
// carves, so release() (noexcept, with no error to return) never allocates;
// allocate() reports a failed allocation as out of memory instead.
//   guard_budget  how many stacks may have a guard page (stats.guarded
//               counts those that have one).
//   stats       counters.
//   last_size / last_free   allocate()'s cache of one free list.
#include "ueq/uthread/stack_pool.hpp"
#include "ueq/runtime/lock.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "ueq/runtime/backoff.hpp"

namespace ueq::stack_pool {
namespace {

constexpr std::size_t kSlabBytes = std::size_t{8} << 20;  // 8 MiB of stacks per mmap

struct carve_state {
  char* next = nullptr;
  std::size_t left = 0;
  std::size_t made = 0;  // stacks of this size carved, in use or free
};

struct pool_state {
  spin_lock lock;
  std::unordered_map<std::size_t, std::vector<stack_slot>> free;
  std::unordered_map<std::size_t, carve_state> carve;
  std::size_t guard_budget = 0;
  std::size_t last_size = 0;                     // cache for allocate()
  std::vector<stack_slot>* last_free = nullptr;  // &free[last_size]
  stack_pool_stats stats;
};

pool_state& pool() {
  static pool_state* p = [] {
    auto* s = new pool_state;
    long max_maps = 65530;
    if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
      if (std::fscanf(f, "%ld", &max_maps) != 1) max_maps = 65530;
      std::fclose(f);
    }
    // Each guard inside a slab adds up to two mappings; leave three quarters
    // of the cap to the rest of the process.
    s->guard_budget = static_cast<std::size_t>(max_maps / 8);
    return s;
  }();
  return *p;
}

std::size_t page_size() {
  static const std::size_t ps = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return ps;
}

// allocate() under the pool's lock; throws std::bad_alloc if a free list or
// a map node cannot grow.
stack_slot allocate_locked(pool_state& p, std::size_t size, std::size_t ps) {
  const std::size_t stride = size + ps;  // one guard (or canary) page below
  // The last size asked for (nearly always the default) skips the hash.
  // unordered_map nodes are stable, so the cached pointer stays valid.
  if (size != p.last_size) {
    p.last_free = &p.free[size];
    p.last_size = size;
  }
  auto& fl = *p.last_free;
  if (!fl.empty()) {
    stack_slot s = fl.back();
    fl.pop_back();
    --p.stats.free_stacks;
    if (!s.guarded) *reinterpret_cast<std::uint64_t*>(s.base) = kStackCanary;
    return s;
  }
  carve_state& c = p.carve[size];
  if (c.left == 0) {
    const std::size_t n = stride >= kSlabBytes ? 1 : kSlabBytes / stride;
    // Room for every stack of the size on the free list, before they exist.
    fl.reserve(c.made + n);
    void* m = mmap(nullptr, n * stride, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return {};
    c.next = static_cast<char*>(m);
    c.left = n;
    c.made += n;
    ++p.stats.slabs;
  }
  char* lo = c.next;
  c.next += stride;
  --c.left;
  ++p.stats.stacks_carved;
  stack_slot s;
  s.size = size;
  if (p.stats.guarded < p.guard_budget && mprotect(lo, ps, PROT_NONE) == 0) {
    s.base = lo + ps;
    s.guarded = true;
    ++p.stats.guarded;
  } else {
    // No guard: the canary sits at the lowest usable word; the page below it
    // stays unused (never touched, so never committed).
    s.base = lo + ps;
    *reinterpret_cast<std::uint64_t*>(s.base) = kStackCanary;
    ++p.stats.canaried;
  }
  return s;
}

}  // namespace

stack_slot allocate(std::size_t size) noexcept {
  const std::size_t ps = page_size();
  size = (size + ps - 1) & ~(ps - 1);
  auto& p = pool();
  lock_guard<spin_lock> g(p.lock);
  try {
    return allocate_locked(p, size, ps);
  } catch (const std::bad_alloc&) {
    return {};  // a free list or a map node could not grow
  }
}

void release(const stack_slot& s) noexcept {
  auto& p = pool();
  lock_guard<spin_lock> g(p.lock);
  // No allocation: allocate() made the list and reserved room for every
  // stack of the size.
  p.free.find(s.size)->second.push_back(s);
  ++p.stats.free_stacks;
}

stack_pool_stats stats() noexcept {
  auto& p = pool();
  lock_guard<spin_lock> g(p.lock);
  return p.stats;
}

}  // namespace ueq::stack_pool
