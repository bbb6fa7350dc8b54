// ueq/runtime/trace.hpp — an optional, per-stage event trace for research.
//
// What it is for: following one event along its path
//   host event (the tap service sees it) -> tap (a tap's filter matched)
//   -> post (into an event queue's mailbox) -> wake (a waiter unparked)
//   -> consume (a consumer took the message out of the event queue)
// with a CLOCK_MONOTONIC timestamp per stage, into a bounded process-wide
// buffer that a tool (ueq-lab) reads afterwards. The modules above runtime/
// (taps/, ceq/) declare their stages and call the trace points; runtime/
// owns the buffer and knows no stage by name, so nothing points up.
//
// Cost when off: the trace is switched on and off at run time. A trace point
// that is off is one relaxed load of a process-wide word and a branch
// predicted not-taken; no call, no timestamp. (`ueq-bench trace` measures it
// against the same loop without trace points.)
//
// When on: a timestamp, one fetch_add to claim a cell, one CAS to own it, a
// few relaxed stores and a release store. The buffer keeps the first
// `capacity` records of a session (trace_start .. trace_stop) and counts the
// rest as dropped, so a run is never slowed by wrapping and a cell has at
// most one writer per session.
//
// Records: {stage, id, aux, obj, thread, ts}. `id` is the event message's
// id (the same for every stage of one event; for a host event, the id of the
// tap the host registration belongs to), `obj` says where (the event queue
// for post/wake/consume, the tap's fd for host/tap), `aux` a stage-specific
// word (host/tap: the event bits; post: the bits, plus 1<<63 when the post
// only coalesced; wake: the number of waiters woken; consume: the bits).
// Stages of one event are ordered by timestamp: every stage takes its
// timestamp before the act that makes the next stage possible (see the
// trace points in event_queue.cpp and tap_service.cpp).
//
// Thread-safety: trace points from any thread at any time. trace_start,
// trace_stop and trace_snapshot from one controlling thread at a time;
// records made while a start or stop is in progress may be kept or dropped.
//
// Usage:
//   ueq::trace_start(1 << 16);
//   ... run the workload ...
//   ueq::trace_stop();
//   for (const ueq::trace_record& r : ueq::trace_snapshot())
//     std::printf("%s %u %lld\n", ueq::trace_stage_name(r.stage), r.id, (long long)r.ts);
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ueq/runtime/clock.hpp"
#include "ueq/runtime/result.hpp"

namespace ueq {

// One stage of an event's path. The layer that emits a stage declares it,
// number and name, beside its trace points (namespace ueq::trace_stages:
// host_event and tap in ueq/taps/tap.hpp; post, wake and consume
// in ueq/ceq/evq/event_queue.hpp). Numbers follow the path (taps 0-1,
// event queues 2-4), so ordering one event's records by stage number
// orders its path. runtime/ stores the number and learns each name from
// the first record of its stage.
inline constexpr int kTraceMaxStages = 16;
struct trace_stage {
  // Declared at compile time: a number past kTraceMaxStages does not compile.
  consteval trace_stage(int n, const char* s)
      : number(n >= 0 && n < kTraceMaxStages ? static_cast<std::uint8_t>(n)
                                             : throw "trace stage number out of range"),
        name(s) {}
  std::uint8_t number;
  const char* name;
};
// aux of a post that only merged into a pending message (CEQ, bitmap).
inline constexpr std::uint64_t kTraceCoalesced = std::uint64_t{1} << 63;
// id of a wake that hands a wake-one queue's wakeup on (for no one message).
inline constexpr std::uint32_t kTraceNoId = 0xffffffffu;
// The name of stage number `n` ("?" for a number not recorded yet).
const char* trace_stage_name(std::uint8_t n) noexcept;

struct trace_record {
  mono_ns ts = 0;            // CLOCK_MONOTONIC ns when the stage happened
  std::uint64_t seq = 0;     // order in which the record was claimed
  std::uint64_t aux = 0;     // stage-specific (see the header comment)
  std::uint64_t obj = 0;     // where: queue address, or fd
  std::uint32_t id = 0;      // the event message's id
  std::uint32_t thread = 0;  // this_thread_index() of the recording thread
  std::uint8_t stage = 0;    // the stage's number (trace_stage_name)
};

struct trace_stats {
  std::uint64_t recorded = 0;  // records kept this session
  std::uint64_t dropped = 0;   // records lost: buffer full, or its cell busy
  std::size_t capacity = 0;
  bool enabled = false;
};

namespace detail {
// The switch every trace point reads: nonzero while a session is on.
// Owned by trace.cpp (written only by trace_start/trace_stop). relaxed at the
// trace points: the switch orders nothing; a trace point that sees it on
// finds the buffer through an acquire load (trace.cpp).
inline constinit std::atomic<std::uint32_t> g_trace_on{0};
void trace_slow(mono_ns ts, const trace_stage& stage, std::uint32_t id, std::uint64_t aux,
                std::uint64_t obj) noexcept;
}  // namespace detail

inline bool trace_enabled() noexcept {
  return __builtin_expect(detail::g_trace_on.load(std::memory_order_relaxed) != 0, 0);
}
// A trace point: records `stage` of event `id` now, if the trace is on.
inline void trace(const trace_stage& stage, std::uint32_t id, std::uint64_t aux = 0,
                  std::uint64_t obj = 0) noexcept {
  if (trace_enabled()) detail::trace_slow(monotonic_now(), stage, id, aux, obj);
}
// The same with a timestamp taken earlier (by a caller that read the clock
// before the act the stage describes; see the header comment).
inline void trace_at(mono_ns ts, const trace_stage& stage, std::uint32_t id, std::uint64_t aux = 0,
                     std::uint64_t obj = 0) noexcept {
  if (trace_enabled()) detail::trace_slow(ts, stage, id, aux, obj);
}

// Starts a session that keeps the first `capacity` records (rounded up to a
// power of two, 2^10 .. 2^26): clears what an earlier session kept, then
// switches the trace points on. EINVAL for capacity 0 or over 2^26; ENOMEM.
status trace_start(std::size_t capacity = std::size_t{1} << 16);
// Switches the trace points off. Records of trace points already past their
// switch check may still land, until trace_start clears them.
void trace_stop() noexcept;
// The records of the current (or last) session, ordered by timestamp, then
// by claim order.
std::vector<trace_record> trace_snapshot();
trace_stats trace_counters() noexcept;

}  // namespace ueq
