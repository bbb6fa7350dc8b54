/* Waking without losing: event queues, block_on, and the parker's state word.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   ceq/evq/event_queue.cpp               event_queue::post(), notify(),
 *                                         wake_one_waiter(), add_waiter(), remove_waiter(),
 *                                         add_solo(), remove_solo(), claim_solo()
 *   ceq/evq/event_queue.cpp               event_queue::close()
 *   ceq/evq/block_on.cpp                  try_all(), any_closed(), pass_on(), block_on()
 *   ceq/include/ueq/ceq/evq/block_on.hpp  evq_waiter (wake, wake_claimed, await_claimer,
 *                                         woken_by, reset)
 *   runtime/parker.cpp                    parker::unpark(), parker::park() (the paths
 *                                         without a host poller; tests/model/leader.pml
 *                                         has the host-poll leader path)
 *   runtime/parker.cpp                    parker::sleep() (as a non-follower)
 *   runtime/parker.cpp                    begin_block(), timeout_block(), end_block()
 *   uthread/uthread.cpp                   park_timeout(), hook_park() (the uthread path)
 *
 * Parties: NW = 2 waiters: waiter 0 loops on block_on() (each call takes
 * one message, then it calls again), waiter 1 makes one call and leaves;
 * two producers posting to queues; optionally a closer, and a timer per
 * uthread waiter with a deadline. A queue's mailbox
 * is a CEQ seen from outside: each ID is idle, or flipped (posted, not yet
 * in the ring: get() cannot see it yet), or visible; a post to an ID that
 * is already flipped or visible coalesces and does not notify (post()
 * notifies only when the mailbox reports a new message); a get takes a
 * visible ID back to idle. (tests/model/ceq.pml checks the CEQ itself.)
 *
 * A waiter on one queue alone (both waiters, or waiter 1 with MULTI) first
 * tries the queue's one-waiter slot: a compare-and-swap that succeeds if
 * the slot is empty, after a separate look that nobody is listed. A waker
 * takes the slot's waiter by exchange and is then the only party that wakes
 * it (woken_by, then the unpark); the waiter leaving takes the slot back by
 * compare-and-swap or, finding it taken, waits for its claimer's unpark.
 * No claimer may still hold the waiter when remove_solo returns (asserted:
 * the waiter's stack goes when block_on returns).
 *
 * Steps taken under a queue's spin lock (add_waiter, remove_waiter, the walk
 * of notify/wake_one_waiter/close) are single atomic steps, except where the
 * lock is held across the slot's steps too (notify with waiters listed,
 * close): there qlock stands for it: each wake() in a
 * walk touches another waiter's own state word, so nothing another thread
 * can do in between changes what the walk decides. The seq_cst fences of the
 * two handshakes (post: publish, fence, load nwaiters_; block_on: register,
 * fence, re-check) are what make the interleavings spin explores the only
 * ones possible.
 *
 * Configurations:
 *   default      one queue, wake-all, two producers posting to the same ID
 *                (so posts coalesce), no deadlines.
 *   -DWAKE_ONE   the queue wakes one waiter; waiter 1 has a deadline.
 *   -DMULTI      two queues: waiter 0 blocks on both, waiter 1 on the second;
 *                producer k posts to queue k; waiter 1 has a deadline.
 *   -DCLOSE      a closer closes the queue while the others run.
 *   -DUTHREAD    waiters are uthreads: they block through the park hook
 *                (begin_block / timeout_block / end_block, a timer for the
 *                deadline); waiter 1 has a deadline.
 * The options combine (tests/meson.build checks MULTI with WAKE_ONE, and
 * UTHREAD with WAKE_ONE). A deadline may pass at any step where the code
 * reads the clock.
 *
 * Properties:
 *  - no lost wakeup: when nothing can move (spin's timeout), no waiter is
 *    inside block_on while one of its queues holds a visible message or is
 *    closed, and no waiter with a deadline is still blocked;
 *  - a uthread is made runnable exactly once per block (asserted);
 *  - a slot claimer's wake always wins, and no claimer holds a waiter that
 *    has left remove_solo (asserted);
 *  - no invalid end state: nobody waits forever anywhere else.
 *
 * Bug variants, each rejected:
 *  -DBUG_NO_RECHECK     block_on parks without re-checking the mailboxes
 *                       after registering.
 *  -DBUG_NO_PASS_ON     (with WAKE_ONE) a woken waiter that leaves does not
 *                       hand the wakeup on.
 *  -DBUG_CLOSE_NO_WAKE  (with CLOSE) close() does not wake the waiters.
 *  -DBUG_BEGIN_BLOCK    (with UTHREAD) begin_block stores kBlocked instead of
 *                       a CAS from kIdle, overwriting an unpark.
 *  -DBUG_TIMEOUT_MARK   (with UTHREAD) timeout_block does nothing when the
 *                       waiter has not blocked yet (no kTimedOut mark).
 *  -DBUG_SOLO_NO_AWAIT  remove_solo returns at once when a waker has claimed
 *                       the slot, without waiting for that waker's wake.
 *  -DBUG_SOLO_NO_RECHECK the slot path parks without re-checking after its
 *                       compare-and-swap.
 */
