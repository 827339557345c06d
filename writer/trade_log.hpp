// The trade log: the fill de-duplication window's record of applied trade ids, as the Redis
// sync thread reads it to make the window durable (docs/exactly-once.md).
//
// The window (writer/ingest/trade_window.hpp) is written by the apply thread only; it keeps the
// trade ids of the last `capacity` fills in a ring of TradeLogEntry, each with the version its
// fill wrote and the key of its position. The sync thread mirrors each entry into
// {prefix}:{ns}:@trades (writer/redis/redis_format.hpp) in the same MULTI/EXEC as the position
// content that holds the fill's effect, so Redis never holds a fill's effect without its trade
// id, nor a trade id before its effect. A promoted standby or a warm-started writer loads those
// sets into its window and refuses a resent fill as a duplicate.
//
// THE PROTOCOL between the two threads (all words in the window's file, one process):
//   apply thread, per fill (or per batch of fills) with a trade id:
//     TW1 pending_count = n                      (release)  before the content write
//     TW2 the content write (the slot's seqlock)
//     TW3 reserved = head + i + 1, a release fence, then ring[head + i] (relaxed words), per
//         entry i < n;
//         head += n                              (release)
//         pending_count = 0                      (release)  also when TW2 was refused (abort)
//   sync thread, per transaction:
//     TS1 read the slots' contents (the readers' seqlock: acquire of the even seq)
//     TS2 wait until pending_count == 0          (acquire)
//     TS3 h = head                               (acquire); copy entries [tail, h)
// CLAIM: every fill whose effect is in a content read at TS1 is below h. Its TW1 store is
// sequenced before its TW2, whose final seq store TS1's acquire load read (or a later one): so
// TW1 happens before TS2, and TS2 reads TW1's store or a later one. A zero it reads comes from a
// TW3 (or abort) store that is that fill's own or a later fill's, every one sequenced after the
// fill's head store: TS2's acquire makes that head store visible to TS3. Entries the sync thread
// copies may be overwritten once the writer gets `capacity` entries past them: after the copy
// and an acquire fence it reads `reserved`; a copy that read an overwriting store sees a
// reserved past that entry's index + capacity (the fence before the store), so an entry i with
// i + capacity >= reserved was read whole. The others are counted as lost (a sync more than
// `capacity` fills behind).
#pragma once

#include <cstdint>
#include <string_view>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace poscache::detail {

struct TradeLogEntry {
  std::uint64_t id_hash;   // trade_id_hash(trade id)
  std::uint64_t version;   // the version its fill wrote into its position
  std::uint64_t key_hash;  // shm::key_hash of its position (0: loaded from Redis, no position)
  std::uint32_t ns;        // its namespace id (a 32-bit word: read concurrently)
  std::uint32_t reserved;
};
static_assert(sizeof(TradeLogEntry) == 32);

// What the sync thread reads of a window. Pointers into the window's mapped file.
struct TradeLog {
  const std::uint64_t* head = nullptr;           // entries recorded so far
  const std::uint64_t* pending_count = nullptr;  // TW1..TW3: fills in flight (0: none)
  const TradeLogEntry* ring = nullptr;           // [capacity], entry i at i % capacity
  std::uint64_t capacity = 0;
  const std::uint64_t* reserved = nullptr;  // 1 + the index of the entry written last or now
  // The sync thread's word: every entry below it is in Redis. A writer restarting on the same
  // window mirrors from there (never more than it must: it only moves after a commit).
  std::uint64_t* mirrored = nullptr;
};

// A trade id as Redis stores it: XXH3-64 (seed 0) of its bytes, written as 16 lowercase hex
// digits. The namespace is the key's ({prefix}:{ns}:@trades), not part of the hash.
inline std::uint64_t trade_id_hash(std::string_view trade_id) noexcept {
  return XXH3_64bits(trade_id.data(), trade_id.size());
}

// The window's lookup hash: a trade id is unique within its namespace. Never 0.
inline std::uint64_t trade_window_hash(std::uint32_t ns, std::uint64_t id_hash) noexcept {
  std::uint64_t h = id_hash ^ ((static_cast<std::uint64_t>(ns) + 1) * 0x9E3779B97F4A7C15ull);
  h ^= h >> 33;  // the murmur3 finalizer: every bit of ns reaches every bit of the result
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h == 0 ? 1 : h;
}

}  // namespace poscache::detail
