/* The CEQ protocol, every interleaving of a small configuration.
 *
 * Models (a change to these functions without a matching change here is a
 * review failure):
 *   ceq/include/ueq/ceq/ceq.hpp  ceq::find_slot()
 *   ceq/include/ueq/ceq/ceq.hpp  ceq::post() (fast path)
 *   ceq/ceq.cpp                  ceq::map_slot()        (chunk install by CAS)
 *   ceq/ceq.cpp                  ceq::post_unmapped(), post_publish(), push_ring()
 *   ceq/ceq.cpp                  ceq::pop_ring(), ceq::extract()
 *   ceq/ceq.cpp                  ceq::recover_one(), ceq::get_batch()
 *
 * Configuration: NSLOT = 3 IDs in chunks of CHUNK = 2 (chunk 0 = IDs 0-1,
 * chunk 1 = ID 2), all unmapped at the start; a ring of RING cells (1 by
 * default, so the overflow flag and the recovery scan are exercised; -DRING=2
 * makes batch claims of two cells possible); OR merge. Two producers with
 * fixed scripts (producer 1 posts bit 1 to IDs 0 then 2; producer 2 posts
 * bit 2 to IDs 1 then 0), so both race to map chunk 0 and the overflow path
 * sees a high ID and a low one (-DSHORT: producer 2 posts only once). NC
 * consumers (default 1; -DNC=2 for two racing on the ring's indices) each
 * run get_batch() with room for OUT = 2 messages, GETS times (default 2),
 * concurrently with the producers; when all are done, a final consumer
 * calls get_batch() until it reports empty.
 * Property: every bit posted was delivered (no bit lost), which also checks
 * that get_batch() never reports "empty" while the ring, an overflow or a
 * recovery scan still holds a message.
 *
 * Each Promela statement is one atomic step; the code's separate loads,
 * stores and RMWs are separate statements. Spin explores sequentially
 * consistent interleavings, with one exception that the code's correctness
 * rests on: which producers' raises of the scan bound (max_plus1_) a
 * recovery scan is guaranteed to see. max_plus1_ is raised with relaxed
 * operations; the scanner learns it through the overflow flag: its acquire
 * exchange synchronises with every producer whose release of the flag heads
 * a release sequence containing the value it reads. Each producer's raise of
 * the flag is an RMW, which continues the sequences of all earlier raises,
 * so the flag carries the largest bound any of them knew (ovf_bound below); a
 * plain store would start a new sequence carrying only its own writer's
 * bound. The scanner's bound is that carried bound, or (a load may read the
 * newest value) the current max_plus1_.
 *
 * Bug variants, each rejected:
 *  -DBUG_OVERFLOW_STORE  the producer sets the overflow flag with a plain
 *                        release store: a later, lower-ID overflow hides an
 *                        earlier, higher one from the scan bound.
 *  -DBUG_CHUNK_STORE     map_slot() installs its chunk with a plain store:
 *                        a second mapper replaces a chunk already posted to.
 *  -DBUG_RETIRE          a consumer retires its cells without waiting for
 *                        earlier consumers (with -DRING=2 -DNC=2): a
 *                        producer reuses a cell before it was read.
 * Not modeled: the blob (last writer wins, not part of the no-loss claim),
 * the ADD merge (the same protocol with another RMW), user data, reserve(),
 * empty() (a snapshot), the free-running counters' wrap-around.
 */
#ifndef RING
#define RING 1
#endif
#ifndef NC
#define NC 1
#endif
#ifndef GETS
#define GETS 2
#endif
#define NSLOT 3
#define CHUNK 2
#define NCHUNK 2
#define OUT 2

/* Slots live in chunk copies: copy 1 is mapped by producer 1, copy 2 by
 * producer 2 (a loser of the install race unmaps its copy). */
byte co[2 * NSLOT];         /* slot.coalesce, per copy */
bool po[2 * NSLOT];         /* slot.posted, per copy */
#define CO(cp, s) co[((cp) - 1) * NSLOT + (s)]
#define PO(cp, s) po[((cp) - 1) * NSLOT + (s)]
byte dir[NCHUNK];           /* dir_[c]: 0 = unmapped, else the copy installed */

