// The uthread core: contexts, switching, spawn/join/exit, the park and
// yield hooks, and run().
//
// Shared state and who writes it:
//   g_rt                 the running runtime or null; written by run() only
//                        (release when set, before any vcore starts), read
//                        with acquire by spawn() and the hooks.
//   runtime_state.live   uthreads spawned and not yet ended: spawn()
//                        increments before the uthread can run; the vcore
//                        that sees it end decrements and, at zero, unparks
//                        run()'s `done` parker.
//   uthread.ctx          the saved context. Written by the post-switch
//                        trampoline on the vcore it left (on the scheduler
//                        stack, or on the stack of the uthread a direct
//                        switch resumed), before anyone can learn it is
//                        blocked; read by the vcore that resumes it, which
//                        got the uthread through the 2LS (a lock or an
//                        atomic hand-off, so the write happens before the
//                        read). The one uthread queued before its context
//                        is saved is a yielder on its own vcore's private
//                        FIFO (default_sched.hpp's yield_pick): only that
//                        vcore pops it, after the switch.
//   uthread.vc           the vcore that resumes it; written by the resumer
//                        on its own thread just before the switch, read by
//                        the uthread right after it, and by the default
//                        2LS's thread_runnable as "has run" (ordered after
//                        the write by the hand-off that made it runnable).
//   uthread.join_state   kJoinable -> kDetached (detach) | kJoining (join)
//                        -> kExited (the vcore that saw it end). Whoever
//                        moves it last frees the uthread.
//   vcore_ctx            one per vcore thread, touched only by that thread
//                        (the uthread running on it counts as that thread).
//                        `incoming` carries a direct switch's target to the
//                        trampoline that runs on its stack, and tells a new
//                        uthread's first frame (uthread_main) how it came.
//
// A uthread is on exactly one of: a vcore (running), a 2LS run queue, or a
// wait structure (blocked). Making it runnable twice is the bug to avoid:
// every path that does it first wins a CAS on some state word (the parker's,
// or a lock-protected dequeue), so exactly one party re-queues it.
//
// TLS and migration: a uthread may resume on another vcore, so code in a
// uthread never caches the vcore context across a switch: after one it
// reads uthread.vc, and elsewhere cur_vc(), which is noinline so the
// compiler cannot keep a thread-local address across a switch.
#include "ueq/uthread/uthread.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <boost/context/detail/fcontext.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "default_sched.hpp"
#include "ueq/runtime/backoff.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/timer.hpp"
#include "ueq/runtime/vcore.hpp"
#include "ueq/uthread/sched.hpp"
#include "ueq/uthread/stack_pool.hpp"
#include "uthread_impl.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define UEQ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UEQ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define UEQ_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UEQ_TSAN 1
#endif
#endif

#ifdef UEQ_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef UEQ_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace fc = boost::context::detail;

