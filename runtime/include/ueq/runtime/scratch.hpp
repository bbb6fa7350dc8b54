// ueq/runtime/scratch.hpp — uninitialised storage for a batch of events.
//
// What it is for: a hot path's batch buffer (host events per poll, messages
// per drain) is filled by a callee before it is read; zero-filling it on
// every call costs more than the work (a 256-event host batch is 4 KiB, 512
// stores per poll). scratch<T, N> is N objects' worth of storage that is
// not initialised.
//
// Contract: T is an implicit-lifetime type (an aggregate of scalars, such as
// host_event or event_msg): the storage gives it objects as they are
// written (C++20's implicit object creation); read only what was written.
//
// Usage:
//   ueq::scratch<ueq::event_msg, 64> msgs;
//   while (std::size_t n = q->drain(msgs.span())) use(msgs.data(), n);
#pragma once

#include <cstddef>
#include <new>
#include <span>
#include <type_traits>

namespace ueq {

template <class T, std::size_t N>
struct scratch {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);
  alignas(T) unsigned char raw[N * sizeof(T)];
  T* data() noexcept { return std::launder(reinterpret_cast<T*>(raw)); }
  std::span<T, N> span() noexcept { return std::span<T, N>(data(), N); }
  T& operator[](std::size_t i) noexcept { return data()[i]; }
};

}  // namespace ueq