#define NW 2
#ifdef MULTI
#define NQ 2
#else
#define NQ 1
#endif
#define NOQ 255
#define NOW 255             /* no waiter */

/* Parker states (runtime/include/ueq/runtime/parker.hpp). */
#define IDLE 0
#define NOTIFIED 1
#define SLEEPING 2
#define BLOCKED 4
#define TIMEDOUT 5

/* Mailbox: one ID per queue. */
#define M_IDLE 0
#define M_FLIPPED 1
#define M_VISIBLE 2
byte mb[NQ];
bool closed[NQ];
bool linked[NQ * NW];       /* waiter w is on queue q's list */
byte nwaiters[NQ];
#define LINKED(q, w) linked[(q) * NW + (w)]
byte solo[NQ];              /* event_queue::solo_: a waiter, or NOW */
bool qlock[NQ];             /* the queue's spin lock, where held across steps */
bool held[NW];              /* ghost: a claimer took the waiter, not done with it */

byte st[NW];                /* parker::state_ */
byte woken_by[NW];          /* evq_waiter::woken_by_ (a queue, or NOQ) */
bool inwait[NW];            /* ghost: inside block_on */
bool timed[NW];             /* the waiter's calls have a deadline */
bool expired[NW];           /* that deadline has passed */
#ifdef UTHREAD
bool runnable[NW];          /* the scheduler has the uthread on a run queue */
bool armed[NW];             /* the park timer is armed */
bool firing[NW];            /* the park timer's handler is running */
#endif
byte producers_left;

/* Does waiter w block on queue q? */
#ifdef MULTI
#define ON(w, q) ((w) == 0 || (q) == 1)
#define SOLO(w) ((w) == 1)  /* blocks on one queue: may take its slot */
#define SQ(w) 1             /* that queue */
#else
#define ON(w, q) true
#define SOLO(w) true
#define SQ(w) 0
#endif
#ifdef WAKE_ONE
#define WAKE_ONE_Q(q) true
#else
#define WAKE_ONE_Q(q) false
#endif

/* A deadline passes (or not) before the code reads the clock. */
inline clock(w) {
  if
  :: timed[w] && !expired[w] -> expired[w] = true
  :: true -> skip
  fi
}

#ifdef UTHREAD
inline make_runnable(w) {
  assert(!runnable[w]);     /* exactly one party makes it runnable */
  runnable[w] = true
}
#endif

/* parker::unpark() inside evq_waiter::wake(by): exchange kNotified in; the
 * futex wake of a kSleeping waiter is the end of its wait below; replacing
 * kBlocked makes the uthread runnable. won: this call woke it. */
inline wake(w, by, won) {
  won = (st[w] != NOTIFIED);
#ifdef UTHREAD
  if :: st[w] == BLOCKED -> make_runnable(w) :: else -> skip fi;
#endif
  st[w] = NOTIFIED;
  if :: won -> woken_by[w] = by :: else -> skip fi
}

/* claim_solo(): take the slot's waiter by exchange. s: whom it took. */
inline claim_solo(q, s) {
  atomic {
    s = solo[q]; solo[q] = NOW;
    if :: s != NOW -> held[s] = true :: else -> skip fi
  }
}

