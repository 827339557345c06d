/* poscache — the C interface: read positions from a segment, and feed its writer through a
 * producer ring. What Rust, Go, Java or any language with a C FFI binds to.
 *
 * Link: pkg-config --cflags --libs poscache-c   (or CMake: poscache::c)
 *
 *   poscache_reader* r = poscache_reader_open("positions");
 *   if (!r) { fprintf(stderr, "%s\n", poscache_last_error()); return 1; }
 *   poscache_position p;
 *   int st = poscache_get(r, "spot", "wallet1", "SOL", &p);
 *   if (st == POSCACHE_OK || st == POSCACHE_STALE) {
 *     char qty[64];
 *     poscache_position_field_text(r, &p, "qty", qty, sizeof qty);   // "12.500000000000000000"
 *   }
 *   poscache_reader_close(r);
 *
 * Rules of the interface:
 *   - Handles are opaque; every handle is closed by its own _close function (NULL is ignored).
 *   - Functions return a status (poscache_status) or a handle (NULL on failure). When a call
 *     fails, poscache_last_error() says why, in words naming the cause (the message belongs to
 *     the calling thread and stays valid until its next failing call). No C++ exception crosses
 *     this interface.
 *   - A reader handle may be used from several threads at once (poscache_get never blocks,
 *     allocates or makes a system call); a producer handle from one thread at a time.
 *   - Decimals cross as exact text ("12.5", "-0.000000000000000001"), never as floating point.
 */
#ifndef POSCACHE_POSCACHE_H
#define POSCACHE_POSCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum poscache_status {
  /* Reads (the reader's ReadStatus, same numbers). */
  POSCACHE_OK = 0,          /* done; for a read: a consistent, fresh copy */
  POSCACHE_STALE = 1,       /* a consistent copy older than its namespace's stale_after */
  POSCACHE_NOT_FOUND = 2,   /* no such position (or no such field set on it) */
  POSCACHE_WRITER_BUSY = 3, /* the slot stayed mid-write past the retry bound; writer alive */
  POSCACHE_WRITER_DEAD = 4, /* mid-write, the heartbeat stopped and the writer is gone */
  POSCACHE_BAD_KEY = 5,     /* a key part is empty, too long, or the namespace is unknown */
  POSCACHE_RETIRED = 6,     /* the writer re-created the segment: poscache_reader_follow() */
  /* Everything else. */
  POSCACHE_ERROR = 100,        /* the call failed: poscache_last_error() says why */
  POSCACHE_FULL = 101,         /* the producer's ring is full: nothing queued (retry, or wait) */
  POSCACHE_BAD_INPUT = 102,    /* refused before anything was queued: poscache_last_error() */
  POSCACHE_TIMEOUT = 103,      /* a wait ran out */
  POSCACHE_NO_REDIS = 104,     /* wait_synced on a writer that does not mirror to Redis */
  POSCACHE_SMALL_BUFFER = 105, /* the text did not fit: nothing written but its NUL */
  /* Following the change ring (poscache_changes): what is in out[] is valid; then read the state
   * again and continue from *next. */
  POSCACHE_LAPPED = 106,           /* the ring overwrote changes before they were read */
  POSCACHE_WRITER_RESTARTED = 107, /* a writer replaced one that died: changes may be missing */
  POSCACHE_INVALID_POSITION = 108, /* `from` is past the ring's head */
  POSCACHE_UNAVAILABLE = 109,      /* the writer keeps no change ring */
  POSCACHE_RING_DROPPED = 110      /* the writer dropped this producer's ring as damaged:
                                    * poscache_last_error() says why; open a new producer */
} poscache_status;

/* Why the calling thread's last failing call failed ("" if none did). */
const char* poscache_last_error(void);
/* "ok", "stale", "not_found", ..., "full", "bad_input" for any status above. */
const char* poscache_status_name(int status);

/* ---- reading ----------------------------------------------------------------------------- */

typedef struct poscache_reader poscache_reader;

enum { POSCACHE_MAX_FIELDS = 16, POSCACHE_MAX_KEY = 64 };

/* One 128-bit mantissa as two's complement halves: value = hi * 2^64 + lo. */
typedef struct poscache_int128 {
  uint64_t lo;
  int64_t hi;
} poscache_int128;

