/* Several plain threads in epoll_wait on one set: one leads the host poll,
 * the others wait in standby, and one event wakes one of them.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   epoll/pending.hpp     pending_signal::wake_one(), raise(), settle()'s
 *                         pending path, leave(), sleeper (count, then read
 *                         the flag)
 *   epoll/set.hpp         impl::lead_host_poll(), standby(),
 *                         leave_unharvested()
 *   epoll/ctl_wait.cpp    epoll_set::impl::wait(): the first call's
 *                         non-blocking host poll, harvest, lead, standby, and
 *                         the hand-off passed on when it returns
 *   taps/tap_service.cpp  tap_service::poll()'s release of the role,
 *                         await_role(), end_await_role(), pass_role(),
 *                         become_deputy(), end_deputy()
 * settle()'s eventfd handshake is tests/model/settle.pml's; here the set's
 * "pending" flag is `signaled` alone.
 *
 * Parties: NW plain waiters on one set, each calling epoll_wait with
 * maxevents 1 (so a harvest can leave events for another) until it has
 * returned ROUNDS events; HE host events, which only a poll of the host can
 * see and dispatch; NP posts from a thread that is not polling (a ctl's
 * readiness probe), which must wake a waiter themselves; a thread of
 * another set that leads the host poll OL times (it dispatches our events
 * as a stranger, and hands the role off when it ends). With -DTIMEOUT every sleep may end at its
 * deadline and with -DSIGNAL a leader's host poll may end with EINTR: the
 * waiter then returns and waits no more.
 *
 * The sleeps, as the kernel gives them:
 *  - the host poll returns when a host event is ready or the wake channel
 *    was written (wake()); one poller at a time (the role);
 *  - the deputy (one waiter for the role at a time) sleeps in ppoll() on
 *    the set's eventfd (readable here while signaled is set: settle.pml
 *    checks that it is) and the host's fd;
 *  - standby sleeps in the set's epoll fd, which holds the bell and the
 *    role hand-off fd, both edge-triggered: an edge is queued until a
 *    sleeper takes it, and one sleeper takes each (the kernel's exclusive
 *    wait queue); a sleeper takes every queued edge at once.
 *
 * Not modelled: a process whose host poll belongs to a poller thread or to
 * parked threads (lead_host_poll() answers `others`: the waiter sleeps on
 * the bell alone with a poller thread, or, with parkers, as settle.pml's
 * plain waiter does, on the eventfd and the host's fd, polling when woken);
 * several sets (a hand-off edge goes to the first standby fd with a
 * sleeper, whichever set it serves; one that does not wait for the role
 * passes it on when it wakes: an extra wake, never a lost one); fork()
 * (a set handed to the kernel passes any hand-off on before its kernel
 * wait). The search is for safety: busy loops are settle.pml's concern.
 *
 * A harvest and its settle() are one step (the set's lock; settle()'s own
 * handshake with post_hook() is settle.pml's), and so is wake_one()'s pair
 * of loads (each count's handshake with signaled stands alone).
 *
 * seq_cst handshakes, as single steps in program order:
 *  - wake_one(): signaled is set (post_hook()'s exchange) before it reads
 *    host_sleepers, then standbys; lead_host_poll() and standby() count
 *    themselves before they read signaled;
 *  - poll() clears the role before it reads role_waiters; await_role()
 *    counts the waiter before it reads the role.
 *
 * Properties:
 *  - when nothing can move and some waiter still waits, no event is
 *    pending, neither in the set nor in the host (no lost wakeup, and the
 *    host is polled while anyone needs it);
 *  - every waiter that returned took at most what was there (no event is
 *    reported twice: took <= produced).
 *
 * Bug variants, each rejected:
 *  -DBUG_ROLE_NO_RECHECK  await_role() does not read the role after
 *                         counting itself: the leader leaves between the
 *                         waiter's decision and its count, hands off to
 *                         nobody, and the waiter sleeps in standby while
 *                         nobody polls the host over a host event.
 *  -DBUG_NO_PASS          (-DNW=3 -DNP=0 -DOL=0 -DHE=2 -DTIMEOUT) a
 *                         waiter that returns keeps the hand-off it was
 *                         due (here: a deputy woken by a host event, whose
 *                         deadline passes): the waiter for the role sleeps
 *                         while nobody polls the host.
 *  -DBUG_LEAVE_NO_WAKE    (-DSIGNAL) a waiter that returns EINTR does not
 *                         wake another for the event left pending: a post
 *                         woke its host poll (it leads), the signal ended
 *                         the poll first, and the waiter in standby sleeps
 *                         over the post.
 *  -DBUG_STANDBY_ORDER    (-DKEEPS) standby() reads signaled before it
 *                         counts itself: a post between the two rings no
 *                         one.
 *  -DBUG_DEPUTY_NO_DEBT   the deputy wakes without taking on a hand-off:
 *                         the poller ended while it slept and handed off
 *                         to no one (a deputy watches the host); the deputy
 *                         returns with a post, and a waiter for the role
 *                         sleeps while nobody polls the host.
 *  -DBUG_NO_LEFTOVER_WAKE a harvest that leaves events (maxevents 1) on a
 *                         set already signaled wakes no one: the other
 *                         waiters sleep over them.
 */
