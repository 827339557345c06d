// Producer rings: how a producer process hands commands to the writer through shared memory.
//
// One ring per producer process, single producer (that process) and single consumer (the
// writer). The producer creates the ring in its own memfd and passes the descriptor to the
// writer over the daemon's unix socket (SCM_RIGHTS, writer/ingest/socket_source.hpp); the
// connection's hang-up tells the writer that the producer is gone, and the writer drains what
// was published and unmaps the ring. A producer maps only its own ring and the segment
// read-only, so it can damage nothing but its own ring: the writer never trusts a word of it.
//
//   +------------------------------------------------------------+ 0
//   | RingHeader                                    (4 KiB)       |
//   |   line 0  identity: magic, version, sizes, pid, name        |  producer, at creation
//   |   line 1  producer: tail, full count                        |  producer
//   |   line 2  writer: head (= applied), synced, rejects, futex   |  writer
//   |   line 3+ writer: last error text (seqlock)                 |  writer
//   +------------------------------------------------------------+ 4096
//   | RingMessage[capacity]                        512 B each     |  producer writes, writer
//   +------------------------------------------------------------+    copies out
//   | outcomes[capacity]                           8 B each       |  writer writes (PC3),
//   +------------------------------------------------------------+    producer reads
//
//   RingMessage (512 B = 8 lines)
//   0    1    2    4    5    6    7    8          12         16        24          32
//   +----+----+----+----+----+----+----+----------+----------+---------+-----------+
//   |kind|mode| ns |alen|ilen|tlen|fld | fields   | reserved | key_hash| source_seq|
//   +----+----+----+----+----+----+----+----------+----------+---------+-----------+
//   32: account[64]   96: instrument[64]   160: values[16] as (lo, hi) u64 pairs (256 B)
//   416: text[96]  (fill: trade id; invalidate: glob)
//   A refused message: the writer's reason over bytes 160..511 (values and text), NUL-padded.
//
// PROTOCOL (sequence numbers count messages from 1; message n lives in slot (n - 1) % capacity)
//
//   producer push                                  writer poll
//   ------------------------------------------     -------------------------------------------
//   PP1 t = own tail; h = load_acquire(head)       PC1 t = load_acquire(tail): pairs with PP3, so
//       (cached; reloaded only when the ring           every message below t is fully written.
//       looks full). t - h == capacity -> full:        Checked: head <= t <= head + capacity,
//       ++full_count (relaxed), return `full`.         else the ring is corrupt: the writer
//   PP2 write message t+1 into slot t % capacity        detaches it (counted, logged) unread.
//       (plain stores: the slot is the             PC2 copy messages head+1..t out of the ring
//       producer's until head passes it)               into private memory, THEN validate the
//   PP3 store_release(tail, t+1)                       copies: what the producer scribbles
//   (wait variants: futex on ack_futex)                after PC1 cannot change what is applied.
//                                                  PC3 apply the copies (upsert batch, commands),
//                                                      and store each one's outcome (applied,
//                                                      duplicate, stale, not found, rejected with
//                                                      its reason) into its slot
//                                                  PC4 store_release(head, t): pairs with PP1's
//                                                      acquire. The slots are free again, and
//                                                      head is the producer's "applied": every
//                                                      message <= head is visible to readers.
//                                                  PC5 synced = the last sequence Redis holds
//                                                      (store_release); bump ack_futex and
//                                                      FUTEX_WAKE if `waiters` is set.
//
// OUTCOMES (PP4). At PC3 the writer stores, for message n, outcomes[(n - 1) % capacity] =
// n << 8 | RingOutcome (relaxed; a refused message also gets its reason written over its spent
// values, bytes 160..511 of its slot, first). After load_acquire(head) >= n, which pairs with
// PC4, the producer reads the word: a sequence other than n means it was never stored (or is
// from another lap). The outcomes live apart from the messages so that the writer never writes a
// line the producer's PP2 writes next: the push path stays as it was (the writer only reads
// message slots, except a refused one's). A refusal's reason stays readable until the producer
// reuses the slot for message n + capacity, which is why the producer answers "unknown" for a
// message that old. A producer that scribbles on either only garbles its own answers.
//
// A DROPPED RING. A ring whose indices are out of range (PC1) is damaged: the writer stops
// reading it. It stores the reason into the error text, its own head (what it really applied)
// into `head`, then store_release(dropped, 1), and releases the ring. The producer checks
// `dropped` (load_acquire, on its own line 1: no extra cache miss) at every push and wait: a
// push fails naming the reason, a wait for a message beyond head answers "dropped", never
// "applied". A dropped ring is refused if it is handed over again.
//
// BATCHES. A group header (kind `group`, n in values[0]) and its n commands are written into n + 1
// consecutive slots and published with ONE PP3 store, so the writer finds them all or none. The
// writer never splits them across drains: a header whose commands lie beyond this drain's copy
// ends the drain before it (or, first in the drain, widens the copy); a header claiming more
// than were published, or more than kMaxGroupCommands, is refused alone. The whole group is
// applied by one Writer::apply (all or nothing, seen whole by snapshot readers) before PC4, so a
// wait for the header's sequence covers every command of it. Outcomes: the header's is the
// batch's (rejected, with the reason, if any command was refused: then every command's outcome
// is rejected too); each command's its own (applied, duplicate, stale, not found).
//
// WHY HEAD ADVANCES ONLY AFTER APPLY (PC4 after PC3): a writer killed -9 between PC2 and PC4 leaves
// head where it was, so the next writer (the producer re-attaches the same ring) applies those
// messages again rather than losing them. Nothing reported as applied (<= head) is ever lost;
// the messages in flight at the kill are applied at least once: exactly once for upserts with a
// source_seq and fills with a trade_id (both de-duplicated), possibly twice otherwise.
//
// A HOSTILE OR BUGGY PRODUCER can write any byte of its ring at any time. The writer reads only
// `tail` (range-checked, PC1) and copies of messages (validated after the copy, PC2): a bad index
// detaches that ring, a bad message is refused and counted (rejected, last error). It cannot
// reach another ring, the segment (it is never mapped writable by producers) or the writer's
// memory. This is why the ring is not boost::lockfree::spsc_queue: its consumer reads its own
// read index back from the shared object and indexes the buffer with it unchecked, so a producer
// that overwrites that index sends the writer outside the mapping; here the consumer's position
// is the writer's private copy and only published (PC4).
#pragma once