/* evq_waiter::wake_claimed(): as the claimed waiter's one waker, write
 * woken_by and unpark it. woken_by and the unpark are one step: the waiter
 * reads woken_by only after it sees the unpark's kNotified (acquire). */
inline wake_claimed(s, q) {
  if
  :: s != NOW ->
       atomic {
         woken_by[s] = q;
         assert(st[s] != NOTIFIED);                      /* the claimer's wake wins */
#ifdef UTHREAD
         if :: st[s] == BLOCKED -> make_runnable(s) :: else -> skip fi;
#endif
         st[s] = NOTIFIED;
         held[s] = false                                 /* unpark's exchange: done */
       }
  :: else -> skip
  fi
}

inline wake_solo(q, s) {
  claim_solo(q, s);
  wake_claimed(s, q)
}

/* The walk under queue q's lock: wake every linked waiter, or (wake-one)
 * the first whose wake() succeeds. The list order is whatever it is: any
 * linked waiter may come first. */
inline walk(q, one) {
  atomic {
    if
    :: one ->
         if
         :: LINKED(q, 0) && st[0] != NOTIFIED -> wake(0, q, won)
         :: LINKED(q, 1) && st[1] != NOTIFIED -> wake(1, q, won)
         :: else -> skip
         fi
    :: else ->
         if :: LINKED(q, 0) -> wake(0, q, won) :: else -> skip fi;
         if :: LINKED(q, 1) -> wake(1, q, won) :: else -> skip fi
    fi;
    won = false
  }
}

/* event_queue::post(): fails if closed; publish; notify if the post made a
 * new message. */
inline post(q) {
  if
  :: closed[q] -> skip                                   /* EPIPE */
  :: else ->
       atomic { fresh = (mb[q] == M_IDLE); if :: fresh -> mb[q] = M_FLIPPED :: else -> skip fi };
       if
       :: fresh ->
            mb[q] = M_VISIBLE;                           /* ring push */
            /* notify(): seq_cst fence, then nwaiters_, then the slot */
            /* (its relaxed peek at an empty slot only skips an exchange
             * that would find it empty: not modelled) */
            listed = (nwaiters[q] > 0);
            if
            :: listed ->
                 atomic { !qlock[q] -> qlock[q] = true };
                 claim_solo(q, s);
                 if
                 :: !(s != NOW && WAKE_ONE_Q(q)) -> walk(q, WAKE_ONE_Q(q))
                 :: else -> skip
                 fi;
                 wake_claimed(s, q);                     /* the slot's last */
                 qlock[q] = false
            :: else -> wake_solo(q, s)
            fi;
            listed = false; s = NOW
       :: else -> skip                                   /* coalesced: no notify */
       fi;
       fresh = false
  fi
}

proctype producer(byte q; byte count) {
  byte k = 0, s = NOW;
  bool fresh, won, listed;
  do
  :: k < count -> post(q); k++
  :: else -> break
  od;
  producers_left--
}

#ifdef CLOSE
/* close_locked(): the exchange and the walk both run under the queue's
 * lock, so they are one step. */
proctype closer() {
  bool was, won;
  byte s = NOW;
  atomic {
    !qlock[0] -> qlock[0] = true;
    was = closed[0]; closed[0] = true;
    if
    :: was -> skip
    :: else ->
#ifndef BUG_CLOSE_NO_WAKE
         walk(0, false)
#else
         skip
#endif
    fi
  };
  /* then a seq_cst fence, and the slot, still under the lock */
#ifndef BUG_CLOSE_NO_WAKE
  if :: !was -> wake_solo(0, s) :: else -> skip fi;
#endif
  qlock[0] = false
}
#endif

/* try_get on each of w's queues in order; got, from = which. */
inline try_all(w, got, from) {
  q = 0;
  do
  :: q < NQ ->
       if
       :: ON(w, q) ->
            atomic {
              if
              :: mb[q] == M_VISIBLE -> mb[q] = M_IDLE; got = true; from = q
              :: else -> skip
              fi
            };
            if :: got -> break :: else -> skip fi
       :: else -> skip
       fi;
       q++
  :: else -> break
  od;
  q = 0
}

