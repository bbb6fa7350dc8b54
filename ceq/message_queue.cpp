// The unbounded message queue: a growable ring under a short spin lock.
// lock_ guards buf_, cap_, head_ and the writes of count_. Nothing is called
// under it but the allocation in grow().
#include "ueq/ceq/message_queue.hpp"
#include "ueq/runtime/lock.hpp"

#include <algorithm>
#include <bit>
#include <mutex>
#include <new>

namespace ueq {

message_queue::message_queue(std::size_t initial_capacity) {
  cap_ = std::bit_ceil(std::max<std::size_t>(initial_capacity, 1));
  buf_.reset(new (std::nothrow) event_msg[cap_]);
  if (!buf_) cap_ = 0;  // the first post will try again and report ENOMEM
}

bool message_queue::grow() noexcept {
  const std::size_t n = count_.load(std::memory_order_relaxed);
  const std::size_t ncap = cap_ ? cap_ * 2 : 64;
  std::unique_ptr<event_msg[]> nb(new (std::nothrow) event_msg[ncap]);
  if (!nb) return false;
  for (std::size_t i = 0; i < n; ++i)
    nb[i] = buf_[(head_ + i) & (cap_ - 1)];
  buf_ = std::move(nb);
  cap_ = ncap;
  head_ = 0;
  return true;
}

status message_queue::post(const event_msg& m) noexcept {
  lock_guard<spin_lock> g(lock_);
  const std::size_t n = count_.load(std::memory_order_relaxed);
  if (n == cap_ && !grow()) return status(ENOMEM);
  buf_[(head_ + n) & (cap_ - 1)] = m;
  // release: a reader of count_ outside the lock (empty()) that sees the new
  // count also sees the message stored (it still takes the lock to read it).
  count_.store(n + 1, std::memory_order_release);
  // relaxed load and store: posts_ is written under lock_ only, so no
  // locked add is needed; readers want an eventually-exact figure.
  posts_.store(posts_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return {};
}

// One message: the ring's head, without get_batch's loop (the wait of a
// green thread on its own queue takes one message per wake).
bool message_queue::get(event_msg& out) noexcept {
  if (empty()) return false;
  lock_guard<spin_lock> g(lock_);
  const std::size_t n = count_.load(std::memory_order_relaxed);
  if (n == 0) return false;
  out = buf_[head_];
  head_ = (head_ + 1) & (cap_ - 1);  // cap_ > 0: a message is queued
  // release: pairs with empty()'s acquire, as in post().
  count_.store(n - 1, std::memory_order_release);
  return true;
}

std::size_t message_queue::get_batch(std::span<event_msg> out) noexcept {
  if (out.empty() || empty()) return 0;
  lock_guard<spin_lock> g(lock_);
  const std::size_t n = std::min(out.size(), count_.load(std::memory_order_relaxed));
  for (std::size_t i = 0; i < n; ++i)
    out[i] = buf_[(head_ + i) & (cap_ - 1)];
  head_ = (head_ + n) & (cap_ ? cap_ - 1 : 0);
  // release: pairs with empty()'s acquire, as in post().
  count_.store(count_.load(std::memory_order_relaxed) - n, std::memory_order_release);
  return n;
}

}  // namespace ueq
