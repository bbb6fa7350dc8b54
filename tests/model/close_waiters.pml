/* An epoll fd's last number closed while waits sleep in its set: the set
 * keeps its entries until the last of those waits returns (as Linux's
 * waiter holds the file), and is torn down exactly once.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   epoll/registry.cpp drop_set_number(): under reg().mu, `unnamed` set,
 *                then `sleepers` read; none: tear_down()
 *   epoll/registry.cpp enter_wait(): `sleepers` up, then `unnamed` read;
 *                set: leave_wait() and EBADF
 *   epoll/registry.cpp leave_wait(): `sleepers` down, then `unnamed` read;
 *                the last out of an unnamed set takes reg().mu and, if
 *                `sleepers` is still 0, tear_down()
 *   epoll/registry.cpp tear_down(): under the set's lock, once (`dead`)
 * Each atomic is seq_cst in the code; spin's interleavings are sequentially
 * consistent, which is what those give these accesses.
 *
 * Setting: one closer, NW waits. A wait that read `unnamed` clear sleeps
 * (`in_set`) until it leaves, at any point after the closer or before it.
 *
 * Properties: no tear-down while a wait that entered sleeps in the set,
 * and no wait enters a set torn down (assertions in tear_down and in the
 * waiter); once everyone is done the set is torn down,
 * exactly once (assertion at the end).
 *
 * Bug variants (each must be rejected):
 *   -DBUG_NO_LAST_OUT: the last wait out does not tear down (the set lives
 *                      on, its taps with it)
 *   -DBUG_CLEAR_FLAG:  the closer clears `unnamed` after it tore down (a
 *                      wait entering then sleeps in a dead set)
 *   -DBUG_LOAD_FIRST:  the closer reads `sleepers` before it sets `unnamed`
 */
#ifndef NW
#define NW 2
#endif

byte sleepers = 0;
bool unnamed = false;
bool dead = false;
byte teardowns = 0;
bool in_set[NW];
bool mu = false;  /* reg().mu */
byte done = 0;

inline lock() { atomic { !mu -> mu = true } }
inline unlock() { mu = false }

inline tear_down() {
  byte k;
  for (k : 0 .. NW - 1) { assert(!in_set[k]) }
  if
  :: !dead -> dead = true; teardowns++
  :: else -> skip
  fi
}

inline leave_wait() {
  sleepers--;
  if
#ifndef BUG_NO_LAST_OUT
  :: sleepers == 0 && unnamed ->
    lock();
    if
    :: sleepers == 0 -> tear_down()
    :: else -> skip
    fi;
    unlock()
#endif
  :: else -> skip
  fi
}

active proctype closer() {
  lock();
#ifdef BUG_LOAD_FIRST
  if
  :: sleepers == 0 -> unnamed = true; tear_down()
  :: else -> unnamed = true
  fi;
#else
  unnamed = true;
  if
  :: sleepers == 0 -> tear_down()
  :: else -> skip
  fi;
#endif
#ifdef BUG_CLEAR_FLAG
  unnamed = false;
#endif
  unlock();
  done++
}

active [NW] proctype waiter() {
  byte me = _pid - 1;
  sleepers++;
  if
  :: unnamed -> leave_wait()                 /* EBADF */
  :: else ->
    in_set[me] = true;                       /* sleeps; reports from the set */
    assert(!dead);
    in_set[me] = false;
    leave_wait()
  fi;
  done++
}

active proctype end_check() {
  done == NW + 1;
  assert(dead && teardowns == 1)
}