namespace ueq {
namespace detail {

enum : std::uint32_t { kJoinable = 0, kDetached = 1, kJoining = 2, kExited = 3 };

sched_link& link_of(uthread* u) noexcept {
  return u->link;
}

namespace {

struct runtime_state {
  scheduler_2ls* sched = nullptr;
  std::unique_ptr<scheduler_2ls> owned;
  default_scheduler* dflt = nullptr;  // sched, when it is the default 2LS
  timer_service timers;
  vcore_group vcores;
  std::atomic<std::size_t> live{0};
  std::atomic<bool> stopping{false};
  // run()'s caller waits here without polling the host: idle vcores do
  // that, and dispatching on this thread would hand every event across.
  parker done{parker::no_host_poll};
};

std::atomic<runtime_state*> g_rt{nullptr};

}  // namespace

struct vcore_ctx {
  unsigned index = 0;
  fc::fcontext_t sched = nullptr;  // the scheduler's context while a uthread runs
  uthread* current = nullptr;      // the running uthread
  uthread* incoming = nullptr;     // a direct switch's target, until it runs
  uthread* exited = nullptr;       // set by a uthread's last act
  post_switch_fn post = nullptr;
  void* post_arg = nullptr;
  block_reason why = block_reason::misc;
  // Sanitizer bookkeeping for the scheduler's own (host thread) stack.
  void* tsan_sched = nullptr;
  void* asan_fake = nullptr;
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
  bool asan_finished = false;
  // A uthread resumed by the scheduler (not by another uthread) still has to
  // tell ASan it arrived; a direct switch's trampoline does it itself.
  bool asan_from_sched = false;
};

namespace {

thread_local vcore_ctx* tl_vc = nullptr;

__attribute__((noinline)) vcore_ctx* cur_vc() noexcept {
  asm volatile("" ::: "memory");
  return tl_vc;
}

runtime_state* rt() noexcept {
  // acquire: pairs with run()'s release store; everything run() built is
  // visible.
  return g_rt.load(std::memory_order_acquire);
}

// The 2LS calls on the switch path: direct calls into the default 2LS (a
// final class, so they inline), virtual ones into any other.
inline uthread* sched_pick(runtime_state* r, unsigned vcore) noexcept {
  return r->dflt ? r->dflt->pick_next(vcore) : r->sched->pick_next(vcore);
}
inline void sched_paused(runtime_state* r, uthread* u) noexcept {
  if (r->dflt)
    r->dflt->thread_paused(u);
  else
    r->sched->thread_paused(u);
}
inline void sched_runnable(runtime_state* r, uthread* u) noexcept {
  if (r->dflt)
    r->dflt->thread_runnable(u);
  else
    r->sched->thread_runnable(u);
}

// --- sanitizer annotations -------------------------------------------------
// Anything -> uthread `to`; `fake_save` keeps the leaving side's ASan fake
// stack.
inline void annotate_switch_to(void** fake_save, uthread* to) noexcept {
  // An ordered lock held here would be held while another uthread runs on
  // this thread, and the debug lock-order record (per thread) would mix the
  // two (lock_order.hpp).
  if constexpr (detail::kCheckLockOrder) detail::lock_order_expect_none("switching to a uthread");
#ifdef UEQ_TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
#ifdef UEQ_ASAN
  __sanitizer_start_switch_fiber(fake_save, to->stack.base, to->stack.size);
#endif
  (void)fake_save;
  (void)to;
}
// Scheduler -> uthread.
inline void annotate_enter(vcore_ctx* vc, uthread* u) noexcept {
  annotate_switch_to(&vc->asan_fake, u);
#ifdef UEQ_ASAN
  vc->asan_from_sched = true;
#endif
}
// First thing on the uthread side after a switch in. From the scheduler,
// learn the scheduler's stack bounds; a direct switch has finished already.
inline void annotate_entered(vcore_ctx* vc, uthread* u) noexcept {
#ifdef UEQ_ASAN
  if (vc->asan_from_sched)
    __sanitizer_finish_switch_fiber(u->asan_fake, &vc->stack_bottom, &vc->stack_size);
  vc->asan_from_sched = false;
#endif
  (void)vc;
  (void)u;
}
// Uthread -> uthread.
inline void annotate_direct(uthread* from, uthread* to) noexcept {
  annotate_switch_to(&from->asan_fake, to);
}
// First thing on the incoming uthread's stack after a direct switch.
inline void annotate_direct_arrived(uthread* to) noexcept {
#ifdef UEQ_ASAN
  __sanitizer_finish_switch_fiber(to->asan_fake, nullptr, nullptr);
#endif
  (void)to;
}
// Uthread -> scheduler (dying: the uthread's fake stack can go).
inline void annotate_leave(vcore_ctx* vc, uthread* u, bool dying) noexcept {
  // A uthread that blocks (or ends) holding an ordered lock could go on
  // on another thread and release it there (lock_order.hpp).
  if constexpr (detail::kCheckLockOrder) detail::lock_order_expect_none("a uthread leaving");
#ifdef UEQ_TSAN
  __tsan_switch_to_fiber(vc->tsan_sched, 0);
#endif
#ifdef UEQ_ASAN
  __sanitizer_start_switch_fiber(dying ? nullptr : &u->asan_fake, vc->stack_bottom, vc->stack_size);
#endif
  (void)vc;
  (void)u;
  (void)dying;
}
// First thing on the scheduler side after a switch back.
inline void annotate_back(vcore_ctx* vc) noexcept {
#ifdef UEQ_ASAN
  if (!vc->asan_finished) __sanitizer_finish_switch_fiber(vc->asan_fake, nullptr, nullptr);
  vc->asan_finished = true;
#endif
  (void)vc;
}

void check_canary(uthread* u) noexcept {
  if (!stack_pool::canary_intact(u->stack)) {
    std::fprintf(stderr, "ueq: uthread stack overflow in '%s' (stack %zu bytes)\n", u->name,
                 u->stack.size);
    std::abort();
  }
}

// --- uthread records ---------------------------------------------------------
// Freed records are kept per thread for the next spawn: a spawn and join
// otherwise pay a malloc and a free (~130 of ~1200 instructions). Sanitizer
// builds skip the cache, so ASan still sees every use after free.
struct record_cache {
  static constexpr int kMax = 64;
  void* items[kMax];
  int n = 0;  // -1 once destroyed: a later free on this thread goes to the heap
  ~record_cache() {
    while (n > 0)
      ::operator delete(items[--n]);
    n = -1;
  }
};
thread_local record_cache tl_records;

// noinline (both): a caller that switched out may resume on another vcore,
// so the thread-local's address is computed here, at the call.
__attribute__((noinline)) void* new_record() noexcept {
#if !defined(UEQ_ASAN) && !defined(UEQ_TSAN)
  if (tl_records.n > 0) return tl_records.items[--tl_records.n];
#endif
  return ::operator new(sizeof(uthread), std::nothrow);
}

__attribute__((noinline)) void free_uthread(uthread* u) noexcept {
#ifdef UEQ_TSAN
  if (u->tsan_fiber) __tsan_destroy_fiber(u->tsan_fiber);
#endif
  u->~uthread();
#if !defined(UEQ_ASAN) && !defined(UEQ_TSAN)
  if (tl_records.n >= 0 && tl_records.n < record_cache::kMax) {
    tl_records.items[tl_records.n++] = u;
    return;
  }
#endif
  ::operator delete(u);
}

// --- switching ---------------------------------------------------------------

// The vcore saw u's entry function return (its stack is already released).
void on_exit(runtime_state* r, uthread* u) noexcept {
  r->sched->thread_exited(u);
  // acq_rel: release publishes everything the uthread did to its joiner
  // (which acquires kExited); acquire sees a joiner/detacher's writes
  // (u->joiner was written before their CAS, so re-read it if needed).
  const std::uint32_t prev = u->join_state.exchange(kExited, std::memory_order_acq_rel);
  if (prev == kDetached) {
    free_uthread(u);
  } else if (prev == kJoining) {
    // u->joiner was written before the joiner's release CAS, which we read.
    u->joiner->unpark();  // the joiner frees u; do not touch it after this
  }
  // acq_rel: the last decrement sees every uthread's end; run() acquires.
  if (r->live.fetch_sub(1, std::memory_order_acq_rel) == 1) r->done.unpark();
}

void run_one(runtime_state* r, vcore_ctx* vc, uthread* u) noexcept {
  vc->current = u;
  u->vc = vc;
  u->link.vcore = vc->index;
  vc->asan_finished = false;
  annotate_enter(vc, u);
  // Returns when u leaves through trampoline() or ends; neither passes
  // anything back.
  (void)fc::jump_fcontext(u->ctx, nullptr);
  annotate_back(vc);
  if (uthread* dead = vc->exited) {
    vc->exited = nullptr;
    // Its last act was the jump here: the stack is free to go (on the
    // scheduler's stack, with no current uthread, so the pool lock's
    // backoff does not try to switch).
    stack_pool::release(dead->stack);
    on_exit(r, dead);
  }
}

// The 2LS learns that u (its context saved) left the CPU, then the
// blocker's callback runs (it may publish u: after it, u may be running
// elsewhere). Runs right after the switch, on the stack of whatever runs
// next (the scheduler, or the uthread a direct switch resumed), with no
// current uthread, so a spin lock's backoff in here does not try to switch.
[[gnu::always_inline]] inline void switched_out(vcore_ctx* vc, uthread* u) noexcept {
  check_canary(u);
  runtime_state* r = rt();
  if (vc->why == block_reason::yield)
    sched_paused(r, u);
  else if (!r->dflt)  // the default 2LS has nothing to do here
    r->sched->thread_has_blocked(u, vc->why);
  if (vc->post) vc->post(u, vc->post_arg);
}

// Runs on the scheduler stack right after a uthread switched out; `t`
// carries the uthread's context and the vcore (ontop_fcontext's argument).
fc::transfer_t trampoline(fc::transfer_t t) noexcept {
  auto* vc = static_cast<vcore_ctx*>(t.data);  // scheduler side: no migration here
  annotate_back(vc);
  uthread* u = vc->current;
  vc->current = nullptr;
  u->ctx = t.fctx;
  switched_out(vc, u);
  return {nullptr, nullptr};
}

// Runs on the incoming uthread's stack right after a direct switch, and
// only saves the outgoing context: a leaf, with no registers of its own to
// save and restore. The rest of the hand-over (arrived(), below) runs where
// the incoming uthread resumes, on the same stack, before anything else.
fc::transfer_t direct_trampoline(fc::transfer_t t) noexcept {
  auto* vc = static_cast<vcore_ctx*>(t.data);  // same thread as the switch
  annotate_direct_arrived(vc->incoming);
  vc->current->ctx = t.fctx;
  // A null context tells the resumed side it came from a uthread: the
  // vcore's scheduler context (vc->sched) stays where it is.
  return {nullptr, nullptr};
}

// First thing uthread `u` does when it resumes after a switch: `from` is
// the scheduler's context (kept), or null after a direct switch, whose
// outgoing uthread (still vc->current) is then handed to switched_out().
[[gnu::always_inline]] inline void arrived(vcore_ctx* vc, uthread* u,
                                           fc::fcontext_t from) noexcept {
  if (from) {
    vc->sched = from;
    return;
  }
  uthread* prev = vc->current;
  vc->current = nullptr;
  vc->incoming = nullptr;
  switched_out(vc, prev);
  vc->current = u;
}

// The reason a yield that the default 2LS queued before the switch
// (yield_pick) leaves with: switched_out() must not queue it again, and
// the default 2LS has nothing else to do for a block.
constexpr block_reason kYieldQueued = block_reason::misc;

// The uthread to switch to directly from u, or null to go through the
// vcore's scheduler: what the vcore loop would do next, minus the loop.
// Timers that are due send the switch through the loop, which runs them.
// Yield: the caller is this_uthread::yield() (an instance of its own, so
// blocks do not pay for the yield's test).
template <bool Yield>
uthread* pick_direct(runtime_state* r, vcore_ctx* vc) noexcept {
  // relaxed inside next_deadline: a hint, as in the vcore loop.
  const mono_ns nd = r->timers.next_deadline();
  if (nd != kNoDeadline && nd <= monotonic_now()) return nullptr;
  uthread* u = vc->current;
  if (Yield && r->dflt)
    if (uthread* next = r->dflt->yield_pick(vc->index, u)) {
      vc->why = kYieldQueued;
      return next;
    }
  // No current uthread while the 2LS picks: its locks' backoff must not
  // switch us out from the middle of a switch.
  vc->current = nullptr;
  uthread* next = sched_pick(r, vc->index);
  vc->current = u;
  return next;
}

// Leaves the running uthread. The 2LS's pick_next chooses who runs next;
// if it names a uthread, switch to it directly (one context switch, the
// callbacks run on its stack); if not, switch to the vcore's scheduler
// context, which runs timers and idles.
template <bool Yield>
void switch_out(vcore_ctx* vc, block_reason why, post_switch_fn fn, void* arg) noexcept {
  uthread* u = vc->current;
  vc->why = why;
  vc->post = fn;
  vc->post_arg = arg;
  fc::transfer_t from;
  if (uthread* next = pick_direct<Yield>(rt(), vc)) {
    next->vc = vc;
    next->link.vcore = vc->index;
    vc->incoming = next;
    annotate_direct(u, next);
    from = fc::ontop_fcontext(next->ctx, vc, direct_trampoline);
  } else {
    annotate_leave(vc, u, false);
    from = fc::ontop_fcontext(vc->sched, vc, trampoline);
  }
  // Resumed, perhaps on another vcore, by its scheduler (which passes its
  // context) or by another uthread (which passes none). Either wrote
  // u->vc on this thread before the switch.
  vc = u->vc;
  arrived(vc, u, from.fctx);
  annotate_entered(vc, u);
}

void vcore_loop(runtime_state* r, unsigned i) noexcept {
  vcore_ctx vc;
  vc.index = i;
#ifdef UEQ_TSAN
  vc.tsan_sched = __tsan_get_current_fiber();
#endif
  tl_vc = &vc;
  for (;;) {
    // acquire: a timer's deadline is a hint; run_expired takes the lock.
    const mono_ns nd = r->timers.next_deadline();
    if (nd != kNoDeadline && nd <= monotonic_now()) r->timers.run_expired(monotonic_now());
    if (uthread* u = sched_pick(r, i)) {
      run_one(r, &vc, u);
      continue;
    }
    // acquire: pairs with run()'s release store of stopping.
    if (r->stopping.load(std::memory_order_acquire)) break;
    r->sched->idle(i, r->timers);
  }
  tl_vc = nullptr;
}

// A uthread's first frame. It is first entered by the scheduler's jump
// (run_one: `t` holds the scheduler's context) or by a direct switch
// (ontop_fcontext: direct_trampoline ran first, and what reaches us in `t`
// is undefined, so we read nothing from it); vc->incoming tells which.
// Its last act is a jump to the scheduler, which frees the stack.
[[noreturn]] void uthread_main(fc::transfer_t t) noexcept {
  vcore_ctx* vc = tl_vc;  // just arrived on this thread: no migration yet
  uthread* u = vc->incoming;
  fc::fcontext_t from = nullptr;
  if (!u) {
    u = vc->current;
    from = t.fctx;
  }
  arrived(vc, u, from);
  annotate_entered(vc, u);
  u->fn();
  u->fn = nullptr;  // destroy the callable's state while still on our stack
  vc = u->vc;       // the vcore that resumed it last
  check_canary(u);
  vc->exited = u;
  // From here on we are "the scheduler" for the yield hook: the stack is
  // released on the scheduler's side under the pool's spin lock, whose
  // backoff must not try to switch a uthread that no longer exists.
  vc->current = nullptr;
  annotate_leave(vc, u, true);
  (void)fc::jump_fcontext(vc->sched, nullptr);
  __builtin_unreachable();
}

// --- hooks installed into runtime/ ----------------------------------------
bool hook_active() noexcept {
  vcore_ctx* vc = cur_vc();
  return vc && vc->current;
}

struct park_ctx {
  parker* p;
  timer* t;
  mono_ns deadline;
  runtime_state* r;
  uthread* u;
};

void park_timeout(timer*, void* arg) noexcept {
  auto* c = static_cast<park_ctx*>(arg);
  // Runs on some vcore's scheduler stack. Only the winner of the parker's
  // state word makes the waiter runnable.
  uthread* u = c->u;  // read first: once runnable, u may free c
  if (c->p->timeout_block()) make_runnable(u);
}

using park_result = park_hook::result;

park_result as_result(bool woken) noexcept {
  return woken ? park_hook::kWoken : park_hook::kNotWoken;
}

// Parks vc's running uthread on p until an unpark. Out of line (both
// parks), so hook_park stays a small test (no registers saved) that
// tail-calls them.
__attribute__((noinline)) park_result park_forever(vcore_ctx* vc, parker& p) noexcept {
  if (p.woken()) return park_hook::kWoken;
  // No timer, no context on the stack: the parker's word is all there is.
  switch_out<false>(
      vc, block_reason::park,
      [](uthread* u, void* arg) noexcept {
        // After a successful begin_block we must not touch p: an unpark
        // may already have made u runnable elsewhere.
        if (!static_cast<parker*>(arg)->begin_block(u)) sched_runnable(rt(), u);
      },
      &p);
  // end_block only clears a timeout's mark, and nothing times us out.
  return as_result(p.woken());
}

// Parks vc's running uthread on p until an unpark or the deadline.
__attribute__((noinline)) park_result park_until(vcore_ctx* vc, parker& p,
                                                 mono_ns deadline) noexcept {
  if (p.woken()) return park_hook::kWoken;
  if (monotonic_now() >= deadline) return park_hook::kNotWoken;
  runtime_state* r = rt();
  timer t;
  park_ctx c{&p, &t, deadline, r, vc->current};
  t.fn = &park_timeout;
  t.arg = &c;
  switch_out<false>(
      vc, block_reason::park,
      [](uthread* u, void* arg) noexcept {
        auto* c = static_cast<park_ctx*>(arg);
        // Arm first: the uthread cannot resume before begin_block succeeds,
        // so its stack (c, the timer) is still ours.
        // A new earliest deadline: a vcore asleep with a later one must
        // take it (we may stay busy for a long time).
        if (c->r->timers.arm(*c->t, c->deadline)) c->r->sched->timer_armed();
        // After a successful begin_block we must not touch c: an unpark or
        // the timer may already have made u runnable elsewhere.
        if (!c->p->begin_block(u)) sched_runnable(c->r, u);
      },
      &c);
  r->timers.cancel(t);  // cancelled, or its handler finished
  p.end_block();
  return as_result(p.woken());
}

// kNotUthread at once for a caller that is not a uthread (the parker then
// waits as a plain thread); see park_hook.
park_result hook_park(parker& p, mono_ns deadline) noexcept {
  vcore_ctx* vc = cur_vc();
  if (!vc || !vc->current) return park_hook::kNotUthread;
  if (deadline == kNoDeadline) return park_forever(vc, p);
  return park_until(vc, p, deadline);
}

void hook_wake(void* who) noexcept {
  sched_runnable(rt(), static_cast<uthread*>(who));
}

const park_hook g_park_hook_impl{&hook_active, &hook_park, &hook_wake};

// A backoff's yield (a spin lock held by another thread). It switches to
// another uthread only if this thread holds no os_mutex: one that took the
// same mutex would block the vcore's thread, so the holder could never run
// again.
void hook_yield() noexcept {
  if (hook_active() && detail::tl_os_mutexes_held == 0)
    this_uthread::yield();
  else
    ::sched_yield();
}

}  // namespace

void block_with_raw(block_reason why, post_switch_fn fn, void* arg) noexcept {
  switch_out<false>(cur_vc(), why, fn, arg);
}

}  // namespace detail

using detail::uthread;

void make_runnable(uthread* u) noexcept {
  detail::sched_runnable(detail::rt(), u);
}

std::size_t default_stack_size() noexcept {
#if defined(UEQ_ASAN) || defined(UEQ_TSAN)
  return std::size_t{256} << 10;
#else
  return std::size_t{128} << 10;
#endif
}

result<uthread_handle> spawn(std::function<void()> fn, spawn_options opts) {
  detail::runtime_state* r = detail::rt();
  if (!r) return errno_code(ENXIO);
  if (!fn) return errno_code(EINVAL);
  std::size_t size = opts.stack_size ? opts.stack_size : default_stack_size();
  if (size > (std::size_t{1} << 30)) return errno_code(EINVAL);
  size = std::max(size, kMinStackSize);
  stack_slot s = stack_pool::allocate(size);
  if (!s.base) return errno_code(ENOMEM);
  void* mem = detail::new_record();
  if (!mem) {
    stack_pool::release(s);
    return errno_code(ENOMEM);
  }
  auto* u = new (mem) uthread;
  u->fn = std::move(fn);
  u->stack = s;
  if (opts.name) std::strncpy(u->name, opts.name, sizeof u->name - 1);
  if (opts.detached) u->join_state.store(detail::kDetached, std::memory_order_relaxed);
#ifdef UEQ_TSAN
  u->tsan_fiber = __tsan_create_fiber(0);
#endif
  u->ctx = fc::make_fcontext(s.base + s.size, s.size, &detail::uthread_main);
  const unsigned v = this_vcore();
  u->link.vcore = v != kNoVcore ? v : 0;
  // relaxed: run() waits for zero with acq_rel/acquire on the decrements;
  // this increment is ordered before the uthread can run (and decrement) by
  // the 2LS hand-off below.
  r->live.fetch_add(1, std::memory_order_relaxed);
  uthread_handle h(opts.detached ? nullptr : u);
  r->sched->thread_runnable(u);
  return h;
}

uthread_handle& uthread_handle::operator=(uthread_handle&& o) noexcept {
  if (this != &o) {
    detach();
    u_ = o.u_;
    o.u_ = nullptr;
  }
  return *this;
}

std::error_code uthread_handle::join() noexcept {
  if (!u_) return errno_code(EINVAL);
  if (u_ == this_uthread::current()) return errno_code(EDEADLK);
  uthread* u = u_;
  u_ = nullptr;
  parker p;
  u->joiner = &p;
  std::uint32_t s = detail::kJoinable;
  // acq_rel: release publishes u->joiner to the exiting vcore; on failure
  // (kExited) acquire sees everything the uthread did.
  if (u->join_state.compare_exchange_strong(s, detail::kJoining, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
    // The exit path unparks us after its acq_rel exchange to kExited.
    while (!p.park()) {
    }
    // acquire: synchronise with that exchange (the parker's acquire already
    // does; this documents it and costs nothing on x86).
    (void)u->join_state.load(std::memory_order_acquire);
  }
  detail::free_uthread(u);
  return {};
}

void uthread_handle::detach() noexcept {
  if (!u_) return;
  uthread* u = u_;
  u_ = nullptr;
  std::uint32_t s = detail::kJoinable;
  // acq_rel: on failure it already exited and we free it (acquire sees its
  // last writes); on success the exit path frees it.
  if (!u->join_state.compare_exchange_strong(s, detail::kDetached, std::memory_order_acq_rel,
                                             std::memory_order_acquire))
    detail::free_uthread(u);
}

result<int> run(std::function<void()> fn, run_options opts) {
  if (!fn || opts.vcores > max_vcore_count()) return errno_code(EINVAL);
  auto* r = new detail::runtime_state;
  detail::runtime_state* expected = nullptr;
  // acq_rel: claim the one runtime slot; release publishes r's construction.
  // The 2LS is set up below before any uthread exists, and spawn() from
  // another thread between here and there would find sched null, so we
  // build it first.
  if (opts.sched) {
    r->sched = opts.sched;
  } else {
    auto d = std::make_unique<detail::default_scheduler>();
    r->dflt = d.get();
    r->sched = d.get();
    r->owned = std::move(d);
  }
  const unsigned n = opts.vcores ? opts.vcores : default_vcore_count();
  r->sched->init(n);
  if (!detail::g_rt.compare_exchange_strong(expected, r, std::memory_order_acq_rel)) {
    delete r;
    return errno_code(EBUSY);
  }
  set_park_hook(&detail::g_park_hook_impl);
  set_yield_hook(&detail::hook_yield);
  auto h = spawn(std::move(fn), {.name = "main", .detached = true});
  if (!h) {
    set_yield_hook(nullptr);
    set_park_hook(nullptr);
    detail::g_rt.store(nullptr, std::memory_order_release);
    delete r;
    return h.error();
  }
  r->vcores.start(n, [r](unsigned i) { detail::vcore_loop(r, i); });
  // acquire: every uthread's effects happen before we return.
  while (r->live.load(std::memory_order_acquire) != 0)
    r->done.park();
  // release: vcores that see stopping see that no uthread is left.
  r->stopping.store(true, std::memory_order_release);
  r->sched->stop();
  r->vcores.join();
  set_yield_hook(nullptr);
  set_park_hook(nullptr);
  detail::g_rt.store(nullptr, std::memory_order_release);
  delete r;
  return 0;
}

namespace this_uthread {

bool active() noexcept {
  return detail::hook_active();
}

uthread* current() noexcept {
  detail::vcore_ctx* vc = detail::cur_vc();
  return vc ? vc->current : nullptr;
}

const char* name() noexcept {
  uthread* u = current();
  return u ? u->name : "";
}

void yield() noexcept {
  detail::vcore_ctx* vc = detail::cur_vc();
  if (!vc || !vc->current) {
    ::sched_yield();
    return;
  }
  detail::switch_out<true>(vc, block_reason::yield, nullptr, nullptr);
}

void sleep_until(mono_ns deadline) noexcept {
  parker p;
  while (monotonic_now() < deadline)
    p.park(deadline);
}

}  // namespace this_uthread

}  // namespace ueq
