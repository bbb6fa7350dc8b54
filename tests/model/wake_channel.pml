/* The wake channel: a "wake pending" flag plus an eventfd that breaks the
 * host poll from another thread.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   taps/wake_channel.hpp   wake_channel::wake(), wake_channel::drained()
 *   taps/epoll_backend.cpp  epoll_backend::poll(): the wait, and
 *                           drained() when the eventfd is reported
 *   taps/epoll_backend.cpp  the eventfd registered EPOLLIN|EPOLLET
 *   taps/uring_backend.cpp  the io_uring backend's drained(): its
 *                           multishot poll of the eventfd reports
 *                           once per write, as the edge model does
 *
 * Parties: NW wakers, each ROUNDS times setting a condition (the thing the
 * poller must see: a parker's kNotified, a poller removal) and then calling
 * wake(); one poller looping: look at the conditions, block in the host
 * poll until the eventfd is reported, call drained().
 *
 * The kernel objects, as Linux implements them:
 *  - eventfd: a counter; write(1) adds 1; read() returns and zeroes it (it
 *    is non-blocking: a read of 0 fails with EAGAIN and changes nothing).
 *  - edge-triggered epoll item: every write queues the item on the ready
 *    list (ep_poll_callback); epoll_wait takes it off, polls the eventfd
 *    again and reports it only if it is readable then (ep_send_events); an
 *    item not reported is not re-queued, and epoll_wait keeps waiting.
 *    The poll has no deadline and no other fd here: only the eventfd can
 *    end it.
 *
 * Property: whenever a waker has set its condition, the poller eventually
 * observes it. The poller ends once it has seen all NW*ROUNDS conditions,
 * so a poller blocked in epoll_wait after the wakers finished, with a
 * condition unseen, is an invalid end state.
 *
 * -DBUG_WAKE_CHANNEL: drained() clears the flag, then reads. A wake()
 * between the two steps writes, the read swallows it, the flag stays set over an
 * empty eventfd, and every later wake() skips its write: rejected.
 */
#ifndef NW
#define NW 3
#endif
#ifndef ROUNDS
#define ROUNDS 2
#endif
#define TOTAL (NW * ROUNDS)

bool pending;      /* wake_channel::pending_ */
byte efd_count;    /* the eventfd's counter */
bool ep_ready;     /* the eventfd's item is on the epoll ready list */
byte conds;        /* conditions set by wakers (a count: each is distinct) */
byte seen;         /* conditions the poller has observed */

inline efd_write() {
  atomic { efd_count++; ep_ready = true }
}

inline efd_read() {
  efd_count = 0
}

inline wake() {
  /* if (pending_.exchange(true, seq_cst)) return; write(fd_, 1) */
  atomic { was = pending; pending = true };
  if
  :: was -> skip
  :: else -> efd_write()
  fi
}

inline drained() {
#ifdef BUG_WAKE_CHANNEL
  pending = false;             /* store(false) */
  efd_read();                  /* read() */
#else
  efd_read();                  /* read() */
  pending = false              /* exchange(false, acq_rel) */
#endif
}

proctype waker() {
  byte r = 0;
  bool was;
  do
  :: r < ROUNDS ->
       conds++;                /* set the condition, then wake */
       wake();
       r++
  :: else -> break
  od
}

proctype poller() {
  bool reported;
  do
  :: seen == TOTAL -> break
  :: else ->
       seen = conds;           /* look at the conditions */
       if
       :: seen == TOTAL -> skip
       :: else ->
            /* epoll_pwait2: blocks until the item is queued, then reports
             * it if the eventfd is readable, else keeps waiting. */
            reported = false;
            do
            :: atomic { ep_ready -> ep_ready = false; reported = (efd_count > 0) };
               if :: reported -> break :: else -> skip fi
            od;
            drained()
       fi
  od
}

init {
  byte i = 0;
  atomic {
    do
    :: i < NW -> run waker(); i++
    :: else -> break
    od;
    run poller()
  }
}
