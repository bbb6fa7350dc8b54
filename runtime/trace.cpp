// The per-stage event trace: a process-wide bounded buffer of records.
//
// Shared state and who writes it:
//   g_trace_on   the switch; written by trace_start/trace_stop (under
//                g_ctl.mu), read by every trace point.
//   g_buf        the current buffer; published by trace_start (under
//                g_ctl.mu). Buffers are never freed: a trace point that read
//                the switch before a stop may still be writing into an old
//                one, and there is no cheaper way to know when it has left.
//                A new buffer is made only when a session asks for more
//                capacity, so all of them together take at most twice the
//                largest.
//   buffer::next the claim counter: (session << 40) | index. trace_start
//                stores a new session with index 0; trace points fetch_add.
//   cell::tag    0 (never written), or (claim << 1) | busy. A writer owns a
//                cell from its CAS that sets busy to its store of the
//                finished tag; the reader (trace_snapshot) accepts a cell
//                only if its tag is the finished tag of the claim it
//                expects, before and after reading the fields (a seqlock).
//
// Why a cell never has two writers at once: within a session each claim
// index goes to one trace point. A trace point that read the switch in an
// earlier session and claims after a trace_start gets an index of the new
// session; if another writer holds that cell's busy bit, the CAS fails and
// the record is dropped (counted), never interleaved.
#include "ueq/runtime/trace.hpp"
#include "ueq/runtime/lock.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <new>

#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/thread_index.hpp"

