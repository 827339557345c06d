// poscache shared-memory format — the descriptor.
//
// This header is the single description of the segment. Everything a writer, a reader or the
// inspector knows about the bytes in /dev/shm comes from here, and nothing else lives here.
// ANY CHANGE to a struct, a constant or a region below bumps kLayoutVersion; the fingerprint
// (sizes and offsets, derived at compile time) catches what a forgotten bump would miss.
//
// The segment (every region starts on a 4 KiB boundary; offsets are stored in the header):
//
//   +--------------------------------------------------------------+ 0
//   | SegmentHeader                       (kHeaderSize = 32 KiB)    |
//   |   identity · control · writer liveness · change sequence    |
//   |   counters · Redis sync state · namespaces + schemas        |
//   +--------------------------------------------------------------+ slots_offset
//   | Slot[capacity]            one position each, 448 B, 7 lines   |  <- readers
//   +--------------------------------------------------------------+ index_offset[0]
//   | Bucket[index_buckets]     hash index A, 8 B each              |  <- readers
//   +--------------------------------------------------------------+ index_offset[1]
//   | Bucket[index_buckets]     hash index B (rebuild target)       |  <- readers
//   +--------------------------------------------------------------+ accounts_offset
//   | AccountEntry[index_buckets] account -> first slot, count, 16 B |  <- snapshot()
//   +--------------------------------------------------------------+ stripes_offset
//   | u64[account_stripes]      account seqlocks (shm/accounts.hpp) |  <- snapshot()
//   +--------------------------------------------------------------+ links_offset
//   | u32[capacity]             next slot of the same account       |  <- snapshot()
//   +--------------------------------------------------------------+ ring_offset
//   | ChangeCell[ring_cells]    the change ring, 128 B each         |  <- changes()
//   +--------------------------------------------------------------+ writer_offset
//   | WriterArea                undo record, free list, versions    |  writer only:
//   |   SlotBook[capacity]      free/account links, sync mark, 24 B |  readers never
//   +--------------------------------------------------------------+ journal_offset touch it
//   | JournalHeader             head, tail, overflows               |  writer only
//   |   JournalEntry[entries]   removals not yet in Redis, 768 B    |
//   +--------------------------------------------------------------+ producers_offset
//   | ProducerStatus[64]        producer rings' counters, 256 B     |  writer writes,
//   +--------------------------------------------------------------+ segment_size  tools read
//
// Readers map the whole segment PROT_READ and read only the header, the slots and the index,
// for an account's positions (Reader::snapshot) the account index, the stripes and the
// account links (shm/accounts.hpp), and for what changed (Reader::changes) the change ring
// (shm/change_ring.hpp).
// Every word that one side writes while another reads it is a plain integer here, touched only
// through shm/atomic.hpp (load_acquire, store_release, load_relaxed, store_relaxed): no
// std::atomic members, so the layout is exactly the bytes drawn, and every access names its
// memory order.
//
// PROTOCOL INDEX: every release/acquire pair in the segment, and what it guarantees.
//
//   word (store: release)           loaded with acquire by       guarantees
//   ------------------------------  ---------------------------  -----------------------------
//   header.magic     creator, last  check_header (readers,       the whole header the creator
//                    of the header  re-attaching writer)         wrote: identity, namespaces
//   header.state     writer: ready, every get() and attach        ready: the table and index
//                    closed, retired                              the writer built before it
//   slot.seq         writer SW4     readers SR1                  the payload words of that
//                    (SW2: release  (shm/seqlock.hpp), SR3       write; a later write's words
//                    fence)         acquire fence, SR4            make SR4 see its odd seq
//   bucket           writer XI1,    readers XL2 (shm/index.hpp)  XI1: the slot it names is
//                    XD1                                          published; XD1 likewise
//   header.index_epoch  writer XB2  readers XL1, XL3             the whole rebuilt index
//   header.change_seq   writer,     Reader::change_sequence,     the change it announces is
//                    after a change wait_for_change               visible to get()
//   header.change_futex  writer     wait_for_change (before      no lost wake-up (the futex
//                                   re-reading change_seq)        word is read first)
//   header.redis_error_seq  sync    Reader::mirror_status        the error text of that
//                    thread (a       (seqlock, as a slot)         write (seqlock_begin/publish)
//                    seqlock)
//   undo.slot_plus_one  writer,     re-attaching writer          the undo record is complete
//                    armed before SW1                             (program order; see seqlock)
//   journal.head     apply thread   sync thread, re-attach       the entries below it
//   journal.tail     sync thread    apply thread (append)        entries below it may be
//                                                                 overwritten
//   book.synced_version  sync       apply thread before an       Redis holds that version: an
//                    thread          eviction or expiry           eviction needs no spill
//   account stripe   writer AW4     snapshot AS1 (AW1-AW4 in     the account's positions,
//                    (AW2: release  shm/accounts.hpp), AS4       links and index entry as
//                    fence)          acquire fence                that change left them
//   header.accounts_epoch  writer   snapshot AS1, AS4            no index entry moved during
//                    AE2                                          the lookup
//   ring cell seq    writer CW4     changes() CR1 (CW1-CW5 in    the record's words; a later
//                    (CW2: release  shm/change_ring.hpp), CR3    overwrite's words make CR4
//                    fence)          acquire fence, CR4           see another seq
//   header.ring_head writer CW5,    changes() CR0                the records below it, and
//                    after the                                    the changes they announce
//                    change                                       (visible to get())
// Everything else shared (counters, heartbeat, liveness, Redis gauges) is relaxed: statistics
// and liveness hints that order nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "poscache/counters.hpp"
#include "poscache/schema.hpp"
#include "shm/atomic.hpp"