#include <cstddef>
#include <cstdint>

#include "poscache/schema.hpp"
#include "shm/atomic.hpp"
#include "shm/layout.hpp"

namespace poscache::shm {

inline constexpr std::uint64_t kRingMagic = 0x3147'4e49'5243'5350ULL;  // "PSCRING1"
inline constexpr std::uint32_t kRingVersion = 2;  // 2: outcomes, `dropped`, batches
inline constexpr std::size_t kRingTextLen = 96;
inline constexpr std::size_t kRingHeaderSize = 4096;
inline constexpr std::size_t kRingErrorLen = 256;

enum class RingKind : std::uint8_t {
  upsert = 1,
  erase = 2,
  invalidate_account = 3,  // ns given if `field` == 1
  invalidate_namespace = 4,
  invalidate_glob = 5,  // text
  invalidate_all = 6,
  add = 7,     // field; mode 1 = reset; values[0] = by
  fill = 8,    // mode = side (0 buy, 1 sell); values[0..2] = qty, price, fee; text
  mark = 9,    // values[0] = price; account_len 0 = every account
  group = 10,  // a batch: values[0] = n, the next n messages are its commands (see BATCHES)
};

// What the writer did with a message (its outcome word, OUTCOMES), stored at PC3.
enum class RingOutcome : std::uint32_t {
  pending = 0,  // not applied yet (the producer's PP2 resets it)
  applied = 1,
  duplicate = 2,  // a fill whose trade id was seen
  stale = 3,      // an upsert whose source_seq is older than the position's
  not_found = 4,  // erase / one-account mark of a position that is not there
  rejected = 5,   // refused: the reason is in the message's text
};

struct alignas(kCacheLine) RingMessage {
  std::uint8_t kind;  // RingKind
  std::uint8_t mode;  // upsert: UpdateMode; fill: side; add: 1 = reset
  std::uint16_t ns;
  std::uint8_t account_len;
  std::uint8_t instrument_len;
  std::uint8_t text_len;
  std::uint8_t field;         // add: the field; invalidate_account: 1 = ns given
  std::uint32_t fields_mask;  // upsert
  std::uint32_t reserved;
  std::uint64_t key_hash;  // upsert: the producer's key_hash (shm/hash.hpp), verified
  std::uint64_t source_seq;
  char account[kMaxAccountLen];
  char instrument[kMaxInstrumentLen];
  std::uint64_t values[2 * kMaxFields];  // value i = (values[2i] lo, values[2i+1] hi), signed
  char text[kRingTextLen];
};
static_assert(sizeof(RingMessage) == 512);
static_assert(offsetof(RingMessage, key_hash) == 16);
static_assert(offsetof(RingMessage, account) == 32);
static_assert(offsetof(RingMessage, values) == 160);
static_assert(offsetof(RingMessage, text) == 416);

// A refused message's reason: written by the writer over the values and text, which are no longer
// needed once it is refused (OUTCOMES).
inline constexpr std::size_t kRingRefusalLen = sizeof(RingMessage) - offsetof(RingMessage, values);
static_assert(kRingRefusalLen == 352);
inline char* refusal_text(RingMessage& m) noexcept {
  return reinterpret_cast<char*>(m.values);
}
inline const char* refusal_text(const RingMessage& m) noexcept {
  return reinterpret_cast<const char*>(m.values);
}

struct alignas(kCacheLine) RingHeader {
  // --- line 0: identity, written by the producer before it passes the descriptor on.
  std::uint64_t magic;         // kRingMagic
  std::uint32_t version;       // kRingVersion
  std::uint32_t message_size;  // sizeof(RingMessage)
  std::uint64_t capacity;      // messages; a power of two
  std::int64_t producer_pid;
  char name[32];  // the producer's name, NUL-padded
  // --- line 1: the producer's.
  std::uint64_t tail;        // messages published (PP3 release / PC1 acquire)
  std::uint64_t full_count;  // pushes refused because the ring was full (relaxed)
  std::uint32_t dropped;     // the one word of this line the writer writes: 1 once it dropped
  std::uint32_t reserved0;   //   the ring as damaged (store_release, after head and the error)
  std::uint64_t reserved1[5];
  // --- line 2: the writer's.
  std::uint64_t head;       // messages applied (PC4 release / PP1 acquire)
  std::uint64_t synced;     // messages Redis holds (PC5 release)
  std::uint64_t rejected;   // messages refused (relaxed)
  std::uint32_t ack_futex;  // bumped when head or synced moves and `waiters` is set
  std::uint32_t waiters;    // the producer sets it while it waits (relaxed hint)
  std::uint32_t attached;   // 1 while a writer consumes the ring; 0 after it detached
  std::uint32_t redis;      // 1: the writer mirrors to Redis (synced moves); 0: it never will
  std::uint64_t error_seq;  // seqlock over error (shm/seqlock.hpp)
  std::uint64_t reserved2[2];
  // --- lines 3-6: the writer's last error about this ring's messages, as words (put_text),
  //     under error_seq.
  std::uint64_t error_len;
  std::uint64_t error[(kRingErrorLen - 8) / 8];
};
static_assert(offsetof(RingHeader, tail) == 1 * kCacheLine);
static_assert(offsetof(RingHeader, head) == 2 * kCacheLine);
static_assert(offsetof(RingHeader, error_len) == 3 * kCacheLine);
static_assert(sizeof(RingHeader) <= kRingHeaderSize);

inline constexpr std::size_t ring_bytes(std::uint64_t capacity) noexcept {
  return kRingHeaderSize + capacity * sizeof(RingMessage) + capacity * sizeof(std::uint64_t);
}
// The outcome words (OUTCOMES), after the messages.
inline std::uint64_t* ring_outcomes(RingHeader* h, std::uint64_t capacity) noexcept {
  return reinterpret_cast<std::uint64_t*>(reinterpret_cast<std::byte*>(h) + kRingHeaderSize +
                                          capacity * sizeof(RingMessage));
}
inline constexpr std::uint64_t outcome_word(std::uint64_t seq, RingOutcome o) noexcept {
  return seq << 8 | static_cast<std::uint64_t>(o);
}
inline RingMessage* ring_messages(RingHeader* h) noexcept {
  return reinterpret_cast<RingMessage*>(reinterpret_cast<std::byte*>(h) + kRingHeaderSize);
}

}  // namespace poscache::shm
