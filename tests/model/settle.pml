/* The epoll facade's pending signal (epoll/pending.hpp, pending_signal):
 * a set keeps its hidden eventfd readable while events are pending, so a
 * thread asleep in ppoll on it (or a program that polls the epoll fd)
 * wakes; uthread waiters block on the signal's uthread queue (wakeq here),
 * posted at the same moment.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   epoll/pending.hpp   pending_signal::raise() and raised() (flag
 *                       exchange, eventfd write announced and recorded, the
 *                       uthread-queue post, wake_one()'s wake of the host
 *                       poll); settle() (pending: raise and a queue post;
 *                       else the shortcut, or drain, clear, re-check);
 *                       sleeper (count, then read the flag)
 *   epoll/set.hpp       impl::post_hook() (raise), impl::harvest():
 *                       drain_mailbox(), ..., settle();
 *                       impl::lead_host_poll() (-DLEADER)
 *   epoll/ctl_wait.cpp  epoll_set::impl::wait(): harvest under mu, then
 *                       lead the host poll, or sleep on the eventfd (ppoll:
 *                       standby()'s fallback when it has no sleep fd), or
 *                       block_on(the uthread queue)
 *   ceq/evq/event_queue.cpp  event_queue::post(): publish into the CEQ,
 *                       then the post hook (in place of the queue's own
 *                       wake), for a post that creates a message.
 * A plain waiter's standby sleep, on the set's bell and the host poll's
 * hand-off, is tests/model/standby.pml's.
 *
 * Parties: NP producers (tap dispatch on the host poller's thread), each
 * posting PP events to distinct fds: publish into the set's CEQ, then
 * post_hook(). NWT waiters in epoll_wait on the same set, each looping:
 * lock; harvest (drain the CEQ: every message taken); settle(); unlock; if
 * nothing was taken, sleep until the eventfd is readable (ppoll, level-
 * triggered), or, with -DUTHREAD, until wakeq holds its bit (block_on takes
 * it). The ready list is empty after a harvest here (edge-triggered
 * entries); a level-triggered entry left on it only makes settle() take the
 * "pending" branch, as a message left in the CEQ does. A MOD's settle
 * (leftover false: its entry queued under the lock, then the flag raised
 * only if it was clear, nothing more) is a producer's post here: the entry
 * is its message, and the exchange its post_hook().
 *
 * Kernel objects: the eventfd is a counter (write adds 1, read returns and
 * zeroes it, non-blocking); ppoll returns while the counter is non-zero.
 * ppoll also watches the host's poll fd; here it is left out (only the
 * eventfd can end the sleep), which only removes wakeups. wakeq is a
 * one-bit mailbox: a post sets the bit, block_on takes it.
 *
 * With -DLEADER, a plain waiter that finds nothing first tries to lead the
 * host poll (impl::lead_host_poll, epoll/set.hpp): it counts itself in
 * host_sleepers, re-reads signaled (pending already: harvest again), then,
 * if it takes the poller role, sleeps in the host poll until the host's wake
 * channel is written (host events are left out, as above); post_hook(),
 * after its exchange and write, wakes the host poll while host_sleepers is
 * not zero. A waiter that finds the role taken sleeps in ppoll as before.
 *
 * Properties:
 *  - no lost wakeup: when every thread is blocked (spin's timeout), no
 *    event is left in the CEQ (a waiter asleep over a pending event);
 *  - no busy loop (not with -DLOST_WAKEUP_ONLY): a waiter does not come back
 *    from its sleep with nothing to take more than twice without a new
 *    signal (an eventfd write or a wakeq post) in between; a readable
 *    eventfd that no settle() drains makes epoll_wait spin, and the epoll fd
 *    look readable to the program with nothing to report.
 *
 * Bug variants, each rejected:
 *  -DBUG_SETTLE           (-DLOST_WAKEUP_ONLY) settle() clears the flag, then
 *                         reads the eventfd. A post between the two steps
 *                         writes, the read swallows it, and the re-check's
 *                         post_hook() finds the flag set and writes nothing.
 *  -DBUG_SETTLE_SHORTCUT  (default configuration) an empty settle() returns
 *                         early on a clear flag alone, not asking whether a
 *                         write was made since the last drain: a post_hook()
 *                         that set the flag before settle()'s exchange writes
 *                         after its read; the eventfd stays readable with
 *                         nothing pending, and epoll_wait spins (busy loop).
 *  -DBUG_LEADER_ORDER     (-DLEADER -DLOST_WAKEUP_ONLY) lead_host_poll()
 *                         reads signaled before it counts itself in
 *                         host_sleepers: a post_hook() between the two finds
 *                         no sleeper and does not wake the host poll, which
 *                         then sleeps over the pending event.
 *  -DBUG_SETTLE_NO_WAKEQ  (-DUTHREAD -DLOST_WAKEUP_ONLY) a pending settle()
 *                         does post_hook() only: a waiter takes a stale wakeq
 *                         bit, a post lands between its drain and settle(),
 *                         whose post_hook() finds the flag set and posts
 *                         nothing; the waiter blocks over a pending event.
 */
#ifndef NP
#define NP 2
#endif
#ifndef PP
#define PP 2
#endif
#ifndef NWT
#define NWT 1
#endif

