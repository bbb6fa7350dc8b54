/* Who polls the host: the parker's leader/follower protocol.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   runtime/parker.cpp  try_lead(), link_follower(), unlink_follower(),
 *                       offer_leadership()
 *   runtime/parker.cpp  wake_host_poller()
 *   runtime/parker.cpp  parker::unpark(), park(), leave(),
 *                       poll_host(), sleep()
 *   runtime/parker.cpp  set_host_poller() installing a poller
 * The host poller's wake() is a flag the poll consumes when it returns
 * (tests/model/wake_channel.pml checks that the wake channel behaves so).
 *
 * Parties: plain threads parking (no park hook, may_poll_host_ set), each
 * ROUNDS times: reset the parker, make its event possible, park() until
 * unparked. Thread 0's event comes from a waker thread outside the poll (a
 * post from a thread that is not polling: it unparks thread 0, which may be
 * the leader, inside the host poll); thread 1's from the host kernel: only a
 * poll() can see it and dispatch it (the dispatch unparks thread 1, or marks
 * the leader itself notified without waking its own poll: tl_polling). A
 * host poller is installed from the start, or with -DINSTALL by another
 * thread while the others run (so they may sleep before there is one). With
 * -DTIMEOUT a third thread parks with a deadline for an event that never
 * comes, so it can be offered the leadership and then leave. A deadline may
 * pass at any step where the code reads the clock. park()'s spinning phase
 * is left out (it returns before anyone follows, so it has nothing to pass
 * on).
 *
 * Handshakes (2) and (4) are modeled with their seq_cst fences as
 * sequentially consistent steps: link + CAS to kSleeping, then load
 * g_leader, then g_poller (follower); store g_leader = false, then look for
 * sleeping followers (leader); store g_poller, then look for sleeping
 * followers (installer). The steps taken under g_list_lock are single
 * atomic steps.
 *
 * Properties:
 *  - every thread ends every round (no invalid end state): no waiter sleeps,
 *    or polls, forever while an unpark for it happened or its host event is
 *    ready;
 *  - when nothing can move, no thread sleeps as a follower while a poller
 *    is installed and nobody leads.
 *
 * Bug variants, each rejected:
 *  -DBUG_NO_RECHECK        (default configuration) the follower does not
 *                          check g_leader and g_poller after linking itself
 *                          and moving to kSleeping.
 *  -DBUG_CLEAR_LATE        (default) the leaving leader offers the role
 *                          before it clears g_leader.
 *  -DBUG_NO_POLL_WAKE      (default) unpark() of a kPolling waiter does not
 *                          wake the poll.
 *  -DBUG_NO_PASS_OFFER     (-DTIMEOUT -DROUNDS=1) the pass-on is decided at
 *                          the end of sleep(), by guessing whether park()
 *                          returns, not where park() returns (no leave()): a
 *                          leaving leader offers the role to a follower that
 *                          has just seen g_leader clear (so it did not
 *                          sleep); sleep() finds it not returning and passes
 *                          nothing on; an unpark lands; park() sees kNotified
 *                          and returns: nobody leads while thread 1 sleeps
 *                          as a follower.
 *  -DBUG_NOT_FOLLOWER      (-DINSTALL) a parker sleeps as a follower only if
 *                          it saw a poller: thread 1, asleep before the
 *                          poller was installed, is not linked, so
 *                          set_host_poller()'s offer does not reach it and
 *                          its host event is never dispatched.
 *  -DBUG_INSTALL_NO_FENCE  (-DINSTALL) set_host_poller() has no fence between
 *                          its store of g_poller and offer_leadership()'s
 *                          look for followers (the store-load reordering
 *                          modeled as the look coming first): a follower that
 *                          saw no poller and an installer that saw no
 *                          follower; nobody polls.
 * Larger configurations pass too but are left out of tests/meson.build for
 * time: -DINSTALL -DTIMEOUT -DROUNDS=1 (13 M states, 35-50 s on 2 cores)
 * and -DTIMEOUT with ROUNDS=2 (48 M states, ~155 s); -DINSTALL -DTIMEOUT
 * (ROUNDS=2) does not fit in check.sh's 3 GB.
 * Not modeled: poller removal (set_host_poller(nullptr), handshake (3)), the
 * signal mask, a uthread's park (tests/model/wakeup.pml -DUTHREAD).
 */