namespace poscache::shm {

inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kPageSize = 4096;
inline constexpr std::uint64_t kMagic = 0x3156'4843'4143'5350ULL;  // "PSCACHV1" little-endian
inline constexpr std::uint32_t kLayoutVersion = 12;  // what changed in each: git log -L
inline constexpr std::uint32_t kHashAlgorithm = 3;   // XXH3_64bits, seed 0 (see shm/hash.hpp)

// Key and schema limits. The public constants (poscache/schema.hpp: what the API validates) are
// the format's own: pinned here to the bytes that hold them, and part of the fingerprint.
static_assert(kMaxAccountLen == 64 && kMaxInstrumentLen == 64,
              "SlotPayload::account[64], instrument[64]; lengths fit their uint8_t");
static_assert(kMaxFields == 16, "SlotPayload::values[16][2]; NamespaceDesc::fields[16]");
static_assert(kMaxNamespaces == 32, "SegmentHeader::namespaces[32]; ns ids below kFreeNamespace");
static_assert(kMaxNameLen < 32, "NUL-padded name[32] of namespaces and fields");

// ---------------------------------------------------------------------------------------------
// Segment state: initializing -> ready -> closed | retired.
//   initializing  the writer is creating or loading it; readers refuse to attach.
//   ready         a writer owns it (or owned it and died: see the heartbeat).
//   closed        the writer stopped cleanly; data is consistent but no longer updated.
//   retired       a writer re-created the segment under the same name (new generation);
//                 readers get ReadStatus::retired and re-attach with Reader::follow().
enum class SegmentState : std::uint32_t { initializing = 1, ready = 2, closed = 3, retired = 4 };

// SegmentHeader::redis_state, set by the writer's sync thread (writer/redis/sync_worker.cpp).
// SegmentHeader::redis_warnings: what health shows without turning degraded.
//   kRedisEvicts: the server's maxmemory-policy may evict keys (anything but noeviction): Redis
//     can silently hold less than the segment; the writer refills it when it notices.
//   kRedisRefilling: a refill (re-push of the whole segment) is under way: set when the loss is
//     noticed, cleared once everything it queued is written.
inline constexpr std::uint32_t kRedisEvicts = 1, kRedisRefilling = 2;

// SegmentHeader::follow_state: a follower loading the whole prefix (at start, or because the
// change stream was trimmed past it), tailing the change stream, or unable to reach Redis.
enum class FollowState : std::uint32_t { none = 0, loading = 1, following = 2, down = 3 };
constexpr const char* follow_state_name(std::uint32_t s) noexcept {
  constexpr const char* kNames[] = {"none", "loading", "following", "down"};
  return s < 4 ? kNames[s] : "unknown";
}

// fenced: another writer took the Redis lease (writer/redis/lease.hpp); this writer writes
// nothing more to Redis and goes on serving readers.
enum class RedisState : std::uint32_t { off = 0, connecting = 1, up = 2, down = 3, fenced = 4 };
constexpr const char* redis_state_name(std::uint32_t s) noexcept {
  constexpr const char* kNames[] = {"off", "connecting", "up", "down", "fenced"};
  return s < 5 ? kNames[s] : "unknown";
}

// A NUL-padded name field (namespace, field) as text: up to the first NUL or the whole array.
template <std::size_t N>
std::string_view fixed_name(const char (&name)[N]) noexcept {
  return {name, strnlen(name, N)};
}

// ---------------------------------------------------------------------------------------------
// Schema descriptors (immutable once the state leaves `initializing`).
//
//   FieldDesc (40 B)
//   0                               32    33     34     35          40
//   +-------------------------------+-----+------+------+-----------+
//   | name[32] (NUL-padded)         |type |scale |length| reserved  |
//   +-------------------------------+-----+------+------+-----------+
//   A text field's value takes ceil(length / 16) consecutive value slots (SlotPayload::values),
//   its bytes in order, NUL-padded; text fields follow every numeric field (poscache/schema.hpp).
struct FieldDesc {
  char name[32];
  std::uint8_t type;    // FieldType
  std::uint8_t scale;   // decimals: digits after the point
  std::uint8_t length;  // text: the most bytes it holds
  std::uint8_t reserved[5];
};
static_assert(sizeof(FieldDesc) == 40);

//   NamespaceDesc (704 B = 11 lines)
//   0            32           36       40              48               56       64     704
//   +------------+------------+--------+---------------+----------------+--------+------+
//   | name[32]   |field_count |reserved|stale_after_ns |expire_after_ns |reserved|fields|
//   +------------+------------+--------+---------------+----------------+--------+------+
struct alignas(kCacheLine) NamespaceDesc {
  char name[32];
  std::uint32_t field_count;
  std::uint32_t reserved0;
  std::int64_t stale_after_ns;   // 0 = never stale
  std::int64_t expire_after_ns;  // 0 = never expires
  std::uint64_t reserved1;
  FieldDesc fields[kMaxFields];
};
static_assert(sizeof(NamespaceDesc) == 704);
static_assert(offsetof(NamespaceDesc, fields) == 64);

inline constexpr std::size_t kRedisErrorWords = 13;  // 104 bytes of the sync's last error

// ---------------------------------------------------------------------------------------------
// SegmentHeader. One cache line per concern, so the words every get() reads (identity and
// control) are never on a line the writer dirties on every update.
struct alignas(kCacheLine) SegmentHeader {
  // --- line 0: identity. Written once while initializing, then read-only. -------------------
  // kMagic, stored last at creation with release (after every other identity word and the
  // namespaces); check_header() loads it with acquire, so a reader that sees kMagic sees the
  // whole header the creator wrote.
  std::uint64_t magic;
  std::uint32_t layout_version;      // kLayoutVersion
  std::uint32_t header_size;         // sizeof(SegmentHeader)
  std::uint64_t layout_fingerprint;  // layout_fingerprint() of the build that created it
  std::uint64_t generation;          // new at every fresh creation (never reused)
  std::uint64_t capacity;            // number of slots
  std::uint64_t index_buckets;       // buckets per index, a power of two >= 2 * capacity
  std::uint64_t segment_size;        // bytes, all regions
  std::uint32_t namespace_count;
  std::uint32_t reserved0;