namespace ueq {

namespace {

constexpr int kIndexBits = 40;
constexpr std::uint64_t kIndexMask = (std::uint64_t{1} << kIndexBits) - 1;
constexpr std::uint64_t kMaxSession = (std::uint64_t{1} << 22) - 1;
constexpr std::size_t kMinCapacity = std::size_t{1} << 10;
constexpr std::size_t kMaxCapacity = std::size_t{1} << 26;

struct cell {
  std::atomic<std::uint64_t> tag{0};
  std::atomic<std::int64_t> ts{0};
  std::atomic<std::uint64_t> aux{0};
  std::atomic<std::uint64_t> obj{0};
  std::atomic<std::uint64_t> meta{0};  // id | thread << 32 (24 bits) | stage << 56
};

struct buffer {
  explicit buffer(std::size_t c) : cap(c), cells(new (std::nothrow) cell[c]) {}
  const std::size_t cap;
  const std::unique_ptr<cell[]> cells;
  // relaxed everywhere: a claim needs only atomicity (each index once); the
  // cell's tag carries the ordering of the record's contents.
  std::atomic<std::uint64_t> next{0};
  std::atomic<std::uint64_t> dropped{0};  // statistics: relaxed
  // This session's capacity (<= cap). relaxed: a trace point that reads an
  // older limit still writes inside the buffer, and the snapshot reads only
  // up to the limit it set itself.
  std::atomic<std::size_t> limit{0};
};

// The controller's state: owned by the process, guarded by mu. Never
// destroyed (trace points may run during static destruction).
struct control {
  os_mutex mu;
  std::vector<buffer*> all ABSL_GUARDED_BY(mu);  // every buffer ever made (never freed; see top)
  std::uint64_t session ABSL_GUARDED_BY(mu) = 0;
  mono_ns start_ts ABSL_GUARDED_BY(mu) = 0;
};
control& ctl() {
  static control* c = new control;
  return *c;
}

// fork(): as the thread-index pool (runtime.cpp), the controller is made
// and its lock held across the fork, so a child never inherits it half
// made or held by a thread it does not have.
os_mutex& ctl_lock() {
  return ctl().mu;
}
[[maybe_unused]] const bool g_ctl_fork_registered =
    hold_across_fork<&ctl_lock>(fork_layer::runtime);

// release store in trace_start, acquire load in trace points and the
// snapshot: a buffer's cells are constructed before anyone uses them.
std::atomic<buffer*> g_buf{nullptr};

std::size_t round_capacity(std::size_t n) {
  std::size_t c = kMinCapacity;
  while (c < n)
    c <<= 1;
  return c;
}

}  // namespace

namespace {
// Stage names by number, learnt from the records (a stage's name is a
// string literal of the layer that declares it). relaxed: every writer
// stores the same pointer for a number.
std::atomic<const char*> g_stage_names[kTraceMaxStages];
}  // namespace

const char* trace_stage_name(std::uint8_t n) noexcept {
  const char* name =
      n < kTraceMaxStages ? g_stage_names[n].load(std::memory_order_relaxed) : nullptr;
  return name ? name : "?";
}

namespace detail {

void trace_slow(mono_ns ts, const trace_stage& stage, std::uint32_t id, std::uint64_t aux,
                std::uint64_t obj) noexcept {
  buffer* b = g_buf.load(std::memory_order_acquire);
  if (!b) return;
  if (stage.number < kTraceMaxStages &&
      g_stage_names[stage.number].load(std::memory_order_relaxed) == nullptr)
    g_stage_names[stage.number].store(stage.name, std::memory_order_relaxed);
  const std::uint64_t claim = b->next.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t idx = claim & kIndexMask;
  if (idx >= b->limit.load(std::memory_order_relaxed) || idx >= b->cap) {
    b->dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  cell& c = b->cells[idx];
  std::uint64_t t = c.tag.load(std::memory_order_relaxed);
  // relaxed CAS: it only has to make us the cell's sole writer; the release
  // fence after it is what a reader that sees our field stores pairs with.
  if ((t & 1) || !c.tag.compare_exchange_strong(t, (claim << 1) | 1, std::memory_order_relaxed)) {
    b->dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // release fence (seqlock writer): if a reader's field load sees one of the
  // stores below, its acquire fence synchronises with this fence, so its
  // second tag load sees our busy tag (or later) and it drops the cell.
  std::atomic_thread_fence(std::memory_order_release);
  const std::uint64_t thread = this_thread_index() & 0xffffffu;
  c.ts.store(ts, std::memory_order_relaxed);
  c.aux.store(aux, std::memory_order_relaxed);
  c.obj.store(obj, std::memory_order_relaxed);
  c.meta.store(std::uint64_t{id} | thread << 32 | std::uint64_t{stage.number} << 56,
               std::memory_order_relaxed);
  // release: the reader's acquire load of this tag sees the fields above.
  c.tag.store(claim << 1, std::memory_order_release);
}

}  // namespace detail

status trace_start(std::size_t capacity) {
  if (capacity == 0 || capacity > kMaxCapacity) return status(EINVAL);
  control& k = ctl();
  lock_guard<os_mutex> g(k.mu);
  // relaxed: see g_trace_on in trace.hpp; the buffer is found through g_buf.
  detail::g_trace_on.store(0, std::memory_order_relaxed);
  const std::size_t cap = round_capacity(capacity);
  buffer* b = g_buf.load(std::memory_order_relaxed);  // only we write it
  if (!b || b->cap < cap) {
    buffer* nb = new (std::nothrow) buffer(cap);
    if (!nb || !nb->cells) {
      delete nb;
      return status(ENOMEM);
    }
    k.all.push_back(nb);
    g_buf.store(nb, std::memory_order_release);
    b = nb;
  }
  k.session = k.session % kMaxSession + 1;
  k.start_ts = monotonic_now();
  b->dropped.store(0, std::memory_order_relaxed);
  b->limit.store(cap, std::memory_order_relaxed);
  // relaxed: every later claim (an RMW on `next`) reads this value or a
  // later one, so it gets an index of the new session.
  b->next.store(k.session << kIndexBits, std::memory_order_relaxed);
  detail::g_trace_on.store(1, std::memory_order_relaxed);
  return {};
}

void trace_stop() noexcept {
  // relaxed: trace points past their check may still finish (see trace.hpp).
  detail::g_trace_on.store(0, std::memory_order_relaxed);
}

std::vector<trace_record> trace_snapshot() {
  control& k = ctl();
  lock_guard<os_mutex> g(k.mu);
  std::vector<trace_record> out;
  buffer* b = g_buf.load(std::memory_order_acquire);
  if (!b || k.session == 0) return out;
  const std::uint64_t next = b->next.load(std::memory_order_relaxed);
  if ((next >> kIndexBits) != k.session) return out;
  const std::uint64_t n =
      std::min<std::uint64_t>(next & kIndexMask, b->limit.load(std::memory_order_relaxed));
  out.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t claim = (k.session << kIndexBits) | i;
    cell& c = b->cells[i];
    // acquire (seqlock reader): pairs with the writer's release tag store.
    const std::uint64_t t1 = c.tag.load(std::memory_order_acquire);
    if (t1 != claim << 1) continue;  // never finished, busy, or another session's
    trace_record r;
    r.ts = c.ts.load(std::memory_order_relaxed);
    r.aux = c.aux.load(std::memory_order_relaxed);
    r.obj = c.obj.load(std::memory_order_relaxed);
    const std::uint64_t meta = c.meta.load(std::memory_order_relaxed);
    // acquire fence, then re-read the tag: if any field came from a writer
    // that started after t1, the tag changed (see the writer's fence).
    std::atomic_thread_fence(std::memory_order_acquire);
    if (c.tag.load(std::memory_order_relaxed) != t1) continue;
    if (r.ts < k.start_ts) continue;  // a trace point from before the start
    r.seq = i;
    r.id = static_cast<std::uint32_t>(meta);
    r.thread = static_cast<std::uint32_t>((meta >> 32) & 0xffffffu);
    r.stage = static_cast<std::uint8_t>(meta >> 56);
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const trace_record& a, const trace_record& b) {
    return a.ts != b.ts ? a.ts < b.ts : a.seq < b.seq;
  });
  return out;
}

trace_stats trace_counters() noexcept {
  trace_stats s;
  s.enabled = detail::g_trace_on.load(std::memory_order_relaxed) != 0;
  buffer* b = g_buf.load(std::memory_order_acquire);
  if (!b) return s;
  s.capacity = b->limit.load(std::memory_order_relaxed);
  const std::uint64_t claimed = b->next.load(std::memory_order_relaxed) & kIndexMask;
  s.dropped = b->dropped.load(std::memory_order_relaxed);
  s.recorded = claimed > s.dropped ? claimed - s.dropped : 0;
  return s;
}

}  // namespace ueq
