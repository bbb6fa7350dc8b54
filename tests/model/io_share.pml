/* Several callers of ueq::io waiting on one side of one fd: the side's one
 * bit is posted once per edge, the first caller to wake takes it, and every
 * caller must still retry its call while the file has what it waits for,
 * without a hand-over that keeps callers trying for ever.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   taps/io.cpp  retry() and the other call loops: wait_state::note()
 *                (`taken` before each try), then the try
 *   taps/io.cpp  wait_sides(): share_count (`waiting` up), block_on()
 *                with its wake_check (moved()), took() (`taken` up, wake
 *                the queue's waiters if `waiting` > 1), `waiting` down
 *   ceq/evq/block_on.cpp wait_loop() with a wake_check: register,
 *                re-check the mailbox, then the check, park, unregister,
 *                look at the mailbox again; a wake without a message, or
 *                the check, returns EAGAIN (the caller retries its call)
 *   ceq/evq/event_queue.cpp: a post that sets the bit wakes every
 *                registered waiter (wake-all); a post to a set bit only
 *                coalesces; wake_waiters() wakes every registered waiter
 *                (one step here: registered in the queue's one-waiter slot
 *                or on its list, tests/model/wakeup.pml has the slot; its
 *                fence orders the slot's look as the lock orders the list's)
 *
 * Setting: NW callers read from a socket that holds nothing. A writer puts
 * NW units in at once (one edge), and the host poll later posts the side's
 * bit (the tap). Each caller notes `taken`, tries (takes a unit if there is
 * one), and on EAGAIN waits as wait_sides() does, then tries again. Each
 * wants one unit; with -DMORE each wants two, so every caller ends parked
 * with nothing left to read (a valid end there).
 *
 * Properties: every caller gets its unit (default: no valid end state has a
 * caller parked, so a caller asleep over data is an invalid end state);
 * and the calls' tries are bounded (an assertion on their count: a
 * hand-over that a taker can take back itself loops for ever).
 * Sequentially consistent steps: `taken` and `waiting` are seq_cst atomics,
 * the bit and the waiter list live under the queue's lock (one step each),
 * and a system call (the try) is ordered with the atomics around it.
 *
 * Bug variants, each rejected:
 *  -DBUG_NO_WAKE     the caller that takes the bit does not wake the
 *                    others: one that registered after the post, and
 *                    looked at `taken` before the taker's bump, sleeps
 *                    with units left.
 *  -DBUG_NO_RECHECK  a caller does not look at `taken` after registering:
 *                    the edge its try missed was taken before it registered.
 *  -DBUG_REPOST      (with MORE) the taker posts the bit again instead of
 *                    waking the others: it can take its own post back, try,
 *                    find nothing, and do it again, for ever.
 */
#ifndef NW
#define NW 2
#endif
#ifdef MORE
#define WANT 2
#else
#define WANT 1
#endif
#define BOUND (6 * NW * WANT)

byte units = 0;          /* what the socket holds */
bool mbox = false;       /* the side's bitmap mailbox */
byte taken = 0;          /* share::taken */
byte waiting = 0;        /* share::waiting */
byte tries = 0;          /* every caller's tries of its call */
bool reg[NW];            /* on the queue's waiter list */
bool woken[NW];          /* the waiter's parker */

/* Every registered waiter's parker is unparked (under the queue's lock). */
inline wake_registered() {
  j = 0;
  do
  :: j < NW -> if :: reg[j] -> woken[j] = true :: else -> skip fi; j++
  :: else -> break
  od
}

/* event_queue::post() of the bit: coalesces if set, else sets it and wakes
 * every registered waiter (one step: the seq_cst fence between the mailbox
 * and the waiter count makes it look atomic to block_on's register, then
 * re-check). */
inline post_bit() {
  atomic {
    if
    :: mbox -> skip
    :: else -> mbox = true; wake_registered()
    fi
  }
}

proctype writer() {
  byte j;
  units = NW;            /* one write: one edge */
  post_bit()             /* the host poll dispatches the tap's event */
}

proctype caller(byte w) {
  byte s0, j, have = 0;
  bool got, moved;
  do
  :: have == WANT -> break
  :: else ->
     s0 = taken;                                   /* wait_state::note() */
     atomic {                                      /* the try */
       tries++;
       assert(tries <= BOUND);
       if :: units > 0 -> units--; have++ :: else -> skip fi
     }
     if
     :: have == WANT -> skip
     :: else ->
        waiting++;                                 /* share_count */
        /* block_on() with a wake_check */
        atomic { reg[w] = true; woken[w] = false };
        got = false;
        atomic { if :: mbox -> mbox = false; got = true :: else -> skip fi };
#ifndef BUG_NO_RECHECK
        moved = (!got && taken != s0);
#else
        moved = false;
#endif
        if
        :: !got && !moved ->
#ifdef MORE
end_park:
#endif
           woken[w]                                /* park */
        :: else -> skip
        fi;
        reg[w] = false;
        if
        :: !got -> atomic { if :: mbox -> mbox = false; got = true :: else -> skip fi }
        :: else -> skip
        fi;
        /* a message: took(); else EAGAIN (moved, or woken without one) */
        if
        :: got ->
           taken++;
#ifdef BUG_REPOST
           if :: waiting > 1 -> post_bit() :: else -> skip fi
#elif !defined(BUG_NO_WAKE)
           if :: waiting > 1 -> atomic { wake_registered() } :: else -> skip fi
#endif
        :: else -> skip
        fi;
        waiting--
     fi
  od
}

init {
  byte i;
  atomic {
    i = 0;
    do
    :: i < NW -> run caller(i); i++
    :: else -> break
    od;
    run writer()
  }
}
