/* The identity set's handshake: an ADD that registers a number's new file
 * drops the stale entries other sets hold under that number, while a MOD
 * elsewhere probes the identity set without the registry lock.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   epoll/ctl_wait.cpp  ctl_full(), ADD: identity_seq to odd,
 *                       register_identity() (an ADD to the identity
 *                       set), drop_entries_of() (each holder under
 *                       its own lock), identity_seq to even; all
 *                       under the registry lock
 *   epoll/ctl_wait.cpp  impl::modify_registered(): identity_seq,
 *                       identity_probe() (a MOD on the identity
 *                       set), the set's lock, identity_seq again,
 *                       then the entry
 *   epoll/registry.cpp  register_identity(), identity_probe(),
 *                       drop_entries_of()
 *
 * Setting: NS sets each hold an entry under number N for a file closed
 * behind ueq's back; N now names a new file, not yet in the identity set.
 * One adder ADDs the new file to another set: it registers the pair (the
 * kernel's epoll_ctl is atomic: one step here) and drops the NS stale
 * entries. NM modifiers each MOD number N in one of the NS sets: the fast
 * path, or, where it gives up, the full path, which takes the registry lock
 * (waits for the adder) and answers from what the set holds then.
 *
 * Property: no MOD modifies a stale entry (Linux answers ENOENT: the entry
 * went with its file). Sequentially consistent steps: the two system calls
 * on the identity set are ordered by the kernel's mutex, and each thread's
 * atomics before a system call happen before it.
 *
 * Bug variants, each rejected:
 *  -DBUG_NO_SEQ       the MOD trusts its probe alone: it can find the new
 *                     pair before the adder has reached its set's stale
 *                     entry, and modify that entry.
 *  -DBUG_SEQ_LATE     the adder makes identity_seq odd after registering:
 *                     a MOD that read the even value and probed in between
 *                     sees the same value under the set's lock.
 */
#ifndef NS
#define NS 2
#endif
#ifndef NM
#define NM 2
#endif

byte seq = 0;             /* registry::identity_seq */
bool pair = false;        /* (N, new file) in the identity set */
bool stale[NS];           /* set i holds its stale entry under N */
bool set_lock[NS];        /* each set's mu */
bool reg_lock = false;    /* the registry's mu */
byte modified_stale = 0;  /* MODs that modified a stale entry */

inline lock(l) { atomic { !l -> l = true } }
inline unlock(l) { l = false }

proctype adder() {
  byte i;
  lock(reg_lock);
#ifndef BUG_SEQ_LATE
  seq++;                 /* odd: before the registration */
#endif
  pair = true;           /* register_identity: an ADD to the identity set */
#ifdef BUG_SEQ_LATE
  seq++;
#endif
  i = 0;
  do                     /* drop_entries_of: each holder under its lock */
  :: i < NS -> lock(set_lock[i]); stale[i] = false; unlock(set_lock[i]); i++
  :: else -> break
  od;
  seq++;                 /* even: the drops are done */
  unlock(reg_lock)
}

proctype modifier(byte s) {
  byte s0;
  bool fast = false;
  s0 = seq;
#ifdef BUG_NO_SEQ
  if :: pair -> fast = true :: else -> skip fi;   /* identity_probe */
#else
  if
  :: (s0 % 2) == 1 -> skip                        /* registration under way */
  :: else -> if :: pair -> fast = true :: else -> skip fi
  fi;
#endif
  if
  :: fast ->
    lock(set_lock[s]);
#ifndef BUG_NO_SEQ
    if :: seq != s0 -> fast = false :: else -> skip fi;
#endif
    if
    :: fast && stale[s] -> modified_stale++       /* modify() of a stale entry */
    :: else -> skip
    fi;
    unlock(set_lock[s])
  :: else -> skip
  fi;
  if
  :: !fast ->                                     /* ctl_full: the registry lock first */
    lock(reg_lock);
    lock(set_lock[s]);
    /* is_stale(): asked of the identity set. The adder holds the registry
       lock from before its registration until after its drops, so either
       it has not registered (the entry is found stale and removed) or it
       has dropped the entry. Neither modifies a stale entry. */
    unlock(set_lock[s]);
    unlock(reg_lock)
  :: else -> skip
  fi;
  assert(modified_stale == 0)
}

init {
  byte i;
  atomic {
    i = 0;
    do
    :: i < NS -> stale[i] = true; i++
    :: else -> break
    od;
    run adder();
    i = 0;
    do
    :: i < NM -> run modifier(i % NS); i++
    :: else -> break
    od
  }
}