#ifndef ROUNDS
#define ROUNDS 2
#endif
#ifdef TIMEOUT
#define NT 3
#else
#define NT 2
#endif
#define NOBODY 255

#define IDLE 0
#define NOTIFIED 1
#define SLEEPING 2
#define POLLING 3

byte st[NT];              /* parker::state_ */
bool linked[NT];          /* on g_followers */
byte nfollowers;          /* g_nfollowers */
bool g_leader;
bool g_poller;            /* a host poller is installed */
bool poll_wake;           /* the poller's wake() happened, not yet consumed */
bool want[NT];            /* ghost: the thread's event may now happen */
byte rnd[NT];             /* ghost: the thread's current round, from 1 */
bool host_ready;          /* thread 1's host event is ready, not yet dispatched */
bool expired[NT];         /* the thread's deadline has passed */
bool timed[NT];
byte finished;            /* threads that finished all rounds */

inline clock(t) {
  if
  :: timed[t] && !expired[t] -> expired[t] = true
  :: true -> skip
  fi
}

/* offer_leadership(): wake one sleeping follower (CAS kSleeping -> kIdle). */
inline offer_leadership() {
  if
  :: nfollowers == 0 -> skip                               /* relaxed load */
  :: else ->
       atomic {                                            /* under g_list_lock */
         if
         :: linked[0] && st[0] == SLEEPING -> st[0] = IDLE
         :: linked[1] && st[1] == SLEEPING -> st[1] = IDLE
#ifdef TIMEOUT
         :: linked[2] && st[2] == SLEEPING -> st[2] = IDLE
#endif
         :: else -> skip
         fi
       }
  fi
}

/* parker::unpark() by thread `me` (NOBODY: a thread outside this model). */
inline unpark(x, me) {
  atomic { prev = st[x]; st[x] = NOTIFIED };
  /* kSleeping: futex_wake, i.e. the end of x's wait below */
#ifndef BUG_NO_POLL_WAKE
  if
  :: prev == POLLING && me != x ->                         /* tl_polling != this */
       /* wake_host_poller(): load g_poller, call its wake() */
       if :: g_poller -> poll_wake = true :: else -> skip fi
  :: else -> skip
  fi;
#endif
  prev = IDLE
}

/* The host poller's poll(): returns when woken or when a host event is
 * ready, and dispatches what it found. */
inline host_poll(me) {
  if
  :: atomic { poll_wake || host_ready -> skip }
  :: timed[me] -> expired[me] = true                       /* the poll's deadline */
  fi;
  poll_wake = false;                                       /* drained() */
  if
  :: host_ready -> host_ready = false; unpark(1, me)      /* dispatch */
  :: else -> skip
  fi
}

inline poll_host(me) {
  atomic { ok = (st[me] == IDLE); if :: ok -> st[me] = POLLING :: else -> skip fi };
  if
  :: ok ->
       do
       :: !g_poller -> break
       :: else ->
            host_poll(me);
            if
            :: st[me] == NOTIFIED -> break
            :: else ->
                 clock(me);
                 if :: expired[me] -> break :: else -> skip fi
            fi
       od;
       atomic { if :: st[me] == POLLING -> st[me] = IDLE :: else -> skip fi }
  :: else -> skip
  fi;
  ok = false;
#ifdef BUG_CLEAR_LATE
  offer_leadership();
  g_leader = false
#else
  g_leader = false;                                        /* then seq_cst fence */
  offer_leadership()
#endif
}