/* A position as a read returns it: a copy, nothing points into shared memory. Field values are
 * mantissas at their field's scale (poscache_position_field_text turns them into exact text);
 * int64 and timestamp fields are plain integers (hi is then 0 or -1). */
typedef struct poscache_position {
  uint16_t ns;
  uint32_t fields_set; /* bit i: field i carries a value */
  uint64_t version;    /* writer-wide monotonic: a newer change has a higher version */
  uint64_t source_seq;
  int64_t created_at_ns; /* CLOCK_REALTIME */
  int64_t updated_at_ns;
  int64_t age_ns;
  int stale;
  char account[POSCACHE_MAX_KEY + 1]; /* NUL-terminated */
  char instrument[POSCACHE_MAX_KEY + 1];
  poscache_int128 values[POSCACHE_MAX_FIELDS];
} poscache_position;

/* Maps the segment read-only. NULL when it cannot (poscache_last_error: missing, foreign,
 * initializing, no permission). */
poscache_reader* poscache_reader_open(const char* segment);
void poscache_reader_close(poscache_reader* reader);
/* The segment re-created by its writer (a read said POSCACHE_RETIRED): maps the new one.
 * POSCACHE_OK, or POSCACHE_ERROR if there is none yet. */
int poscache_reader_follow(poscache_reader* reader);

/* A namespace's id (>= 0), or -1 if the segment has none of that name. */
int poscache_namespace_id(const poscache_reader* reader, const char* ns);
/* A field's index within its namespace (>= 0), or -1. */
int poscache_field_index(const poscache_reader* reader, int ns, const char* field);

/* One position: POSCACHE_OK or POSCACHE_STALE fill *out; any other status leaves it alone. */
int poscache_get(const poscache_reader* reader, const char* ns, const char* account,
                 const char* instrument, poscache_position* out);
/* The same with a namespace id (poscache_namespace_id), for a hot loop. */
int poscache_get_by_id(const poscache_reader* reader, int ns, const char* account,
                       const char* instrument, poscache_position* out);

/* A key for poscache_get_many: a namespace id (poscache_namespace_id) and NUL-terminated texts. */
typedef struct poscache_key {
  int ns;
  const char* account;
  const char* instrument;
} poscache_key;

/* Many positions at once, the cache misses of their lookups overlapped (for a risk check that
 * needs many): for each i < n, status[i] is what poscache_get_by_id(keys[i]) would return and
 * out[i] is filled when it is POSCACHE_OK or POSCACHE_STALE. Returns POSCACHE_OK, or
 * POSCACHE_BAD_INPUT if the reader or an array is missing. Never blocks; it works in blocks of
 * 64 keys through a buffer each thread allocates on its first call (30 KB), then reuses. */
int poscache_get_many(const poscache_reader* reader, const poscache_key* keys, size_t n,
                      poscache_position* out, int* status);

/* Every position of an account as of one moment (no change to it seen half applied): up to
 * `cap` into out[], their number in *count. POSCACHE_OK or POSCACHE_STALE (some are stale);
 * POSCACHE_NOT_FOUND (none: *count 0); POSCACHE_SMALL_BUFFER if the account holds more than
 * `cap` (*count says how many: call again with room); POSCACHE_WRITER_BUSY / _DEAD if it stayed
 * mid-change; POSCACHE_BAD_KEY. */
int poscache_snapshot(const poscache_reader* reader, const char* account, poscache_position* out,
                      size_t cap, size_t* count);

/* A field of a position as exact text (decimals with their scale's digits, integers as
 * integers). POSCACHE_OK; POSCACHE_NOT_FOUND if the position does not carry it;
 * POSCACHE_BAD_INPUT for an unknown field; POSCACHE_SMALL_BUFFER (64 bytes always suffice for a
 * number; a text field needs its length + 1). */
int poscache_position_field_text(const poscache_reader* reader, const poscache_position* position,
                                 const char* field, char* buf, size_t len);

/* The writer's change counter, and a wait for it to move past `seen` (sleeps in the kernel;
 * returns 1 if it moved, 0 on timeout). */
uint64_t poscache_change_sequence(const poscache_reader* reader);
int poscache_wait_for_change(const poscache_reader* reader, uint64_t seen, int64_t timeout_ns);