  // --- line 1: control. Read by every get(); written only on state change or index rebuild.
  std::uint32_t state;  // SegmentState (release / acquire)
  std::uint32_t reserved1;
  std::uint64_t index_epoch;  // active index = epoch & 1 (shm/index.hpp; XB2 release / XL1 acquire)
  std::uint64_t slots_offset;
  std::uint64_t index_offset[2];
  std::uint64_t writer_offset;
  std::uint64_t ring_cells;  // cells of the change ring the writer fills; 0: it keeps none
  std::uint64_t reserved2;

  // --- line 2: writer liveness. Written by the writer's heartbeat (relaxed).
  std::int64_t writer_pid;
  std::uint64_t writer_start_ticks;    // /proc/<pid>/stat starttime: pid reuse
  std::int64_t writer_started_at_ns;   // CLOCK_REALTIME
  std::int64_t heartbeat_ns;           // CLOCK_REALTIME of the last heartbeat
  std::int64_t heartbeat_interval_ns;  // how often the writer beats
  std::uint64_t writer_restarts;       // re-attachments after a writer died
  std::uint64_t redis_lease_epoch;     // the Redis lease's epoch this writer holds (0: none;
                                       // stored relaxed by the sync thread)
  std::uint64_t reserved3;

  // --- line 3: change notification. Bumped after every applied change (or batch).
  std::uint64_t change_seq;    // release-stored after the change is published
  std::uint32_t change_futex;  // futex word; the writer bumps it (release) and FUTEX_WAKEs
  std::uint32_t reserved4;
  std::uint64_t accounts_epoch;  // odd while account index entries move (shm/accounts.hpp)
  std::uint64_t ring_head;       // change ring: records below it are published (CW5)
  // A follower (writer/follow/follower.hpp) keeping this segment from another writer's Redis:
  // stored relaxed by its apply thread once per batch of the change stream (statistics).
  std::uint32_t follow_state;  // FollowState (0: not a follower)
  std::uint32_t reserved5;
  std::int64_t follow_lag_ns;    // the last batch's largest lag: applied here - applied there
  std::uint64_t follow_entries;  // change-stream entries applied
  std::uint64_t follow_reloads;  // full reloads (the stream trimmed past it, or Redis lost it)

  // --- lines 4-5: counters (poscache/counters.hpp; one writer, relaxed).
  Counters counters;
  std::uint64_t reserved6[16 - sizeof(Counters) / 8];

  // --- lines 6-8: the Redis mirror's state, written by the writer's sync thread
  //     (writer/redis/sync_worker.cpp), relaxed except the error text's seqlock; and copies of
  //     the journal's words for readers (the journal itself is writer-only), each stored, relaxed,
  //     by the thread that moves the original: head and overflows by the apply thread, tail by
  //     the sync thread (writer/journal.cpp). Pending = head - tail (published_journal_pending).
  std::uint32_t redis_state;  // RedisState
  std::uint32_t redis_error_len;
  std::uint64_t redis_dirty;              // positions changed, not yet synced
  std::int64_t redis_oldest_unsynced_ns;  // CLOCK_REALTIME of the oldest such change
  std::uint64_t redis_synced_version;     // highest version acknowledged by Redis
  std::uint64_t redis_error_seq;          // seqlock over redis_error (shm/seqlock.hpp)
  std::uint64_t journal_head;             // JournalHeader::head, copied
  std::uint64_t journal_tail;             // JournalHeader::tail, copied
  std::uint64_t journal_overflows;        // JournalHeader::overflows, copied
  std::uint64_t redis_data_losses;        // times Redis was found without the data it was given
  std::uint64_t redis_repushed;           // positions written again to refill it
  std::uint32_t redis_warnings;           // RedisWarning bits
  std::uint32_t reserved7;
  std::uint64_t redis_error[kRedisErrorWords];  // last error text as words (redis_error_seq)

