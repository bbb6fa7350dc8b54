// ueq/ceq/message_queue.hpp — an unbounded MPMC FIFO of whole messages.
//
// What it is for: messages that must each arrive (completions, timer
// expiries, commands): nothing coalesces, nothing is dropped, order is FIFO
// per queue. The analog of Akaros's UCQ. When its buffer is full it grows
// (doubling); post() fails only if memory runs out (ENOMEM), and then the
// message is not queued and the caller knows.
//
// Thread-safety: post() and get() from any number of threads. A short spin
// lock (spin, then yield: see backoff.hpp) guards the buffer; nothing blocks
// inside it except the allocation when it grows. empty() and size() read a
// counter without the lock (a snapshot).
//
// Usage:
//   ueq::message_queue q;
//   q.post({.id = 1, .bits = 42});
//   ueq::event_msg m;
//   while (q.get(m)) handle(m);
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "ueq/ceq/event.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/result.hpp"

namespace ueq {

class message_queue {
 public:
  explicit message_queue(std::size_t initial_capacity = 64);
  message_queue(const message_queue&) = delete;
  message_queue& operator=(const message_queue&) = delete;

  // ENOMEM: the buffer had to grow and could not.
  status post(const event_msg& m) noexcept;
  // The mailbox interface (event.hpp): a message queue never coalesces.
  status post(const event_msg& m, bool& coalesced) noexcept {
    coalesced = false;
    return post(m);
  }
  bool get(event_msg& out) noexcept;
  std::size_t get_batch(std::span<event_msg> out) noexcept;
  bool empty() const noexcept { return size() == 0; }
  std::size_t size() const noexcept { return count_.load(std::memory_order_acquire); }
  std::uint64_t posts() const noexcept { return posts_.load(std::memory_order_relaxed); }

 private:
  bool grow() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);

  spin_lock lock_{lock_level::mailbox};
  std::unique_ptr<event_msg[]> buf_ ABSL_GUARDED_BY(lock_);
  std::size_t cap_ ABSL_GUARDED_BY(lock_) = 0;   // power of two
  std::size_t head_ ABSL_GUARDED_BY(lock_) = 0;  // next to read
  // Messages queued. Written under lock_ (release), read without it
  // (acquire) by empty()/size(): a snapshot that is exact when it was read.
  std::atomic<std::size_t> count_{0};
  std::atomic<std::uint64_t> posts_{0};  // statistics only: relaxed
};

static_assert(mailbox<message_queue>);

}  // namespace ueq