/* What changed, in order: the writer's change ring. A record names the key (or the pattern) and
 * the version; poscache_get the key for its values. */
enum {
  POSCACHE_CHANGE_INSERTED = 1,
  POSCACHE_CHANGE_UPDATED = 2,
  POSCACHE_CHANGE_ERASED = 3,
  POSCACHE_CHANGE_EVICTED = 4,
  POSCACHE_CHANGE_EXPIRED = 5,
  POSCACHE_CHANGE_INVALIDATED_ACCOUNT = 6,   /* account; ns, or -1 for every namespace */
  POSCACHE_CHANGE_INVALIDATED_NAMESPACE = 7, /* ns */
  POSCACHE_CHANGE_INVALIDATED_GLOB = 8,      /* pattern, over "ns:account:instrument" */
  POSCACHE_CHANGE_INVALIDATED_ALL = 9,
  POSCACHE_MAX_PATTERN = 256
};
typedef struct poscache_change {
  uint64_t position; /* its place in the ring */
  int kind;          /* POSCACHE_CHANGE_* */
  int ns;            /* namespace id, or -1 (a pattern over every namespace) */
  uint64_t version;
  int64_t at_ns;                          /* CLOCK_REALTIME of the change */
  char account[POSCACHE_MAX_KEY + 1];     /* NUL-terminated; "" if the kind has none */
  char instrument[POSCACHE_MAX_KEY + 1];  /* "" if the kind has none */
  char pattern[POSCACHE_MAX_PATTERN + 1]; /* a glob's; "" otherwise */
} poscache_change;
/* "inserted", "updated", ..., "invalidated_all". */
const char* poscache_change_kind_name(int kind);
/* The ring's head: where a new follower starts. */
uint64_t poscache_change_position(const poscache_reader* reader);
/* The changes from ring position `from`, up to `cap` into out[] (their number in *count), and
 * where to continue in *next. POSCACHE_OK; POSCACHE_LAPPED, POSCACHE_WRITER_RESTARTED,
 * POSCACHE_INVALID_POSITION (resync: read the state, then continue from *next);
 * POSCACHE_UNAVAILABLE; POSCACHE_RETIRED. Never blocks. */
int poscache_changes(const poscache_reader* reader, uint64_t from, poscache_change* out, size_t cap,
                     size_t* count, uint64_t* next);
/* Sleeps until the ring moves past `from` (1) or the timeout (0). */
int poscache_wait_for_changes(const poscache_reader* reader, uint64_t from, int64_t timeout_ns);

/* ---- read-through: fetching what the segment lacks (docs/read-through.md) ----------------- */

/* Why poscache_get_or_fetch returned what it did. */
enum {
  POSCACHE_FETCH_CACHED = 0,       /* the copy was fresh: nothing asked. Also for a status that
                                    * fetching cannot change (writer_busy, writer_dead, bad_key,
                                    * retired): look at the status */
  POSCACHE_FETCH_FETCHED = 1,      /* asked, and a fresh copy arrived within the timeout (the
                                    * refresher's answer, or a producer's write) */
  POSCACHE_FETCH_ABSENT = 2,       /* the source has no such position (answered now, or
                                    * remembered from an answer within the negative_ttl) */
  POSCACHE_FETCH_TIMEOUT = 3,      /* no answer within the timeout: the stale copy, or none */
  POSCACHE_FETCH_FAILED = 4,       /* every try erred or timed out, or a producer's write or
                                    * erase superseded the answer */
  POSCACHE_FETCH_NO_REFRESHER = 5, /* no refresher serves the namespace: the copy as it is */
  POSCACHE_FETCH_UNAVAILABLE = 6   /* this reader has no request channel (the writer serves no
                                    * read-through: poscache_refresh_available), or its ring was
                                    * full */
};
/* "cached", "fetched", "absent", "timeout", "failed", "no_refresher", "unavailable". */
const char* poscache_fetch_reason_name(int reason);

