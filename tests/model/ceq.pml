/* The CEQ protocol (ceq/ceq.cpp), small enough to check every interleaving:
 * 2 producers post bits to 2 slots, 3 posts each, into a ring of ONE cell
 * (so the overflow flag and the recovery scan are exercised); a consumer
 * runs get() concurrently; after everything else is done, a final consumer
 * drains until get() says "empty". Property: every bit posted was delivered
 * (no bit lost), and get() never says "empty" while the ring, an overflow or
 * a recovery still holds one (checked by the final drain).
 *
 * Each Promela statement is one atomic step; the C++ code's separate loads,
 * stores and RMWs are separate statements here. (Spin explores sequentially
 * consistent interleavings: the C++ memory-order argument is in ceq.cpp.)
 */
#define NSLOT 2
#define RING 1
#define POSTS 3
#define EMPTY 255

byte coalesce[NSLOT];
bool posted[NSLOT];
byte ring[RING];            /* slot + 1; 0 = empty cell */
byte prod, pvt, pub;        /* free-running indices */
bool overflow, recovering, rlock;
byte cursor;
byte sent[NSLOT];           /* every bit ever posted, per slot */
byte delivered[NSLOT];      /* every bit ever returned, per slot */
byte finished;

inline extract(id, got) {
  if
  :: posted[id] ->
       posted[id] = false;                                   /* relaxed store */
       atomic { delivered[id] = delivered[id] | coalesce[id]; coalesce[id] = 0 };  /* exchange */
       got = true
  :: else -> got = false                                     /* stale entry */
  fi
}

/* Locals of the callers: p, q, p2 (push), was, ok (post), c, id, got,
 * took (get): Promela hoists inline declarations, so they live in the
 * proctypes. */
inline push(s, ok) {
  do
  :: p = prod;
     q = pub;
     if
     :: p - q >= RING ->
          p2 = prod;
          if
          :: p2 == p -> ok = false; break                    /* full */
          :: else -> skip                                    /* moved on: retry */
          fi
     :: else ->
          if
          :: atomic { prod == p -> prod = p + 1 } -> break   /* CAS won */
          :: atomic { prod != p -> skip }                    /* CAS lost: retry */
          fi
     fi
  od;
  if
  :: p - q < RING -> ring[p % RING] = s + 1; ok = true     /* publish the ID */
  :: else -> skip
  fi
}

inline post(s, b) {
  atomic { coalesce[s] = coalesce[s] | b; sent[s] = sent[s] | b };       /* RMW */
  if
  :: posted[s] -> skip                                       /* coalesced (load) */
  :: else ->
       atomic { was = posted[s]; posted[s] = true };         /* exchange */
       if
       :: was -> skip
       :: else ->
            push(s, ok);
            if
            :: ok -> skip
            :: else -> overflow = true                       /* recovery owns it */
            fi
       fi
  fi
}

/* get(): res = a slot that was extracted, or EMPTY. */
inline get(res) {
  res = EMPTY;
  do
  :: atomic {
       if
       :: pvt < prod -> c = pvt; pvt = pvt + 1; took = true
       :: else -> took = false
       fi
     };
     if
     :: took ->
          (ring[c % RING] != 0);                             /* wait for the producer */
          atomic { id = ring[c % RING] - 1; ring[c % RING] = 0 };
          (pub == c);                                        /* retire in order */
          pub = c + 1;
          extract(id, got);
          if
          :: got -> res = id; break
          :: else -> skip                                    /* stale: keep going */
          fi
     :: else ->
          if
          :: !overflow && !recovering -> break               /* empty */
          :: else ->
               atomic { !rlock -> rlock = true };
               if
               :: !recovering && !overflow -> rlock = false  /* someone finished a scan */
               :: else ->
                    if
                    :: !recovering -> recovering = true; overflow = false; cursor = 0
                    :: else -> skip
                    fi;
                    got = false;
                    do
                    :: cursor < NSLOT ->
                         id = cursor; cursor = cursor + 1;
                         extract(id, got);
                         if :: got -> break :: else -> skip fi
                    :: else -> break
                    od;
                    if
                    :: got -> rlock = false; res = id; break
                    :: else -> recovering = false; rlock = false   /* scan done: look again */
                    fi
               fi
          fi
     fi
  od
}

proctype producer(byte b) {
  byte i = 0, p, q, p2;
  bool was, ok;
  do
  :: i < POSTS ->
       if :: post(0, b) :: post(1, b) fi;
       i++
  :: else -> break
  od;
  finished++
}

proctype consumer() {
  byte r, k = 0, c, id;
  bool got, took;
  do
  :: k < 2 -> get(r); k++
  :: else -> break
  od;
  finished++
}

proctype final_drain() {
  byte r, s, c, id;
  bool got, took;
  (finished == 3);
  do
  :: get(r); if :: r == EMPTY -> break :: else -> skip fi
  od;
  s = 0;
  do
  :: s < NSLOT -> assert((delivered[s] & sent[s]) == sent[s]); s++
  :: else -> break
  od
}

init {
  atomic {
    run producer(1);
    run producer(2);
    run consumer();
    run final_drain()
  }
}
