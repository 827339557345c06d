// Read-through and refresh: how readers ask the writer to fetch a key from its refreshers, and how
// they learn what became of it. Two files beside the segment, made by a writer that serves
// refresh (poscache-writer with a [namespace] refresh policy; docs/read-through.md):
//
//   /dev/shm/<segment>.requests   readers write, the writer reads: one request ring per reader
//                                 (claimed like a reader-table record), mode as .readers
//   /dev/shm/<segment>.refresh    the writer writes, readers map read-only: the namespaces'
//                                 policies, the pending table, the wake words, counters
//
// A reader never writes the segment or .refresh; it can damage nothing but its own ring, and the
// writer trusts no word of it (each request is copied out, then checked like any input).
//
//   .requests                                          .refresh
//   +-------------------------------------+ 0          +-------------------------------------+ 0
//   | RequestsHeader  magic, generation,   |            | RefreshHeader  magic, generation,   |
//   |   doorbell[kRequestRings / 64]       |            |   policy[kMaxNamespaces], counters  |
//   +-------------------------------------+ 256        +-------------------------------------+
//   | RequestRing[kRequestRings]          |            | PendingBucket[kPendingBuckets]      |
//   |   line 0: owner, start ticks, tail, |            |   4 ways of (key hash, state word)  |
//   |           full count, head (writer) |            +-------------------------------------+
//   |   cells[kRequestCells] 192 B each   |            | wake[kWakeWords] u32 futex words    |
//   +-------------------------------------+            +-------------------------------------+
//
// REQUEST RING PROTOCOL (RQ; a bounded multi-producer queue, Vyukov's, with one consumer): the
// threads of one reader process push, the writer pops. cell[i].seq starts at i.
//   RQ1 claim     a Reader at open: CAS owner 0 -> pid (acquire), start_ticks (relaxed).
//   RQ2 push      pos = tail (relaxed); c = cell[pos % N]; s = c.seq (acquire).
//                 s == pos: CAS tail pos -> pos + 1 (relaxed), write the request (relaxed stores),
//                 then c.seq = pos + 1 (release). s < pos: full: full_count += 1 (relaxed RMW),
//                 answer `full`. s > pos: another thread took it; reload tail (a bounded number
//                 of tries, then `full`: a push never waits).
//   RQ3 ring      doorbell[ring / 64] |= bit (release RMW): the writer need not scan every ring.
//   RQ4 pop       the writer, with its own private head h (never the shared word): c.seq ==
//                 h + 1 (acquire, pairs RQ2) -> copy the request out, check it, c.seq = h + N
//                 (release: the cell is free), h += 1, head = h (relaxed; statistics).
//   RQ5 reap      the writer, about once a second: a ring whose owner released it (owner |
//   kReleased)
//                 or died (pid gone, start ticks differ) gets seq = i, tail = head = 0, then
//                 owner = 0 (release).
//
// PENDING TABLE PROTOCOL (RT; the writer is its only writer): what became of a key's request.
// A bucket holds 4 ways of {hash, word}; word = state | reason << 4 | time_us << 8 (time: when
// the request went out, for `pending`; when it was decided, otherwise; CLOCK_REALTIME µs).
//   RT1 publish   the writer replaces way w: hash = 0 (relaxed); release fence; word = new
//                 (relaxed); hash = key (release).
//   RT2 read      a reader: h1 = hash (acquire); w = word (acquire); h2 = hash (relaxed, after
//                 the acquire). h1 == h2 == key: w is this key's (RT1 stores 0 before the word).
//   RT3 wake      after a terminal state is published (and an answer applied to the segment):
//                 wake[key % kWakeWords] += 1 (release), FUTEX_WAKE. A reader in get_or_fetch
//                 reads the wake word (acquire) before it looks, and waits only while it is
//                 unchanged: no wake is lost. Collisions only wake a reader early; it looks again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "poscache/refresh.hpp"
#include "poscache/schema.hpp"
#include "shm/atomic.hpp"