  // --- namespaces, from the first line after the Redis state.
  NamespaceDesc namespaces[kMaxNamespaces];

  // --- live positions per namespace id (4 lines; one writer, relaxed, as the counters). Their
  //     sum is counters.live; read together they are statistics, not a consistent cut.
  std::uint64_t namespace_live[kMaxNamespaces];
};

// A snapshot of the counters (each word relaxed: statistics, not a consistent cut).
inline Counters load_counters(const SegmentHeader& h) noexcept {
  Counters c;
  for (const CounterField& f : kCounterFields) c.*f.member = load_relaxed(&(h.counters.*f.member));
  return c;
}

inline constexpr std::size_t kHeaderSize = 32 * 1024;
static_assert(sizeof(SegmentHeader) <= kHeaderSize);
static_assert(offsetof(SegmentHeader, state) == 1 * kCacheLine);
static_assert(offsetof(SegmentHeader, writer_pid) == 2 * kCacheLine);
static_assert(offsetof(SegmentHeader, change_seq) == 3 * kCacheLine);
static_assert(offsetof(SegmentHeader, counters) == 4 * kCacheLine);
static_assert(sizeof(Counters) <= 2 * kCacheLine);
static_assert(offsetof(SegmentHeader, redis_state) == 6 * kCacheLine);
static_assert(offsetof(SegmentHeader, namespaces) == 9 * kCacheLine);
static_assert(offsetof(SegmentHeader, redis_error) % 8 == 0);
static_assert(offsetof(SegmentHeader, namespace_live) % kCacheLine == 0);

// ---------------------------------------------------------------------------------------------
// Slot: one position. 448 B = 7 cache lines, aligned to a line. (The ruler is wider than the
// column limit: clang-format leaves it alone.)
//
// clang-format off
//   byte 0        8          16  18  19  20        24        32           40           48          56        64
//   +-------------+----------+---+---+---+---------+---------+------------+------------+-----------+---------+
//   | seq         | key_hash |ns |alen|ilen|fields_set| version | source_seq | created_at | updated_at| acct_hash|
//   +-------------+----------+---+---+---+---------+---------+------------+------------+-----------+---------+
//   64                              128                            192                                    448
//   +-------------------------------+------------------------------+---------------------------------------+
//   | account[64]                   | instrument[64]               | values[16][2]: lo, hi of each field   |
//   +-------------------------------+------------------------------+---------------------------------------+
// clang-format on
//
// `seq` is the seqlock sequence (even: stable, odd: the writer is changing the slot). Everything
// after it is the payload: copied by readers as 8-byte words with relaxed atomic loads between two
// reads of `seq` (shm/seqlock.hpp), written by the writer as 8-byte words with relaxed stores.
// Neither side ever accesses the payload as anything but 64-bit words, so SlotPayload below is
// the meaning of those words, assembled in private memory.
inline constexpr std::uint16_t kFreeNamespace = 0xFFFF;  // ns of a free slot

struct SlotPayload {
  std::uint64_t key_hash;  // hash of (ns, account, instrument), shm/hash.hpp
  std::uint16_t ns;        // namespace id, kFreeNamespace if the slot is free
  std::uint8_t account_len;
  std::uint8_t instrument_len;
  std::uint32_t fields_set;      // bit i: field i carries a value
  std::uint64_t version;         // writer-wide monotonic, new on every change
  std::uint64_t source_seq;      // the producer's sequence number (0 if none)
  std::int64_t created_at_ns;    // CLOCK_REALTIME when first inserted
  std::int64_t updated_at_ns;    // CLOCK_REALTIME of the last change (LRU and TTL order)
  std::uint64_t account_hash;    // hash of the account alone (shm/hash.hpp): its account stripe
  char account[kMaxAccountLen];  // NUL-padded
  char instrument[kMaxInstrumentLen];   // NUL-padded
  std::uint64_t values[kMaxFields][2];  // field i: {low, high} 64 bits of its int128 mantissa
};
static_assert(sizeof(SlotPayload) == 440);

// What a free slot holds: all zero but the namespace, kFreeNamespace. Every way a slot is freed
// (remove, a repair, creation) writes this.
constexpr SlotPayload free_slot_payload() noexcept {
  SlotPayload p{};
  p.ns = kFreeNamespace;
  return p;
}
static_assert(offsetof(SlotPayload, account) == 56);
static_assert(offsetof(SlotPayload, values) == 184);

inline constexpr std::size_t kPayloadWords = sizeof(SlotPayload) / 8;  // 55
// Words a read must copy: everything up to the values, then two words per schema field.
inline constexpr std::size_t kPayloadFixedWords = offsetof(SlotPayload, values) / 8;  // 23

// Payload word indices of the words an update changes (the writer stores just those).
inline constexpr std::size_t kWordMeta = offsetof(SlotPayload, ns) / 8;  // ns, lengths, fields_set
inline constexpr std::size_t kWordVersion = offsetof(SlotPayload, version) / 8;
inline constexpr std::size_t kWordSourceSeq = offsetof(SlotPayload, source_seq) / 8;
inline constexpr std::size_t kWordUpdatedAt = offsetof(SlotPayload, updated_at_ns) / 8;
inline constexpr std::size_t kWordAccountHash = offsetof(SlotPayload, account_hash) / 8;
inline constexpr std::size_t kWordValues =
    offsetof(SlotPayload, values) / 8;  // field f: +2f, +2f+1
static_assert(offsetof(SlotPayload, fields_set) == 8 * kWordMeta + 4,
              "fields_set: high half of the meta word");

struct alignas(kCacheLine) Slot {
  std::uint64_t seq;
  std::uint64_t payload[kPayloadWords];
};
static_assert(sizeof(Slot) == 448 && sizeof(Slot) % kCacheLine == 0);
static_assert(offsetof(Slot, payload) == 8);

// ---------------------------------------------------------------------------------------------
// Bucket: one 64-bit word of the open-addressing index.
//
//   63                                32 31                                 0
//   +------------------------------------+------------------------------------+
//   | tag: high 32 bits of key_hash      | slot index + 1                     |
//   +------------------------------------+------------------------------------+
//   0 = empty; low half 0xFFFFFFFF = tombstone (a removed key; probes continue past it).
using Bucket = std::uint64_t;
inline constexpr std::uint64_t kEmptyBucket = 0;
inline constexpr std::uint32_t kTombstoneRef = 0xFFFF'FFFFu;
inline constexpr std::uint64_t kMaxCapacity = 0xFFFF'FFFEull - 1;

constexpr std::uint32_t bucket_tag(std::uint64_t hash) noexcept {
  return static_cast<std::uint32_t>(hash >> 32);
}
constexpr std::uint64_t make_bucket(std::uint32_t tag, std::uint32_t slot) noexcept {
  return (static_cast<std::uint64_t>(tag) << 32) | (slot + 1u);
}
constexpr std::uint32_t bucket_ref(std::uint64_t bucket) noexcept {  // slot + 1, or kTombstoneRef
  return static_cast<std::uint32_t>(bucket);
}

// ---------------------------------------------------------------------------------------------
// Writer area: the writer's own bookkeeping. Readers never read it. It lives in the segment only
// so that a writer restarted after kill -9 finds the undo record and the sync marks.
inline constexpr std::uint32_t kNil = 0xFFFF'FFFFu;  // end of a list

//   SlotBook (24 B), one per slot:
//   0      4              8                  16                 24
//   +------+--------------+------------------+------------------+
//   | next | account_prev | synced_version   | queued_epoch     |
//   +------+--------------+------------------+------------------+
//   next: the free list. (The LRU order is the writer's private RecencyLog, rebuilt from the
//     slots' updated_at and version when a writer re-attaches: writer/recency_log.hpp.)
//   account_prev: the previous slot of the same account's list (the next one is in the account
//     links, which readers follow: shm/accounts.hpp).
//   synced_version: the highest version of this slot that Redis acknowledged. Stored by the
//     sync thread (release), loaded by the apply thread (acquire) before it evicts or expires
//     the slot: a version above it is spilled to the sync thread first
//     (writer/redis/redis_sync.hpp).
//   queued_epoch: the apply thread's hand-off epoch in which the slot was last marked dirty;
//     equal to the current epoch means "already in the batch" (apply thread only).
struct SlotBook {
  std::uint32_t next;
  std::uint32_t account_prev;
  std::uint64_t synced_version;
  std::uint64_t queued_epoch;
};
static_assert(sizeof(SlotBook) == 24);  // 32 until the account links moved out (version 8)

//   UndoRecord: the payload words the write in progress changes, each with its value before
//   the write. Written before the slot's seq turns odd; consulted only at re-attach
//   (shm/seqlock.hpp, "THE WRITER DIES").
//   0              8            16       24         32                  88           528
//   +--------------+------------+--------+----------+-------------------+------------+
//   | slot_plus_one| seq_before | count  | reserved | word[56]: indices | old[55]    |
//   +--------------+------------+--------+----------+-------------------+------------+
struct alignas(kCacheLine) UndoRecord {
  std::uint64_t slot_plus_one;  // 0 = no write in progress recorded
  std::uint64_t seq_before;     // the even seq before the write
  std::uint64_t count;          // words saved (<= kPayloadWords)
  std::uint64_t reserved;
  std::uint8_t word[kPayloadWords + 1];  // payload word index of each saved word
  std::uint64_t old[kPayloadWords];      // that word's value before the write
};
static_assert(offsetof(UndoRecord, old) == 88);

struct alignas(kCacheLine) WriterArea {
  UndoRecord undo;
  std::uint64_t next_version;  // the next version to hand out
  std::uint32_t free_head;     // free slots, linked through SlotBook::next
  std::uint32_t reserved;
  // followed by SlotBook[capacity] at book_offset(), 64-byte aligned
};

// ---------------------------------------------------------------------------------------------
// Journal: the removals (erases, invalidations, and evictions or expirations of positions whose
// latest version Redis has not acknowledged: "spills") that the Redis sync has not written yet.
// A slot that changed keeps its change in the segment, and a re-attaching writer finds it by
// SlotBook::synced_version; a removal leaves nothing in the slots, so it is recorded here, in
// shared memory, before it is applied: a writer killed with -9 leaves it for the next one.
//
//   JournalHeader (3 lines, one per writer of each word)
//   0                 64                128                   192
//   +-----------------+-----------------+---------------------+
//   | head            | tail            | overflows           |
//   +-----------------+-----------------+---------------------+
//   head: entries [0, head) were written (apply thread; release after the entry is complete).
//   tail: entries [0, tail) are in Redis or superseded by a later change that is (sync thread;
//     release after Redis replied; the apply thread's acquire load before it reuses an entry).
//   Entry n lives at index n % entries. [tail, head) is what a re-attaching writer replays.
//   overflows: removals that found the journal full (a long Redis outage): the sync thread
//     still writes them from memory, but a kill -9 before it does would lose them (counted,
//     logged).
//
//   JournalEntry (768 B = 12 lines)
//   0         8      9       10    12         14         16          272              712
//   +---------+------+-------+-----+----------+----------+-----------+----------------+---
//   | version | kind |has_ns | ns  | text_len | reserved | text[256] | payload (440)  |pad
//   +---------+------+-------+-----+----------+----------+-----------+----------------+---
//   kind: JournalKind below. text: the account (account) or the glob pattern (glob). payload:
//   the position (spill), or its namespace and key (erase). has_ns/ns: the namespace of an ns
//   removal, or the optional namespace filter of an account removal.
//   The writer's code for the journal (append, validation at re-attach, replay): writer/journal.
inline constexpr std::size_t kJournalTextMax = 256;

enum class JournalKind : std::uint8_t {
  spill,    // an eviction or expiry of a version Redis had not acknowledged: the position
  erase,    // one key
  account,  // every position of an account (optionally of one namespace)
  ns,       // every position of a namespace
  glob,     // every key matching a glob over "ns:account:instrument"
  all,      // everything
};
inline constexpr std::uint8_t kJournalKindCount = 6;

struct alignas(kCacheLine) JournalHeader {
  alignas(kCacheLine) std::uint64_t head;
  alignas(kCacheLine) std::uint64_t tail;
  alignas(kCacheLine) std::uint64_t overflows;
};
static_assert(sizeof(JournalHeader) == 3 * kCacheLine);

// Entries written but not yet in Redis. Tail first: both only grow, so a sound journal never
// shows head behind tail to this order (a corrupt one reads as empty; verify reports it).
inline std::uint64_t journal_pending(const JournalHeader& j) noexcept {
  const std::uint64_t tail = load_acquire(&j.tail);
  const std::uint64_t head = load_acquire(&j.head);
  return head >= tail ? head - tail : 0;
}

// The same from the header's copies: what readers may see (tail first, as above).
inline std::uint64_t published_journal_pending(const SegmentHeader& h) noexcept {
  const std::uint64_t tail = load_relaxed(&h.journal_tail);
  const std::uint64_t head = load_relaxed(&h.journal_head);
  return head >= tail ? head - tail : 0;
}

struct alignas(kCacheLine) JournalEntry {
  std::uint64_t version;
  std::uint8_t kind;
  std::uint8_t has_ns;
  std::uint16_t ns;
  std::uint16_t text_len;
  std::uint16_t reserved;
  char text[kJournalTextMax];
  SlotPayload payload;
};
static_assert(offsetof(JournalEntry, payload) == 272 && sizeof(JournalEntry) == 768);

// Entries per segment: a sixteenth of the capacity, at least 1024 and at most 65536 (48 MiB).
constexpr std::uint64_t journal_entries_for(std::uint64_t capacity) {
  const std::uint64_t n = capacity / 16;
  return n < 1024 ? 1024 : (n > 65536 ? 65536 : n);
}

// ---------------------------------------------------------------------------------------------
// The producer table: one entry per producer ring the writer serves (shm/ring.hpp), for tools
// (poscache-inspect producers). Written only by the writer's apply thread. The counters are
// relaxed statistics; the identity and the error text are guarded by `seq`, a seqlock
// (shm/seqlock.hpp: seqlock_begin / seqlock_publish, seqlock_try_read) over the whole entry
// after it, so a tool never prints one producer's name with another's error.
//
//   ProducerStatus (256 B)
//   0      8      12     16     24           32          40       72
//   +------+------+------+------+------------+-----------+--------+---------------------------+
//   | seq  |state | uid  | pid  |attached_at |detached_at| name   | pushed applied rejected    |
//   +------+------+------+------+------------+-----------+--------+ full synced (5 x 8) ------+
//   112: error_len   120: error[136]
inline constexpr std::size_t kMaxProducers = 64;
enum class ProducerState : std::uint32_t { free = 0, attached = 1, detached = 2 };

struct alignas(kCacheLine) ProducerStatus {
  std::uint64_t seq;    // seqlock over every word after it
  std::uint32_t state;  // ProducerState
  std::uint32_t uid;
  std::int64_t pid;
  std::int64_t attached_at_ns;  // CLOCK_REALTIME
  std::int64_t detached_at_ns;  // 0 while attached
  std::uint64_t name[4];        // text as words (put_text / text_of), NUL-padded, 32 B
  std::uint64_t pushed;         // messages the producer published (its tail)
  std::uint64_t applied;        // messages applied (the ring's head)
  std::uint64_t rejected;       // messages refused (bad input)
  std::uint64_t full;           // pushes the producer found the ring full for
  std::uint64_t synced;         // messages Redis holds
  std::uint64_t error_len;
  std::uint64_t error[17];  // the last refusal's message, as words (136 B)
};
static_assert(sizeof(ProducerStatus) == 256);
static_assert(offsetof(ProducerStatus, name) == 40 && offsetof(ProducerStatus, pushed) == 72);
static_assert(offsetof(ProducerStatus, error) == 120);
inline constexpr std::size_t kProducerStatusWords = (sizeof(ProducerStatus) - 8) / 8;

// ---------------------------------------------------------------------------------------------
// The change ring (protocol: shm/change_ring.hpp): what changed, in order, for readers that
// follow it. A record is 1 to 3 cells of 128 B; cell n of the ring holds ring position
// n + k * ring_cells.
//   first cell of a record
//   0      8         16       24     25      26   28     29     30         32             128
//   +------+---------+--------+------+-------+----+------+------+----------+--------------+
//   | seq  | version | at_ns  | kind | cells | ns | alen | ilen | text_len | text[96]     |
//   +------+---------+--------+------+-------+----+------+------+----------+--------------+
//   each further cell:  | seq | text[120] |
//   seq: the cell's ring position + 1 once complete, kCellWriting while it is being written.
//   text: account then instrument (alen + ilen bytes), or a pattern (text_len bytes).
struct alignas(kCacheLine) ChangeCell {
  std::uint64_t seq;
  std::uint64_t word[15];
};
static_assert(sizeof(ChangeCell) == 128);
inline constexpr std::size_t kCellFirstTextBytes = 96;  // after version, at_ns and the meta word
inline constexpr std::size_t kCellTextBytes = 120;      // a further cell's
inline constexpr std::size_t kMaxRecordCells = 3;       // 96 + 2 * 120 >= the longest text
inline constexpr std::size_t kMaxChangeText = kCellFirstTextBytes + 2 * kCellTextBytes;

// Cells: one per 32 slots, a power of two from 16384 to 65536 (2 MiB for a small table, 4 MiB
// at a million positions: tens of milliseconds of history at a million updates a second, a
// quarter of a second at a busy small writer's 65 000).
constexpr std::uint64_t ring_cells_for(std::uint64_t capacity) {
  std::uint64_t n = 16384;
  while (n < capacity / 32 && n < 65536) n <<= 1;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Derived sizes and offsets.
constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) {
  return (v + a - 1) / a * a;
}

constexpr std::uint64_t buckets_for(std::uint64_t capacity) {
  std::uint64_t b = 16;
  while (b < 2 * capacity) b <<= 1;
  return b;
}

// ---------------------------------------------------------------------------------------------
// The account index (protocol: shm/accounts.hpp). One open-addressing table of AccountEntry
// (as many as the hash index has buckets: at most half full, since accounts <= positions) and
// the account stripes: seqlock words, an account's being stripe (account hash & (stripes - 1)).
//   AccountEntry (16 B)
//   0                      8                12               16
//   +----------------------+----------------+----------------+
//   | key: account hash    | head: slot     | count          |
//   +----------------------+----------------+----------------+
//   key 0 = empty (a hash of 0 is stored as 1); head kNil = none; count: positions in the list.
struct AccountEntry {
  std::uint64_t key;
  std::uint32_t head;
  std::uint32_t count;
};
static_assert(sizeof(AccountEntry) == 16);

// A stripe per 64 slots (at least 64): 128 KiB at a million, small enough to stay in the
// writer's L2, so an update's stripe costs it no cache miss. With accounts of 20 positions about
// three accounts share a stripe, and sharing only costs a snapshot a retry, never a wrong answer.
// (One per 4 slots, 2 MiB at a million, cost updates 13-20 % in bench_writer: a line more to
// fetch and write back per update; one per 64 is within the runs' noise.)
constexpr std::uint64_t account_stripes_for(std::uint64_t capacity) {
  std::uint64_t n = 64;
  while (n < capacity / 64) n <<= 1;
  return n;
}

struct Geometry {
  std::uint64_t capacity;
  std::uint64_t index_buckets;
  std::uint64_t slots_offset;
  std::uint64_t index_offset[2];
  std::uint64_t accounts_offset;  // AccountEntry[index_buckets]
  std::uint64_t stripes_offset;   // std::uint64_t[account_stripes]
  std::uint64_t account_stripes;
  std::uint64_t links_offset;  // std::uint32_t[capacity]: the account lists' next slot
  std::uint64_t ring_offset;   // ChangeCell[ring_cells]
  std::uint64_t ring_cells;
  std::uint64_t writer_offset;
  std::uint64_t book_offset;     // SlotBook[capacity] inside the writer area (absolute)
  std::uint64_t journal_offset;  // JournalHeader, then JournalEntry[journal_entries]
  std::uint64_t journal_entries;
  std::uint64_t producers_offset;  // ProducerStatus[kMaxProducers]
  std::uint64_t segment_size;
};

constexpr Geometry geometry_for(std::uint64_t capacity) {
  Geometry g{};
  g.capacity = capacity;
  g.index_buckets = buckets_for(capacity);
  g.slots_offset = kHeaderSize;
  g.index_offset[0] = align_up(g.slots_offset + capacity * sizeof(Slot), kPageSize);
  g.index_offset[1] = align_up(g.index_offset[0] + g.index_buckets * sizeof(Bucket), kPageSize);
  g.accounts_offset = align_up(g.index_offset[1] + g.index_buckets * sizeof(Bucket), kPageSize);
  g.stripes_offset =
      align_up(g.accounts_offset + g.index_buckets * sizeof(AccountEntry), kPageSize);
  g.account_stripes = account_stripes_for(capacity);
  g.links_offset =
      align_up(g.stripes_offset + g.account_stripes * sizeof(std::uint64_t), kPageSize);
  g.ring_offset = align_up(g.links_offset + capacity * sizeof(std::uint32_t), kPageSize);
  g.ring_cells = ring_cells_for(capacity);
  g.writer_offset = align_up(g.ring_offset + g.ring_cells * sizeof(ChangeCell), kPageSize);
  g.book_offset = g.writer_offset + align_up(sizeof(WriterArea), kCacheLine);
  g.journal_offset = align_up(g.book_offset + capacity * sizeof(SlotBook), kPageSize);
  g.journal_entries = journal_entries_for(capacity);
  g.producers_offset =
      align_up(g.journal_offset + sizeof(JournalHeader) + g.journal_entries * sizeof(JournalEntry),
               kPageSize);
  g.segment_size = align_up(g.producers_offset + kMaxProducers * sizeof(ProducerStatus), kPageSize);
  return g;
}

// The format descriptor checked at attach: any difference in sizes, offsets, limits or the
// hash function changes it. FNV-1a over the numbers that define the format.
constexpr std::uint64_t layout_fingerprint() {
  const std::uint64_t facts[] = {kCacheLine,
                                 kHeaderSize,
                                 sizeof(SegmentHeader),
                                 offsetof(SegmentHeader, state),
                                 offsetof(SegmentHeader, writer_pid),
                                 offsetof(SegmentHeader, redis_lease_epoch),
                                 offsetof(SegmentHeader, change_seq),
                                 offsetof(SegmentHeader, accounts_epoch),
                                 offsetof(SegmentHeader, ring_head),
                                 offsetof(SegmentHeader, ring_cells),
                                 offsetof(SegmentHeader, follow_state),
                                 offsetof(SegmentHeader, counters),
                                 sizeof(Counters),
                                 offsetof(SegmentHeader, redis_state),
                                 offsetof(SegmentHeader, journal_head),
                                 offsetof(SegmentHeader, redis_data_losses),
                                 offsetof(SegmentHeader, redis_error),
                                 offsetof(SegmentHeader, namespaces),
                                 offsetof(SegmentHeader, namespace_live),
                                 sizeof(NamespaceDesc),
                                 sizeof(FieldDesc),
                                 offsetof(FieldDesc, length),
                                 sizeof(Slot),
                                 sizeof(SlotPayload),
                                 offsetof(SlotPayload, ns),
                                 offsetof(SlotPayload, version),
                                 offsetof(SlotPayload, account_hash),
                                 offsetof(SlotPayload, account),
                                 offsetof(SlotPayload, instrument),
                                 offsetof(SlotPayload, values),
                                 sizeof(Bucket),
                                 kTombstoneRef,
                                 sizeof(AccountEntry),
                                 account_stripes_for(1),
                                 account_stripes_for(1u << 30),
                                 sizeof(ChangeCell),
                                 kMaxRecordCells,
                                 ring_cells_for(1),
                                 ring_cells_for(1u << 30),
                                 sizeof(SlotBook),
                                 sizeof(UndoRecord),
                                 sizeof(WriterArea),
                                 sizeof(JournalHeader),
                                 sizeof(JournalEntry),
                                 journal_entries_for(1),
                                 journal_entries_for(1u << 30),
                                 sizeof(ProducerStatus),
                                 kMaxProducers,
                                 kMaxNamespaces,
                                 kMaxFields,
                                 kMaxAccountLen,
                                 kMaxInstrumentLen,
                                 kHashAlgorithm,
                                 kLayoutVersion};
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::uint64_t f : facts) {
    for (int i = 0; i < 8; ++i) {
      h ^= (f >> (8 * i)) & 0xFF;
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

}  // namespace poscache::shm
