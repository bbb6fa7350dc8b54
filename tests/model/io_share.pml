/* Several callers of ueq::io waiting on one side of one fd: the side's one
 * bit is posted once per edge, the first caller to wake takes it, and every
 * caller must still retry its call while the file has what it waits for.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   taps/io.cpp  retry() and the other call loops: wait_state::note()
 *                (`taken` before each try), then the try
 *   taps/io.cpp  wait_sides(): share_count (`waiting` up), moved()
 *                (`taken` again), block_on() on the side's queue, took()
 *                (`taken` up, post again if `waiting` > 1), `waiting` down
 *   ceq/evq/block_on.cpp, event_queue.cpp: register, re-check the mailbox,
 *                park, unregister, look again; a post that sets the bit
 *                wakes every registered waiter (wake-all); a post to a set
 *                bit only coalesces
 *
 * Setting: NW callers each read one unit from a socket that holds none. A
 * writer then puts NW units in at once (one edge), and the host poll later
 * posts the side's bit (the tap). Each caller notes `taken`, tries (takes a
 * unit if there is one), and on EAGAIN waits as wait_sides() does, then
 * tries again.
 *
 * Property: every caller gets its unit: no valid end state has a caller
 * parked (spin reports an invalid end state otherwise). Sequentially
 * consistent steps: `taken` and `waiting` are seq_cst atomics, the bit and
 * the waiter list live under the queue's lock (one step each), and a
 * system call (the try) is ordered with the atomics around it.
 *
 * Bug variants, each rejected:
 *  -DBUG_NO_REPOST   the caller that takes the bit does not post it again:
 *                    the others, woken by the same post, find the bit gone
 *                    and sleep with units left in the socket.
 *  -DBUG_NO_RECHECK  a caller does not look at `taken` after counting
 *                    itself: the edge its try missed was taken (and not
 *                    passed on) before it was counted.
 */
#ifndef NW
#define NW 2
#endif

byte units = 0;          /* what the socket holds */
bool mbox = false;        /* the side's bitmap mailbox */
byte taken = 0;          /* share::taken */
byte waiting = 0;        /* share::waiting */
bool reg[NW];            /* on the queue's waiter list */
bool woken[NW];          /* the waiter's parker */
bool arrived = false;    /* the writer has written (the edge) */

/* event_queue::post() of the bit: coalesces if set, else sets it and wakes
 * every registered waiter (one step: the mailbox, then notify under the
 * queue's lock; the seq_cst fence makes it look atomic to block_on's
 * register-then-recheck). */
inline post_bit() {
  atomic {
    if
    :: mbox -> skip
    :: else ->
       mbox = true;
       j = 0;
       do
       :: j < NW -> if :: reg[j] -> woken[j] = true :: else -> skip fi; j++
       :: else -> break
       od
    fi
  }
}

proctype writer() {
  byte j;
  units = NW;            /* one write: one edge */
  arrived = true;
  post_bit()             /* the host poll dispatches the tap's event */
}

proctype caller(byte w) {
  byte s0, j;
  bool got, done = false;
  do
  :: done -> break
  :: else ->
     s0 = taken;                                   /* wait_state::note() */
     atomic { if :: units > 0 -> units--; done = true :: else -> skip fi }  /* the try */
     if
     :: done -> skip
     :: else ->
        waiting++;                                 /* share_count */
#ifndef BUG_NO_RECHECK
        if
        :: taken != s0 -> goto counted_out         /* moved(): try again */
        :: else -> skip
        fi;
#endif
        /* block_on(): register, re-check, park, unregister, look again,
           until it has the bit */
        got = false;
        do
        :: got -> break
        :: else ->
           atomic { reg[w] = true; woken[w] = false };
           atomic { if :: mbox -> mbox = false; got = true :: else -> skip fi };
           if
           :: !got -> woken[w]                     /* park */
           :: else -> skip
           fi;
           reg[w] = false;
           if
           :: !got -> atomic { if :: mbox -> mbox = false; got = true :: else -> skip fi }
           :: else -> skip
           fi
        od;
        /* took(): the others get the bit again */
        taken++;
#ifndef BUG_NO_REPOST
        if
        :: waiting > 1 -> post_bit()
        :: else -> skip
        fi;
#endif
counted_out:
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
