/* Waking without losing (ceq/event_queue.cpp, ceq/block_on.cpp,
 * runtime/parker.cpp): waiters register on a queue, re-check its mailbox,
 * then park on their parker; producers publish a message, then look for
 * registered waiters and unpark them (all of them, or one with WAKE_ONE).
 * 3 waiters each take one message; 2 producers post 3 messages in all.
 * Property: every waiter gets its message and nobody sleeps forever (an
 * invalid end state would be a lost wakeup); nothing is left over.
 *
 * The seq_cst fences of the C++ code are what make "publish, then look"
 * and "register, then re-check" behave as these interleavings do.
 */
#define N 3
#define IDLE 0
#define NOTIFIED 1
#define SLEEPING 2

byte msgs;            /* the mailbox (a message queue) */
bool reg[N];          /* registered on the queue */
byte st[N];           /* each waiter's parker state */
byte taken;

/* The exchange in parker::unpark; the futex wake of a SLEEPING waiter is
 * its guard `st != SLEEPING`. */
inline unpark(i, won) {
  won = (st[i] != NOTIFIED);
  st[i] = NOTIFIED
}

proctype producer(byte count) {
  byte k = 0, i;
  bool won;
  do
  :: k < count ->
       msgs++;                                     /* publish (then fence) */
       i = 0;
       do                                          /* look for waiters */
       :: i < N ->
            /* Under the queue's lock: a linked waiter cannot unlink between
             * being seen and being woken. */
            won = false;
            atomic { if :: reg[i] -> unpark(i, won) :: else -> skip fi };
#ifdef WAKE_ONE
            if :: won -> break :: else -> skip fi;
#endif
            i++
       :: else -> break
       od;
       k++
  :: else -> break
  od
}

proctype waiter(byte me) {
  bool got = false, won;
  byte i;
  do
  :: atomic { msgs > 0 -> msgs--; got = true };   /* fast path: a message is there */
     break
  :: else ->
       st[me] = IDLE;                               /* reset the parker */
       reg[me] = true;                              /* register (then fence) */
       if
       :: atomic { msgs > 0 -> msgs--; got = true } /* re-check */
       :: else ->
            if                                      /* park */
            :: atomic { st[me] == IDLE -> st[me] = SLEEPING };
               (st[me] != SLEEPING)                 /* futex sleep until woken */
            :: atomic { st[me] == NOTIFIED -> skip }
            fi
       fi;
       reg[me] = false;                             /* unlink */
       if
       :: got -> skip
       :: atomic { !got && msgs > 0 -> msgs--; got = true }
       :: else -> skip                              /* spurious: wait again */
       fi;
#ifdef WAKE_ONE
       /* Woken, and leaving while messages remain: pass the wakeup on. */
       if
       :: st[me] == NOTIFIED && msgs > 0 ->
            i = 0;
            do
            :: i < N ->
                 won = false;
                 atomic { if :: reg[i] -> unpark(i, won) :: else -> skip fi };
                 if :: won -> break :: else -> skip fi;
                 i++
            :: else -> break
            od
       :: else -> skip
       fi;
#endif
       if :: got -> break :: else -> skip fi
  od;
  atomic { taken++ }
}

init {
  atomic {
    run waiter(0);
    run waiter(1);
    run waiter(2);
    run producer(1);
    run producer(2)
  }
  (taken == N);
  assert(msgs == 0)
}