inline any_closed(w, c) {
  c = false;
  q = 0;
  do
  :: q < NQ -> if :: ON(w, q) && closed[q] -> c = true :: else -> skip fi; q++
  :: else -> break
  od;
  q = 0
}

/* pass_on(by): a wake-one queue still non-empty gets another waiter woken. */
inline pass_on(by) {
#ifndef BUG_NO_PASS_ON
  if
  :: by != NOQ && WAKE_ONE_Q(by) && mb[by] == M_VISIBLE ->
       /* wake_one_waiter(): the slot first, else the list */
       wake_solo(by, s);
       if :: s == NOW -> atomic { !qlock[by] -> walk(by, true) } :: else -> skip fi;
       s = NOW
  :: else -> skip
  fi
#else
  skip
#endif
}

/* parker::park() for a plain thread with no host poller: spin, then sleep
 * on the futex until unparked or the deadline. */
inline park_thread(w) {
  do
  :: st[w] == NOTIFIED -> break                          /* acquire load */
  :: else ->
       clock(w);
       if
       :: expired[w] -> break
       :: else ->
            /* sleep(): CAS kIdle -> kSleeping, futex_wait, CAS back */
            atomic { ok = (st[w] == IDLE); if :: ok -> st[w] = SLEEPING :: else -> skip fi };
            if
            :: ok ->
end_futex:       if
                 :: st[w] != SLEEPING -> skip            /* woken */
                 :: timed[w] -> expired[w] = true        /* futex timeout */
                 fi;
                 atomic { if :: st[w] == SLEEPING -> st[w] = IDLE :: else -> skip fi }
            :: else -> skip
            fi;
            ok = false
       fi
  od
}

#ifdef UTHREAD
/* hook_park(): block through the scheduler; begin_block in the callback
 * that runs after the switch; the timer's handler races unpark(). */
inline park_uthread(w) {
  if
  :: st[w] == NOTIFIED -> skip                           /* p.woken() */
  :: else ->
       clock(w);
       if
       :: expired[w] -> skip
       :: else ->
            /* the post-switch callback: arm the timer, then begin_block */
            if :: timed[w] -> armed[w] = true :: else -> skip fi;
#ifdef BUG_BEGIN_BLOCK
            atomic { ok = true; st[w] = BLOCKED };
#else
            atomic { ok = (st[w] == IDLE); if :: ok -> st[w] = BLOCKED :: else -> skip fi };
#endif
            if :: !ok -> make_runnable(w) :: else -> skip fi;   /* resumes itself */
end_blocked:
            atomic { runnable[w] -> runnable[w] = false };     /* runs again */
            /* timers.cancel(t): cancelled, or its handler has finished */
            atomic { !firing[w] -> armed[w] = false };
            /* end_block() */
            atomic { if :: st[w] == TIMEDOUT -> st[w] = IDLE :: else -> skip fi };
            ok = false
       fi
  fi
}

proctype timer(byte w) {
  bool r;
end_idle:
  do
  :: atomic { armed[w] -> armed[w] = false; firing[w] = true; expired[w] = true };
     /* park_timeout(): timeout_block() */
     atomic {
       r = false;
       if
       :: st[w] == BLOCKED -> st[w] = IDLE; r = true
#ifndef BUG_TIMEOUT_MARK
       :: st[w] == IDLE -> st[w] = TIMEDOUT
#endif
       :: else -> skip
       fi
     };
     if :: r -> make_runnable(w) :: else -> skip fi;
     firing[w] = false
  od
}
#endif

inline park(w) {
#ifdef UTHREAD
  park_uthread(w)
#else
  park_thread(w)
#endif
}