namespace poscache::shm {

inline constexpr std::uint64_t kRequestsMagic = 0x3151'5152'4652'5350ULL;  // "PSRFRQQ1"
inline constexpr std::uint64_t kRefreshMagic = 0x3154'5252'4652'5350ULL;   // "PSRFRRT1"
inline constexpr std::uint32_t kRefreshVersion = 1;
inline constexpr std::uint32_t kRequestRings = 256;  // reader processes that may ask at once
inline constexpr std::uint32_t kRequestCells = 32;   // requests a ring holds (a power of two)
inline constexpr std::uint32_t kPendingBuckets = 4096;
inline constexpr std::uint32_t kPendingWays = 4;
inline constexpr std::uint32_t kWakeWords = 1024;
inline constexpr std::uint64_t kRingReleased = 1ULL << 62;  // owner bit: the reader has left

// RefreshReason and PendingState (their values are this format's) are the public ones,
// poscache/refresh.hpp.
inline constexpr std::size_t kRefreshReasons = 6;  // indexable by RefreshReason's values

struct RequestCell {
  std::uint64_t seq;   // RQ2 / RQ4
  std::uint64_t hash;  // the key's hash (shm/hash.hpp): checked by the writer
  std::uint8_t ns, reason, account_len, instrument_len;
  std::uint32_t reserved;
  std::int64_t asked_at_ns;  // CLOCK_REALTIME
  std::uint64_t spare;
  char account[kMaxAccountLen];
  char instrument[kMaxInstrumentLen];
  std::uint64_t pad[3];
};
static_assert(sizeof(RequestCell) == 192);

struct alignas(64) RequestRing {
  std::uint64_t owner;        // 0 free | pid | pid + kRingReleased (RQ1, RQ5)
  std::uint64_t start_ticks;  // a reused pid is not the reader
  std::uint64_t tail;         // RQ2 (the reader's threads)
  std::uint64_t full_count;   // RQ2
  std::uint64_t head;         // RQ4: the writer's copy, for statistics
  std::uint64_t reserved[3];
  RequestCell cells[kRequestCells];
};
static_assert(sizeof(RequestRing) == 64 + kRequestCells * 192);

struct alignas(64) RequestsHeader {
  std::uint64_t magic;  // stored last (release) by the creating writer
  std::uint32_t version, rings;
  std::uint64_t generation;  // the segment generation these rings belong to
  std::uint64_t reserved[5];
  std::uint64_t doorbell[kRequestRings / 64];  // RQ3
  std::uint64_t pad[(192 - 8 * (kRequestRings / 64)) / 8];
};
static_assert(sizeof(RequestsHeader) == 256);

inline constexpr std::size_t kRequestsBytes =
    sizeof(RequestsHeader) + kRequestRings * sizeof(RequestRing);

// A namespace's policy as readers need it (the writer publishes it; 0 = off).
struct RefreshPolicyWords {
  std::uint32_t on;              // bit 0: on stale, bit 1: on miss
  std::uint32_t refreshers;      // registered refreshers serving the namespace now
  std::int64_t ahead_ns;         // refresh a fresh read older than this (0: no refresh-ahead)
  std::int64_t negative_ttl_ns;  // how long an `absent` answer is remembered
  std::int64_t timeout_ns;       // one try's timeout (informative for readers)
};
static_assert(sizeof(RefreshPolicyWords) == 32);
inline constexpr std::uint32_t kOnStale = 1, kOnMiss = 2;

// The writer's counters (relaxed, one writer): for tools that read the file without the daemon.
struct RefreshCounters {
  std::uint64_t requests[kRefreshReasons];  // by reason, as they reached the writer
  std::uint64_t deduplicated;  // a request for a key already in flight (or just decided)
  std::uint64_t in_flight;     // gauge
  std::uint64_t answers[8];    // by PendingState: answered, absent, erased, failed, superseded
  std::uint64_t errors, timeouts, refused, shed, bad_requests;
  std::uint64_t refreshers;                           // registered now
  std::uint64_t rebuilds_running, rebuild_positions;  // rebuilds' progress
  std::uint64_t spare[4];
};

struct alignas(64) RefreshHeader {
  std::uint64_t magic;  // stored last (release)
  std::uint32_t version, namespace_count;
  std::uint64_t generation;
  std::int64_t writer_pid;
  std::uint64_t reserved[4];
  RefreshPolicyWords policy[kMaxNamespaces];
  RefreshCounters counters;
};

struct PendingWay {
  std::uint64_t hash;  // 0: empty (a key hash of 0 is never published)
  std::uint64_t word;
};
struct alignas(64) PendingBucket {
  PendingWay ways[kPendingWays];
};
static_assert(sizeof(PendingBucket) == 64);

inline constexpr std::size_t kRefreshHeaderBytes = (sizeof(RefreshHeader) + 4095) / 4096 * 4096;
inline constexpr std::size_t kPendingOffset = kRefreshHeaderBytes;
inline constexpr std::size_t kWakeOffset = kPendingOffset + kPendingBuckets * sizeof(PendingBucket);
inline constexpr std::size_t kRefreshBytes = kWakeOffset + kWakeWords * sizeof(std::uint32_t);

inline std::string requests_path(std::string_view segment) {
  return "/dev/shm/" + std::string(segment) + ".requests";
}
inline std::string refresh_path(std::string_view segment) {
  return "/dev/shm/" + std::string(segment) + ".refresh";
}

inline RequestRing* request_rings(void* base) noexcept {
  return reinterpret_cast<RequestRing*>(static_cast<std::byte*>(base) + sizeof(RequestsHeader));
}
inline const PendingBucket* pending_buckets(const void* base) noexcept {
  return reinterpret_cast<const PendingBucket*>(static_cast<const std::byte*>(base) +
                                                kPendingOffset);
}
inline const std::uint32_t* wake_words(const void* base) noexcept {
  return reinterpret_cast<const std::uint32_t*>(static_cast<const std::byte*>(base) + kWakeOffset);
}

// The pending word's parts.
inline std::uint64_t pending_word(PendingState s, RefreshReason r, std::int64_t time_ns) noexcept {
  const auto us = static_cast<std::uint64_t>(time_ns / 1000);
  return static_cast<std::uint64_t>(s) | static_cast<std::uint64_t>(r) << 4 | us << 8;
}
inline PendingState pending_state(std::uint64_t w) noexcept {
  return static_cast<PendingState>(w & 0xF);
}
inline RefreshReason pending_reason(std::uint64_t w) noexcept {
  return static_cast<RefreshReason>((w >> 4) & 0xF);
}
inline std::int64_t pending_time_ns(std::uint64_t w) noexcept {
  return static_cast<std::int64_t>(w >> 8) * 1000;
}
// Never 0 in the table: 0 marks an empty way.
inline std::uint64_t pending_hash(std::uint64_t key_hash) noexcept {
  return key_hash == 0 ? 1 : key_hash;
}

// RT2: the word of `key_hash` in the table, or 0 if it has none.
inline std::uint64_t find_pending(const void* refresh_base, std::uint64_t key_hash) noexcept {
  const std::uint64_t h = pending_hash(key_hash);
  const PendingBucket& b = pending_buckets(refresh_base)[h % kPendingBuckets];
  for (const PendingWay& w : b.ways) {
    if (load_acquire(&w.hash) != h) continue;
    const std::uint64_t word = load_acquire(&w.word);
    if (load_relaxed(&w.hash) == h) return word;
  }
  return 0;
}

}  // namespace poscache::shm