/* A fresh copy at poscache_get's cost (POSCACHE_FETCH_CACHED); otherwise asks the writer's
 * refreshers for the key (one request per key in flight, whoever asks) and sleeps on a futex
 * until it is decided or timeout_ns passes. Returns the read status as poscache_get does, as of
 * the return: POSCACHE_OK or POSCACHE_STALE fill *out (a stale copy when the answer did not come
 * in time), POSCACHE_NOT_FOUND when there is none, POSCACHE_BAD_KEY for an unknown namespace or
 * a bad key, POSCACHE_BAD_INPUT without a reader or an output; and stores why in *reason (if not
 * NULL). force != 0: fetch even a fresh copy, and wait for the answer. It makes system calls when
 * it waits: not for a hot loop. */
int poscache_get_or_fetch(const poscache_reader* reader, const char* ns, const char* account,
                          const char* instrument, poscache_position* out, int64_t timeout_ns,
                          int force, int* reason);
/* The same with a namespace id (poscache_namespace_id). */
int poscache_get_or_fetch_by_id(const poscache_reader* reader, int ns, const char* account,
                                const char* instrument, poscache_position* out, int64_t timeout_ns,
                                int force, int* reason);

/* Why a key is asked for: poscache_request's `why`. */
enum {
  POSCACHE_REFRESH_STALE = 1,  /* the copy is stale */
  POSCACHE_REFRESH_MISS = 2,   /* there is none */
  POSCACHE_REFRESH_FORCED = 3, /* asked even when the copy is fresh or was answered absent */
  POSCACHE_REFRESH_AHEAD = 5   /* fresh, but late in its stale_after */
};
/* What poscache_request did. */
enum {
  POSCACHE_REQUEST_ASKED = 0,        /* in this reader's request ring: the writer will take it */
  POSCACHE_REQUEST_PENDING = 1,      /* not asked again: a request for the key is in flight */
  POSCACHE_REQUEST_REMEMBERED = 2,   /* not asked: answered absent within the negative_ttl */
  POSCACHE_REQUEST_FULL = 3,         /* this reader's ring was full: not asked (counted) */
  POSCACHE_REQUEST_NO_REFRESHER = 4, /* no refresher serves the namespace */
  POSCACHE_REQUEST_UNAVAILABLE = 5,  /* this reader has no request channel */
  POSCACHE_REQUEST_BAD_KEY = 6       /* an unknown namespace, or a bad key */
};
/* "asked", "pending", "remembered", "full", "no_refresher", "unavailable", "bad_key". */
const char* poscache_request_status_name(int status);

/* Asks for the key without waiting, as poscache_get asks by the namespace's policy: no system
 * call, no allocation, never blocks; the answer lands for a later read. Returns a
 * POSCACHE_REQUEST_* value, or POSCACHE_BAD_INPUT (no reader, or `why` not one of
 * POSCACHE_REFRESH_*: poscache_last_error says which). */
int poscache_request(const poscache_reader* reader, const char* ns, const char* account,
                     const char* instrument, int why);

/* 1 if this reader takes part in read-through (its writer serves it, and the reader claimed a
 * request ring when it opened); 0 if not, and poscache_last_error() says why (no request files:
 * the writer serves no read-through; no permission; every ring taken; POSCACHE_READER_REFRESH=off
 * in the environment). A reader opened before its writer served read-through does not ask until
 * it is opened again. */
int poscache_refresh_available(const poscache_reader* reader);

/* ---- producing --------------------------------------------------------------------------- */

typedef struct poscache_producer poscache_producer;

/* Creates a ring and hands it to the segment's running writer (over its socket). NULL when it
 * cannot (no writer, no permission on its socket, a bad name). `name` is shown by
 * poscache-inspect producers (up to 31 characters). */
poscache_producer* poscache_producer_open(const char* segment, const char* name);
void poscache_producer_close(poscache_producer* producer);

enum { POSCACHE_MERGE = 0, POSCACHE_REPLACE = 1 };
enum { POSCACHE_BUY = 0, POSCACHE_SELL = 1 };

/* Every push returns POSCACHE_OK and stores its sequence in *seq (if seq is not NULL; per
 * producer, from 1, applied in order); POSCACHE_FULL when the ring stayed full for timeout_ns
 * (0: at once; while full it waits, spinning then sleeping, up to that long for room);
 * POSCACHE_BAD_INPUT naming the part and the value; POSCACHE_RING_DROPPED. */
int poscache_upsert(poscache_producer* producer, const char* ns, const char* account,
                    const char* instrument, const char* const* field_names,
                    const char* const* field_values, size_t nfields, uint64_t source_seq, int mode,
                    int64_t timeout_ns, uint64_t* seq);
