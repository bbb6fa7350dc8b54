// ueq/runtime/refcount.hpp — an intrusive reference count whose release
// function can be swapped.
//
// What it is for: objects shared between a producer path and a consumer path
// (a uthread between its runner and its joiner; a tap between the table and
// an in-flight event) where the last owner frees it. The release function is
// a plain pointer stored in the object, so an owner can change what "free"
// means (return to a pool, defer through an epoch) without a virtual table.
//
// Thread-safety: get()/put() from any thread; set_release() only while the
// caller holds the sole reference or before sharing the object.
//
// Usage:
//   struct node : ueq::refcounted { int v; };
//   auto* n = new node;                   // count 1
//   n->set_release([](ueq::refcounted* r) noexcept { delete static_cast<node*>(r); });
//   n->get(); ...; n->put(); n->put();    // last put() runs the release
#pragma once

#include <atomic>
#include <cstdint>

namespace ueq {

class refcounted {
 public:
  using release_fn = void (*)(refcounted*) noexcept;

  explicit refcounted(std::uint32_t initial = 1) noexcept : refs_(initial) {}
  void set_release(release_fn fn) noexcept { release_ = fn; }
  // relaxed: taking another reference needs no ordering; the holder already
  // has one, so the object cannot be freed under us.
  void get(std::uint32_t n = 1) noexcept { refs_.fetch_add(n, std::memory_order_relaxed); }
  // acq_rel: release publishes this owner's writes; the last owner's acquire
  // sees every other owner's writes before it frees. True if this freed it.
  bool put(std::uint32_t n = 1) noexcept {
    if (refs_.fetch_sub(n, std::memory_order_acq_rel) != n) return false;
    if (release_) release_(this);
    return true;
  }
  std::uint32_t use_count() const noexcept { return refs_.load(std::memory_order_relaxed); }

 protected:
  ~refcounted() = default;

 private:
  std::atomic<std::uint32_t> refs_;
  release_fn release_ = nullptr;
};

}  // namespace ueq