byte ring[RING];            /* ID + 1; 0 = kEmptyCell */
byte prod, pvt, pub;        /* prod_, cons_pvt_, cons_pub_ */
byte max_plus1;             /* max_plus1_ */
bool overflow, recovering, rlock;
byte cursor;                /* recovery_cursor_, guarded by rlock */
byte scan_seen;             /* the scanner's bound, guarded by rlock */
byte ovf_bound;             /* the scan bound the overflow flag carries (see top) */

byte sent[NSLOT];           /* every bit ever posted, per ID */
byte delivered[NSLOT];      /* every bit ever returned, per ID */
byte finished;

/* ------------------------------------------------------------ producer */

/* Locals of the callers (Promela hoists inline declarations, so they are
 * declared in the proctypes): p, q, p2, cp, was, ok. */
inline push_ring(s, ok) {
  p = prod;                                        /* relaxed load */
  do
  :: q = pub;                                      /* acquire load */
     if
     :: p - q > RING - 1 ->                        /* full */
          p2 = prod;                               /* re-read once */
          if
          :: p2 == p -> ok = false; break
          :: else -> p = p2
          fi
     :: else ->
          if
          :: atomic { prod == p -> prod = p + 1 }; ok = true; break   /* CAS won */
          :: else -> p = prod                      /* CAS lost: retry */
          fi
     fi
  od;
  if
  :: ok -> ring[p % RING] = s + 1                  /* release store of the ID */
  :: else -> skip
  fi
}

inline post(me, s, b) {
  cp = dir[s / CHUNK];                             /* find_slot: acquire load */
  if
  :: cp == 0 ->                                    /* post_unmapped -> map_slot */
#ifdef BUG_CHUNK_STORE
       dir[s / CHUNK] = me;
#else
       atomic { if :: dir[s / CHUNK] == 0 -> dir[s / CHUNK] = me :: else -> skip fi };
#endif
       cp = dir[s / CHUNK]                         /* post() again: find_slot */
  :: else -> skip
  fi;
  /* Raise the scan bound (CAS loop). kn: the bound this producer knows. */
  atomic { if :: max_plus1 < s + 1 -> max_plus1 = s + 1 :: else -> skip fi; kn = max_plus1 };
  atomic { CO(cp, s) = CO(cp, s) | b; sent[s] = sent[s] | b };   /* fetch_or, acq_rel */
  if
  :: PO(cp, s) -> skip                             /* coalesced (acquire load) */
  :: else ->
       atomic { was = PO(cp, s); PO(cp, s) = true };   /* post_publish: exchange */
       if
       :: was -> skip                              /* another producer flipped it */
       :: else ->
            push_ring(s, ok);
            if
            :: ok -> skip
            :: else ->                             /* full: the scan owns the slot */
#ifdef BUG_OVERFLOW_STORE
                 atomic { overflow = true; ovf_bound = kn }   /* store(release) */
#else
                 atomic { overflow = true; if :: ovf_bound < kn -> ovf_bound = kn :: else -> skip fi }  /* exchange(release) */
#endif
            fi
       fi
  fi;
  /* Forget the locals (fewer distinct states; no step of the protocol). */
  atomic { cp = 0; kn = 0; was = false; ok = false; p = 0; q = 0; p2 = 0 }
}

proctype producer(byte me; byte b; byte s1; byte s2) {
  byte p, q, p2, cp, kn;
  bool was, ok;
  post(me, s1, b);
#ifdef SHORT
  if :: me == 1 -> post(me, s2, b) :: else -> skip fi;
#else
  post(me, s2, b);
#endif
  finished++
}

/* ------------------------------------------------------------ consumer */

/* extract(id): got = the slot was posted (its bits, maybe 0, are taken). */
inline extract(id, got) {
  cp = dir[id / CHUNK];                            /* find_slot */
  if
  :: cp != 0 && PO(cp, id) ->                      /* acquire load */
       PO(cp, id) = false;                         /* relaxed store */
       atomic { delivered[id] = delivered[id] | CO(cp, id); CO(cp, id) = 0 };  /* exchange */
       got = true
  :: else -> got = false                           /* stale */
  fi
}

/* pop_ring(max): claims k cells with one CAS on cons_pvt_, reads their IDs
 * into ids[], retires them in order. */