#ifndef NW
#define NW 2
#endif
#ifndef HE
#define HE 1
#endif
#ifndef NP
#define NP 1
#endif
#ifndef ROUNDS
#define ROUNDS 1
#endif
#ifndef OL
#define OL 1
#endif

byte q;             /* events in the set, not yet harvested */
bool signaled;      /* pending_signal::signaled_: the set is pending */
byte host_ev;       /* host events the kernel holds, not yet dispatched */
byte host_done;     /* ghost: host events made */
byte posts_done;    /* ghost: other posts made */
byte taken;         /* ghost: events returned to the program */
bool role;          /* tap_service's polling flag */
byte role_waiters;  /* tap_service's role_waiters */
byte host_sleepers; /* pending_signal::counts_[host] */
byte standbys;      /* pending_signal::counts_[standby] */
bool wake_ch;       /* the host's wake channel, consumed when its poll returns */
bool bell;          /* a bell edge queued in the standby epoll fd */
bool hand;          /* a hand-off edge queued in the standby epoll fd */
bool deputy;        /* tap_service's deputy flag */
byte deputies;      /* pending_signal::counts_[deputy] */
byte leading = 255; /* which waiter leads the host poll (leading_scope) */
byte live = NW;   /* ghost: waiters that have not returned for good */

/* pending_signal::wake_one(): by thread `me` (255: not a waiter). */
inline wake_one(me) {
  atomic {
  if
  :: leading == me && me != 255 -> skip  /* our own dispatch: we harvest next */
  :: else ->
       if
       :: host_sleepers > 0 -> wake_ch = true  /* svc->wake() */
       :: host_sleepers == 0 && deputies > 0 -> skip  /* it wakes on the eventfd */
       :: host_sleepers == 0 && deputies == 0 ->
            if
            :: standbys > 0 -> bell = true      /* write(bell): one edge */
            :: else -> skip
            fi
       fi
  fi
  }
}

/* post_hook() after a post into the set. */
inline post_hook(me) {
  atomic { was = signaled; signaled = true };
  if
  :: !was -> wake_one(me)
  :: else -> skip
  fi
}

/* settle(), under mu, after a harvest. */
inline settle(me) {
  if
  :: q > 0 ->
       atomic { was = signaled; signaled = true };
#ifdef BUG_NO_LEFTOVER_WAKE
       if
       :: !was -> wake_one(me)
       :: else -> skip
       fi
#else
       wake_one(me)  /* already signaled: wake_one(); else raised() */
#endif
  :: else ->
       signaled = false;
       if
       :: q > 0 -> post_hook(me)  /* re-check the CEQ */
       :: else -> skip
       fi
  fi
}

/* Dispatches what the host holds (inside a poll, holding the role). */
inline dispatch(me) {
  do
  :: host_ev > 0 -> atomic { host_ev--; q++ }; post_hook(me)
  :: else -> break
  od
}

/* The end of tap_service::poll(): release, then read the waiters. */
inline release_role() {
  atomic { role = false; due = (role_waiters > 0 && deputy == 0) }
}

/* tap_service::pass_role() */
inline pass_role() {
  if
  :: role_waiters > 0 && deputy == 0 && !role -> hand = true
  :: else -> skip
  fi
}

/* impl::leave_unharvested(): a return with no harvest (EINTR) */
inline leave_unharvested(me) {
  if
  :: handed -> pass_role()
  :: else -> skip
  fi;
  handed = false;
#ifndef BUG_LEAVE_NO_WAKE
  if
  :: signaled -> wake_one(me)
  :: else -> skip
  fi
#endif
}

proctype host() {
  do
  :: host_done < HE -> atomic { host_ev++; host_done++ }
  :: else -> break
  od
}

/* A thread of another set (or any tap_service user) that leads the host
 * poll: it dispatches our host events as a stranger (it wakes one of our
 * waiters). It polls OL times and hands the role off at the end of each;
 * with -DKEEPS it polls on for good (a long-lived leader of its own set),
 * so our waiters in standby have only the bell. */
proctype other_leader() {
  bool was, due;
  byte k = 0;
  do
  :: k < OL ->
end_other:
       atomic { !role -> role = true };  /* (may wait for good) */
#ifdef KEEPS
end_keeps:
       do
       :: host_ev > 0 -> dispatch(255)
       od
#else
       if
       :: host_ev > 0 -> dispatch(255)
       :: host_done == HE -> skip       /* its own event: none of ours */
       fi;
       release_role();
       if
       :: due -> hand = true            /* poll()'s hand-off */
       :: else -> skip
       fi;
       k++
#endif
  :: else -> break
  od
}