/* fee and trade_id may be NULL. */
int poscache_fill(poscache_producer* producer, const char* ns, const char* account,
                  const char* instrument, int side, const char* qty, const char* price,
                  const char* fee, const char* trade_id, int64_t timeout_ns, uint64_t* seq);
/* account NULL: every account holding the instrument in that namespace. */
int poscache_mark(poscache_producer* producer, const char* ns, const char* instrument,
                  const char* price, const char* account, int64_t timeout_ns, uint64_t* seq);
int poscache_add(poscache_producer* producer, const char* ns, const char* account,
                 const char* instrument, const char* field, int64_t by, int64_t timeout_ns,
                 uint64_t* seq);
int poscache_reset(poscache_producer* producer, const char* ns, const char* account,
                   const char* instrument, const char* field, int64_t timeout_ns, uint64_t* seq);
int poscache_erase(poscache_producer* producer, const char* ns, const char* account,
                   const char* instrument, int64_t timeout_ns, uint64_t* seq);
/* ns NULL: the account in every namespace. */
int poscache_invalidate_account(poscache_producer* producer, const char* account, const char* ns,
                                int64_t timeout_ns, uint64_t* seq);
int poscache_invalidate_namespace(poscache_producer* producer, const char* ns, int64_t timeout_ns,
                                  uint64_t* seq);
int poscache_invalidate_matching(poscache_producer* producer, const char* glob, int64_t timeout_ns,
                                 uint64_t* seq);
int poscache_invalidate_all(poscache_producer* producer, int64_t timeout_ns, uint64_t* seq);

/* A batch: commands applied all or nothing, seen whole by snapshot readers (a trade and its cash
 * leg). Between begin and end, pushes are staged (POSCACHE_OK, *seq 0) or refused as usual; end
 * sends nothing if one was refused (POSCACHE_BAD_INPUT naming the command), else publishes them
 * together, waiting up to timeout_ns for room, and stores the batch's sequence in *seq:
 * poscache_outcome(seq) is the batch's, seq + 1 + i command i's. At most 64 commands, each on one
 * position (upsert, fill, a one-account mark, add, reset, erase). */
int poscache_batch_begin(poscache_producer* producer);
int poscache_batch_end(poscache_producer* producer, int64_t timeout_ns, uint64_t* seq);
void poscache_batch_abort(poscache_producer* producer);

/* Waits until the writer applied `seq` (visible to readers) / until Redis has it. POSCACHE_OK,
 * POSCACHE_TIMEOUT, POSCACHE_NO_REDIS, or POSCACHE_RING_DROPPED (it never will be). */
int poscache_wait_applied(const poscache_producer* producer, uint64_t seq, int64_t timeout_ns);
int poscache_wait_synced(const poscache_producer* producer, uint64_t seq, int64_t timeout_ns);
/* What the writer did with message `seq` (after poscache_wait_applied): one of the outcomes
 * below. For POSCACHE_OUTCOME_REJECTED the reason (up to 352 characters) is copied into why (if
 * not NULL, NUL-terminated, truncated to len). Known until the producer pushes seq + capacity;
 * POSCACHE_OUTCOME_UNKNOWN after that. */
enum {
  POSCACHE_OUTCOME_PENDING = 0,   /* not applied yet */
  POSCACHE_OUTCOME_APPLIED = 1,   /* applied: visible to readers */
  POSCACHE_OUTCOME_DUPLICATE = 2, /* a fill whose trade id was seen: ignored */
  POSCACHE_OUTCOME_STALE = 3,     /* an upsert older than the position's source sequence */
  POSCACHE_OUTCOME_NOT_FOUND = 4, /* an erase or one-account mark of an absent position */
  POSCACHE_OUTCOME_REJECTED = 5,  /* refused by the writer: nothing of it applied */
  POSCACHE_OUTCOME_UNKNOWN = 6    /* never pushed, or its slot has been reused */
};
int poscache_outcome(const poscache_producer* producer, uint64_t seq, char* why, size_t len);
/* The writer's last refusal of one of this producer's messages ("" if none), copied into buf. */
int poscache_producer_last_refusal(const poscache_producer* producer, char* buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* POSCACHE_POSCACHE_H */