byte q_msgs;        /* messages in the set's CEQ */
bool signaled;      /* pending_signal::signaled_ */
byte efd_count;     /* the hidden eventfd's counter */
byte writing;       /* pending_signal::writing_: raises between announcing and ending a write */
bool written;       /* pending_signal::written_: a write ended since the last drain */
bool wakeq_bit;     /* pending_signal::wakeq_, a one-bit mailbox */
bool mu;            /* impl::mu */
byte posts_done;    /* ghost: producers finished */
byte host_sleepers; /* pending_signal::counts_[host] */
bool role;          /* the tap service's poller role (one poller at a time) */
byte wake_ch;       /* the host backend's wake channel (written by wake()) */
byte empty_wakes[NWT];  /* ghost: returns from the sleep with nothing taken, since
                         * the last new signal (eventfd write, wakeq post) */

inline post_hook() {
  /* if (signaled.exchange(true, seq_cst)) return; write; wakeq->post(0) */
  atomic { was = signaled; signaled = true };
  if
  :: was -> skip
  :: else ->
       /* write(evfd, 1); wakeq->post(0). One step: a plain waiter sleeps
        * on the eventfd only, a uthread on wakeq only. (ghost: a new signal
        * justifies one more wake of every waiter) */
       writing++;                      /* announced before the write */
       atomic { efd_count++; wakeq_bit = true; empty_wakes[0] = 0; empty_wakes[NWT - 1] = 0 };
       written = true;                 /* after it */
       writing--;                      /* then the announcement ends (release) */
#ifdef LEADER
       /* if (host_sleepers.load(seq_cst) > 0) svc->wake(): a later step */
       if
       :: host_sleepers > 0 ->
            /* (ghost: a new signal, for the host poll) */
            atomic { wake_ch++; empty_wakes[0] = 0; empty_wakes[NWT - 1] = 0 }
       :: else -> skip
       fi
#endif
       skip
  fi
}

inline settle() {
  /* pending = head != nullptr || !q->empty() */
  if
  :: q_msgs > 0 ->
       post_hook();
#ifndef BUG_SETTLE_NO_WAKEQ
       /* wakeq->post(0) (ghost: a new signal for a uthread waiter, which
        * sleeps on wakeq; a plain waiter does not see it) */
       atomic {
         wakeq_bit = true;
#ifdef UTHREAD
         empty_wakes[0] = 0; empty_wakes[NWT - 1] = 0
#endif
       }
#endif
  :: else ->
       /* The shortcut: a clear flag, no write announced, and none ended
        * since the last drain mean an empty eventfd. `writing` is read
        * before `written` (acquire): a write that ended before that read
        * set `written` first. */
#ifdef BUG_SETTLE_SHORTCUT
       if
       :: !signaled -> goto settled
       :: else -> skip
       fi;
#else
       was = (writing == 0);
       if
       :: !signaled && was && !written -> goto settled
       :: else -> skip
       fi;
#endif
#ifdef BUG_SETTLE
       written = false;
       signaled = false;               /* exchange(false) */
       efd_count = 0;                  /* read(evfd) */
#else
       written = false;                /* written.store(false), then */
       efd_count = 0;                  /* read(evfd), then */
       signaled = false;               /* exchange(false, acq_rel) */
#endif
       if
       :: q_msgs > 0 -> post_hook()    /* re-check the CEQ */
       :: else -> skip
       fi
  fi
  ;
settled:
  skip
}

proctype producer() {
  byte k = 0;
  bool was;
  do
  :: k < PP ->
       q_msgs++;                       /* publish into the CEQ */
       post_hook();                    /* the post created a message */
       k++
  :: else -> break
  od;
  posts_done++
}

proctype waiter(byte me) {
  byte took;
  bool was;
  do
  :: atomic { !mu -> mu = true };
     took = 0;
     do                                /* drain_mailbox() */
     :: q_msgs > 0 -> q_msgs--; took++
     :: else -> break
     od;
     settle();
     mu = false;
     if
     :: took > 0 -> empty_wakes[me] = 0  /* returns n > 0; the caller waits again */
     :: else ->
#ifdef UTHREAD
end_sleep:
          atomic { wakeq_bit -> wakeq_bit = false };   /* block_on({wakeq}) */
#else
#ifdef LEADER
#ifdef BUG_LEADER_ORDER
          was = signaled;
          host_sleepers++;
#else
          host_sleepers++;             /* fetch_add(seq_cst) */
          was = signaled;              /* then load(seq_cst) */
#endif
          if
          :: was -> host_sleepers--; goto retry  /* pending already: no sleep */
          :: else -> skip
          fi;
          if
          :: atomic { !role -> role = true } ->
end_lead:
               (wake_ch > 0);          /* the host poll returns on the wake channel */
               atomic { wake_ch = 0; role = false };  /* drained; role given back */
               host_sleepers--;
               goto woke
          :: atomic { role -> skip } ->
               host_sleepers--         /* busy: sleep in ppoll */
          fi;
#endif
end_sleep:
          (efd_count > 0);             /* ppoll: the eventfd is readable */
#ifdef LEADER
woke:
#endif
#endif
          empty_wakes[me]++;
#ifndef LOST_WAKEUP_ONLY
          assert(empty_wakes[me] <= 2)
#else
          empty_wakes[me] = 0
#endif
#ifdef LEADER
          ;
retry:
          skip
#endif
     fi
  od
}

/* When nothing can move, nothing may be pending: a waiter asleep over a
 * pending event is a lost wakeup. */
proctype monitor() {
  timeout ->
    assert(posts_done < NP || q_msgs == 0)
}

init {
  byte i = 0;
  atomic {
    do
    :: i < NP -> run producer(); i++
    :: else -> break
    od;
    i = 0;
    do
    :: i < NWT -> run waiter(i); i++
    :: else -> break
    od;
    run monitor()
  }
}