inline pop_ring(max, k) {
  c = pvt;                                         /* acquire load */
  do
  :: p = prod;                                     /* acquire load */
     if
     :: p <= c -> k = 0; break                     /* empty */
     :: else ->
          if :: p - c < max -> n = p - c :: else -> n = max fi;
          if
          :: atomic { pvt == c -> pvt = c + n }; k = n; break    /* CAS won */
          :: else -> c = pvt                       /* CAS lost: retry */
          fi
     fi
  od;
  i = 0;
  do
  :: i < k ->
       /* Wait for the producer's store, read the ID, put kEmptyCell back:
        * one step, as no one else touches a claimed cell meanwhile. */
       atomic { ring[(c + i) % RING] != 0 -> ids[i] = ring[(c + i) % RING] - 1; ring[(c + i) % RING] = 0 };
       i++
  :: else -> break
  od;
  if
  :: k > 0 ->
#ifndef BUG_RETIRE
       (pub == c);                                 /* earlier consumers retire first */
#endif
       pub = c + k                                 /* release store */
  :: else -> skip
  fi
}

/* recover_one(): r = GOT, RETRY or NONE. */
#define GOT 0
#define RETRY 1
#define NONE 2
inline recover_one(r) {
  o = overflow;                                    /* acquire load, then */
  if
  :: !o && !recovering -> r = NONE                 /* acquire load */
  :: else ->
       atomic { !rlock -> rlock = true };
       r = RETRY;
       if
       :: !recovering && !overflow -> rlock = false   /* a whole scan ran meanwhile */
       :: else ->
            if
            :: !recovering ->
                 recovering = true;
                 /* exchange(false, acq_rel): synchronises with the producers
                  * whose raises the flag carries. */
                 atomic { overflow = false; scan_seen = ovf_bound };
                 cursor = 0
            :: else -> skip
            fi;
            /* end = max_plus1_.load(acquire): what the scan is known to
             * cover, or the newest value. */
            if
            :: skip
            :: atomic { scan_seen < max_plus1 -> scan_seen = max_plus1 }
            fi;
            do
            :: cursor < scan_seen ->
                 id = cursor;
                 if
                 :: dir[id / CHUNK] == 0 ->        /* unmapped chunk: skip it */
                      cursor = (id / CHUNK + 1) * CHUNK
                 :: else ->
                      cursor++;
                      extract(id, got);
                      if
                      :: got -> r = GOT; break
                      :: else -> skip
                      fi
                 fi
            :: else -> break
            od;
            if
            :: r == GOT -> rlock = false
            :: else -> recovering = false; rlock = false   /* scan done */
            fi
       fi
  fi
}

/* get_batch() with room for OUT messages: nout = how many it returned. */
inline get_batch(nout) {
  nout = 0;
  do
  :: nout < OUT ->
       pop_ring(OUT - nout, k);
       if
       :: k > 0 ->
            j = 0;
            do
            :: j < k ->
                 extract(ids[j], got);
                 if :: got -> nout++ :: else -> skip fi;   /* stale: keep going */
                 j++
            :: else -> break
            od;
            atomic { j = 0; k = 0; ids[0] = 0; ids[1] = 0; c = 0; p = 0; n = 0; i = 0; cp = 0; got = false }
       :: else ->
            recover_one(r);
            atomic { c = 0; p = 0; id = 0; cp = 0; got = false; o = false };
            if
            :: r == GOT -> nout++
            :: r == NONE -> break
            :: else -> skip                        /* retry: look again */
            fi
       fi
  :: else -> break
  od
}

proctype consumer() {
  byte nout, k, c, p, n, i, j, id, cp, r, g = 0;
  byte ids[OUT];
  bool got, o;
  do
  :: g < GETS -> get_batch(nout); atomic { g++; nout = 0; r = 0 }
  :: else -> break
  od;
  finished++
}

proctype final_drain() {
  byte nout, k, c, p, n, i, j, id, cp, r, s;
  byte ids[OUT];
  bool got, o;
  /* Alone once the others are done: one atomic sequence. */
  atomic {
    (finished == 2 + NC);
    do
    :: get_batch(nout);
       if :: nout == 0 -> break :: else -> skip fi
    od;
    s = 0;
    do
    :: s < NSLOT -> assert((delivered[s] & sent[s]) == sent[s]); s++
    :: else -> break
    od
  }
}

init {
  byte i = 0;
  atomic {
    run producer(1, 1, 0, 2);
    run producer(2, 2, 1, 0);
    do
    :: i < NC -> run consumer(); i++
    :: else -> break
    od;
    run final_drain()
  }
}