proctype poster() {
  bool was;
  do
  :: posts_done < NP ->
       atomic { q++; posts_done++ };
       post_hook(255)
  :: else -> break
  od
}

proctype waiter(byte me) {
  bool was, due, handed, first, took, timed_out;
  byte rounds = 0;
call:
  first = true;
  handed = false;
loop:
  /* The first pass's non-blocking host poll (if the role is free). */
  if
  :: first ->
       first = false;
       if
       :: atomic { !role -> role = true } ->
            dispatch(me);
            release_role();
            handed = handed || due
       :: else -> skip
       fi
  :: else -> skip
  fi;
  /* harvest, maxevents 1 */
  atomic {
    took = false;
    if
    :: q > 0 -> q--; took = true
    :: else -> skip
    fi;
    settle(me)
  };
  if
  :: took ->
       taken++;
       assert(taken <= host_done + posts_done);
       if
       :: handed -> pass_role()     /* pass_on, after the harvest */
       :: else -> skip
       fi;
       rounds++;
       if
       :: rounds < ROUNDS -> goto call  /* the program waits again */
       :: else -> goto gone
       fi
  :: else -> skip
  fi;
#ifdef TIMEOUT
  /* The deadline may have passed: return 0, the hand-off passed on. */
  if
  :: me == 0 ->
#ifndef BUG_NO_PASS
       if
       :: handed -> pass_role()
       :: else -> skip
       fi;
#endif
       goto gone
  :: true -> skip
  fi;
#endif
  /* lead_host_poll() */
  host_sleepers++;
  was = signaled;
  if
  :: was -> host_sleepers--; goto loop  /* pending already: harvest */
  :: else -> skip
  fi;
  if
  :: atomic { !role -> role = true; leading = me } ->
       timed_out = false;
end_lead:
       if
       :: host_ev > 0 -> skip
       :: wake_ch -> skip
#if defined(TIMEOUT) || defined(SIGNAL)
       :: me == 0 -> timed_out = true
#endif
       fi;
       wake_ch = false;
       if
       :: !timed_out -> dispatch(me)
       :: else -> skip
       fi;
       leading = 255;
       release_role();
       host_sleepers--;
       handed = due;
#ifdef SIGNAL
       if
       :: timed_out -> leave_unharvested(me); goto gone  /* EINTR */
       :: else -> skip
       fi;
#endif
       goto loop  /* (a deadline: the loop returns 0 after its harvest) */
  :: atomic { role -> skip } ->
       host_sleepers--;
       handed = false  /* the poller hands off when it ends */
  fi;
  /* standby(), waiting for the role (another thread polls) */
  if
  :: handed -> pass_role(); handed = false
  :: else -> skip
  fi;
  /* the deputy: asleep on the eventfd (readable while signaled) and the
   * host's fd; it then owes a hand-off */
  if
  :: atomic { !deputy -> deputy = true } ->
       deputies++;
       timed_out = false;
end_deputy:
       if
       :: host_ev > 0 || signaled -> skip
#if defined(TIMEOUT) || defined(SIGNAL)
       :: me == 0 -> timed_out = true
#endif
       fi;
       deputies--;
       deputy = false;
#ifndef BUG_DEPUTY_NO_DEBT
       handed = true;
#endif
#ifdef SIGNAL
       if
       :: timed_out -> leave_unharvested(me); goto gone  /* EINTR */
       :: else -> skip
       fi;
#endif
       goto loop
  :: else -> skip
  fi;
  role_waiters++;
#ifndef BUG_ROLE_NO_RECHECK
  if
  :: !role -> role_waiters--; goto loop  /* free now: lead instead */
  :: else -> skip
  fi;
#endif
#ifdef BUG_STANDBY_ORDER
  was = signaled;
  standbys++;
#else
  standbys++;
  was = signaled;
#endif
  timed_out = false;
  if
  :: was -> skip
  :: else ->
end_standby:
       if
       :: atomic { bell || hand -> handed = hand; bell = false; hand = false }
#if defined(TIMEOUT) || defined(SIGNAL)
       :: me == 0 -> timed_out = true
#endif
       fi
  fi;
  standbys--;
  role_waiters--;
#ifdef SIGNAL
  if
  :: timed_out -> leave_unharvested(me); goto gone  /* EINTR */
  :: else -> skip
  fi;
#endif
  goto loop;
gone:
  live--
}

/* When nothing can move, a waiter still waiting sleeps over nothing. */
proctype monitor() {
  timeout ->
    assert(live == 0 || (host_done < HE || posts_done < NP) || (q == 0 && host_ev == 0))
}

init {
  byte i = 0;
  atomic {
    run host();
    run poster();
    run other_leader();
    do
    :: i < NW -> run waiter(i); i++
    :: else -> break
    od;
    run monitor()
  }
}