inline sleep(me, follower) {
  if :: follower -> atomic { linked[me] = true; nfollowers++ } :: else -> skip fi;
  atomic { ok = (st[me] == IDLE); if :: ok -> st[me] = SLEEPING :: else -> skip fi };
  if
  :: ok ->
       sleep_now = true;
#ifndef BUG_NO_RECHECK
       /* after the fence: no leader and a poller, try to lead instead */
       if
       :: follower && !g_leader ->
            if :: g_poller -> sleep_now = false :: else -> skip fi
       :: else -> skip
       fi;
#endif
       if
       :: sleep_now ->
            if
            :: st[me] != SLEEPING -> skip                 /* woken */
            :: timed[me] -> expired[me] = true            /* futex timeout */
            fi
       :: else -> skip
       fi;
       atomic { if :: st[me] == SLEEPING -> st[me] = IDLE :: else -> skip fi }
  :: else -> skip
  fi;
  ok = false; sleep_now = false;
  if :: follower -> atomic { linked[me] = false; nfollowers-- } :: else -> skip fi
#ifdef BUG_NO_PASS_OFFER
  ;
  /* the old guess: returning = notified || deadline passed */
  clock(me);
  returning = (st[me] == NOTIFIED) || expired[me];
  if :: returning && follower && !g_leader -> offer_leadership() :: else -> skip fi;
  returning = false
#endif
}

/* parker::leave(): a thread that slept as a follower and returns passes the
 * role on if nobody leads and a poller is installed. */
inline leave(me) {
#ifndef BUG_NO_PASS_OFFER
  if
  :: followed && !g_leader ->
       if :: g_poller -> offer_leadership() :: else -> skip fi
  :: else -> skip
  fi;
#endif
  followed = false
}

inline park(me) {
  do
  :: st[me] == NOTIFIED -> leave(me); break
  :: else ->
       clock(me);
       if
       :: expired[me] -> leave(me); break
       :: else ->
            hp = g_poller;                                 /* may_poll_host_: load it */
            /* try_lead(): !g_leader.load() && !g_leader.exchange(true) */
            if
            :: hp -> atomic { led = !g_leader; g_leader = true }
            :: else -> led = false
            fi;
            if
            :: led -> led = false; poll_host(me)
            :: else ->
#ifdef BUG_NOT_FOLLOWER
                 sleep(me, hp);
                 followed = followed || hp
#else
                 sleep(me, true);                          /* may_poll_host_ */
                 followed = true
#endif
            fi;
            hp = false
       fi
  od
}

proctype thread(byte me) {
  byte r = 0, prev;
  bool hp, led, ok, sleep_now, followed;
#ifdef BUG_NO_PASS_OFFER
  bool returning;
#endif
  do
  :: r < ROUNDS ->
       atomic { st[me] = IDLE; expired[me] = false };      /* reset; a new deadline */
       atomic { rnd[me] = r + 1; want[me] = true };        /* its event may come */
       park(me);
       assert(st[me] == NOTIFIED || timed[me]);
       want[me] = false;
       r++
  :: else -> break
  od;
  finished++
}

/* The producer of thread 0's events, outside the poll. */
proctype waker() {
  byte fired = 0, prev;
  do
  :: fired < ROUNDS ->
       atomic { want[0] && rnd[0] != fired -> fired = rnd[0] };   /* this round's event */
       unpark(0, NOBODY)
  :: else -> break
  od
}

/* The host kernel: thread 1's fd becomes ready once per round. */
proctype kernel() {
  byte fired = 0;
  do
  :: fired < ROUNDS ->
       atomic { want[1] && rnd[1] != fired -> fired = rnd[1]; host_ready = true }
  :: else -> break
  od
}

#ifdef INSTALL
/* set_host_poller(p): exchange (seq_cst), fence, then offer the role. */
proctype installer() {
#ifdef BUG_INSTALL_NO_FENCE
  offer_leadership();
  g_poller = true
#else
  g_poller = true;                                         /* then seq_cst fence */
  offer_leadership()
#endif
}
#endif

/* When nothing can move: a sleeping follower while a poller is installed
 * means someone leads. */
proctype monitor() {
  timeout ->
    assert(!(g_poller && !g_leader &&
             ((linked[0] && st[0] == SLEEPING) || (linked[1] && st[1] == SLEEPING)
#ifdef TIMEOUT
              || (linked[2] && st[2] == SLEEPING)
#endif
             )))
}

init {
  atomic {
#ifndef INSTALL
    g_poller = true;
#endif
    run thread(0);
    run thread(1);
#ifdef TIMEOUT
    timed[2] = true;
    run thread(2);
#endif
    run waker();
    run kernel();
#ifdef INSTALL
    run installer();
#endif
    run monitor()
  }
}
