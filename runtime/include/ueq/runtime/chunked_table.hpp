// ueq/runtime/chunked_table.hpp — a table indexed by small integers (fd
// numbers), whose chunks are allocated on first use and never move.
//
// What it is for: per-fd state looked up on hot paths without a lock. The
// directory is sized once for the largest index; a chunk of 2^ChunkBits
// default-constructed entries is allocated the first time an index in it is
// asked for with create = true, and installed with a CAS (the loser of a race
// frees its copy). Entries live as long as the table, so a pointer to one
// stays valid for the table's lifetime.
//
// Thread-safety: get() from any thread; entries synchronise themselves.
//
// Usage:
//   ueq::chunked_table<per_fd> t(1 << 20);
//   if (per_fd* e = t.get(fd, /*create=*/true)) { std::lock_guard g(e->mu); ... }
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>

namespace ueq {

template <class T, unsigned ChunkBits = 8>
class chunked_table {
 public:
  static constexpr std::size_t kChunk = std::size_t{1} << ChunkBits;

  explicit chunked_table(std::size_t max_index)
      : dir_len_((max_index + kChunk - 1) / kChunk),
        dir_(new (std::nothrow) std::atomic<chunk*>[dir_len_]()) {}
  ~chunked_table() {
    if (dir_)
      for (std::size_t c = 0; c < dir_len_; ++c)
        delete dir_[c].load(std::memory_order_relaxed);
  }
  chunked_table(const chunked_table&) = delete;
  chunked_table& operator=(const chunked_table&) = delete;

  bool ok() const noexcept { return dir_ != nullptr; }
  std::size_t capacity() const noexcept { return dir_len_ * kChunk; }

  // The entry for index i; nullptr if i is out of range, or if its chunk does
  // not exist and create is false (or allocation failed).
  T* get(long i, bool create) noexcept {
    if (i < 0 || static_cast<std::size_t>(i) / kChunk >= dir_len_) return nullptr;
    std::atomic<chunk*>& slot = dir_[static_cast<std::size_t>(i) / kChunk];
    // acquire: pairs with the release CAS below; the chunk's entries were
    // constructed before it was published.
    chunk* c = slot.load(std::memory_order_acquire);
    if (!c && create) {
      auto* fresh = new (std::nothrow) chunk;
      if (!fresh) return nullptr;
      // release on success publishes the chunk; acquire on failure takes the
      // winner's.
      if (slot.compare_exchange_strong(c, fresh, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        c = fresh;
      else
        delete fresh;
    }
    return c ? &c->e[static_cast<std::size_t>(i) % kChunk] : nullptr;
  }

  // Calls fn(index, entry) for every entry of every allocated chunk.
  template <class Fn>
  void for_each(Fn fn) {
    for (std::size_t c = 0; c < dir_len_; ++c)
      if (chunk* ch = dir_[c].load(std::memory_order_acquire))
        for (std::size_t k = 0; k < kChunk; ++k)
          fn(c * kChunk + k, ch->e[k]);
  }

 private:
  struct chunk {
    T e[kChunk];
  };
  const std::size_t dir_len_;
  std::unique_ptr<std::atomic<chunk*>[]> dir_;
};

}  // namespace ueq