/* block_on(): res = GOT, CANCELED or TIMEDOUT_R. */
#define GOT 1
#define CANCELED 2
#define TIMEDOUT_R 3
inline block_on(w, res) {
  atomic { inwait[w] = true; expired[w] = false };       /* a new deadline */
  got = false;
  from = NOQ;
  try_all(w, got, from);
  if
  :: got -> res = GOT
  :: else ->
       do
       :: atomic { st[w] = IDLE; woken_by[w] = NOQ };   /* w.reset() */
          /* add_solo(): nobody listed, then CAS the slot */
          if
          :: SOLO(w) && nwaiters[SQ(w)] == 0 ->
               atomic { if :: solo[SQ(w)] == NOW -> solo[SQ(w)] = w; mine = true :: else -> skip fi }
          :: else -> skip
          fi;
          q = 0;
          do                                            /* else add_waiter on each */
          :: q < NQ && !mine ->
               if :: ON(w, q) -> atomic { !qlock[q] -> LINKED(q, w) = true; nwaiters[q]++ } :: else -> skip fi;
               q++
          :: else -> break
          od;
          q = 0;
          /* seq_cst fence, then re-check */
#ifdef BUG_NO_RECHECK
          skip;
#elif defined(BUG_SOLO_NO_RECHECK)
          if :: !mine -> try_all(w, got, from) :: else -> skip fi;
#else
          try_all(w, got, from);
#endif
          if :: !got -> any_closed(w, cl) :: else -> cl = false fi;
          if :: !got && !cl -> park(w) :: else -> skip fi;
          if
          :: mine ->
               /* remove_solo(): CAS the slot back, or await the claimer */
               atomic { if :: solo[SQ(w)] == w -> solo[SQ(w)] = NOW; ok = true :: else -> ok = false fi };
#ifndef BUG_SOLO_NO_AWAIT
               if :: !ok -> (st[w] == NOTIFIED) :: else -> skip fi;
#endif
               assert(!held[w]);
               ok = false
          :: else ->
               q = 0;
               do                                       /* remove_waiter on each */
               :: q < NQ ->
                    if :: ON(w, q) -> atomic { !qlock[q] -> LINKED(q, w) = false; nwaiters[q]-- } :: else -> skip fi;
                    q++
               :: else -> break
               od;
               q = 0
          fi;
          mine = false;
          by = woken_by[w];
          if :: !got -> try_all(w, got, from) :: else -> skip fi;
          if
          :: got -> pass_on(by); res = GOT; break
          :: else -> skip
          fi;
          if :: !cl -> any_closed(w, cl) :: else -> skip fi;
          if
          :: cl -> pass_on(by); res = CANCELED; break
          :: else -> skip
          fi;
          if
          :: by != NOQ ->
               clock(w);
               if :: !expired[w] -> by = NOQ; goto again :: else -> skip fi
          :: else -> skip
          fi;
          clock(w);
          if
          :: expired[w] -> pass_on(by); res = TIMEDOUT_R; break
          :: else -> skip
          fi;
again:    by = NOQ
       od
  fi;
  inwait[w] = false;
  by = NOQ; from = NOQ; got = false; cl = false
}

proctype waiter(byte w) {
  byte res, q, from, by, s = NOW;
  bool got, cl, ok, won, mine;
  do
  :: block_on(w, res);
     if
     :: res == GOT && w == 0 -> res = 0                 /* handle it; wait again */
     :: else -> break                                   /* waiter 1 leaves after one call */
     fi
  od
}

/* When nothing can move: nobody is stuck in block_on over a message or a
 * closed queue, and nobody with a deadline is stuck at all. */
proctype monitor() {
  byte w = 0, q;
  timeout ->
  do
  :: w < NW ->
       q = 0;
       do
       :: q < NQ ->
            assert(!(inwait[w] && ON(w, q) && (mb[q] == M_VISIBLE || closed[q])));
            q++
       :: else -> break
       od;
       assert(!(inwait[w] && timed[w]));
       w++
  :: else -> break
  od
}

init {
  atomic {
#if defined(WAKE_ONE) || defined(MULTI) || defined(UTHREAD)
    timed[1] = true;
#endif
    woken_by[0] = NOQ;
    woken_by[1] = NOQ;
    solo[0] = NOW;
#ifdef MULTI
    solo[1] = NOW;
#endif
#ifdef MULTI
    producers_left = 2;
    run producer(0, 1);
    run producer(1, 2);
#else
    producers_left = 2;
    run producer(0, 2);
    run producer(0, 1);
#endif
#ifdef CLOSE
    run closer();
#endif
    run waiter(0);
    run waiter(1);
#ifdef UTHREAD
    run timer(1);
#endif
    run monitor()
  }
}
