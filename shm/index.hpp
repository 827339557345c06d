// The hash index: open addressing with linear probing over 64-bit buckets (layout: Bucket in
// shm/layout.hpp), two copies A and B of which one is active (header.index_epoch & 1).
//
// PROTOCOL
//
//   writer                                          reader (lookup)
//   ---------------------------------------------   ---------------------------------------------
//   insert K into slot s:                           XL1 e = index_epoch.load(acquire)
//     slot s written and published (seqlock)        XL2 probe index[e & 1] from home(hash):
//     XI1 bucket.store(tag|s+1, release)                  b = bucket.load(acquire)
//         (first tombstone on K's probe path,             empty → XL3 (miss)
//          else the first empty bucket)                   tag match → read slot (seqlock), compare
//   remove K (bucket j, slot s):                                     the whole key → hit if equal
//     XD1 bucket j.store(tombstone, release)              anything else → next bucket
//     XD2 free slot s (seqlock write, ns = free)    XL3 miss: e2 = index_epoch.load(acquire);
//     XD3 if bucket j+1 is empty: turn j and the        e2 == e → not_found, else retry at XL1
//         tombstones just before it into empty
//   rebuild (too many tombstones, or re-attach):
//     XB1 clear the inactive index, insert every live slot (relaxed stores: no reader uses it;
//         the writer spreads it over many operations, a slice each: writer/index_rebuild.hpp)
//     XB2 index_epoch.store(e+1, release)
//
// WHY A HIT IS RIGHT
// A bucket only says where to look. The reader reads that slot under its seqlock and compares
// the whole key, so whatever the index looked like, a hit returns a consistent copy of the key
// asked for, as it was at the instant of the copy. XI1 is a release store after the slot's
// publish, and XL2 loads buckets with acquire, so a bucket seen implies its slot is seen.
//
// WHY THERE IS NO FALSE MISS (a key present throughout the read is found)
// - Within one index, a present key's bucket never moves: inserts fill empty or tombstone
//   buckets, removes put tombstones, which probes pass over. A bucket before it on its probe path
//   is occupied or a tombstone while the key is present (it was when the key was inserted, and
//   only XD3 empties a bucket), so the probe cannot stop early.
// - XD3 empties a tombstone only when the bucket after it is empty, i.e. at the end of a probe
//   run: no present key lies beyond it, so a probe that stops there would have stopped one bucket
//   later anyway.
// - Across a rebuild, XB1 never touches the active index and XB2 publishes the new one with
//   release: a reader whose XL1 acquire saw e+1 sees the complete new index. A reader still
//   probing the old index may see it being cleared for the NEXT rebuild (a later XB1) — but that
//   rebuild is preceded by this one's XB2, so its XL3 sees a new epoch and retries. A miss is
//   reported only when the epoch did not move during the probe.
// - The epoch word sits on the header's control line, written only at rebuilds, so XL1 is an L1
//   cache hit for readers: it costs ~1 ns, not a cache miss.
//
// BOUNDED TIME
// A probe visits at most index_buckets buckets (the table is at most half full of live keys and a
// rebuild bounds tombstones, so in practice a few); a miss retries at most kIndexRetries times.
//
// THE WRITER DIES
// The index holds nothing that is not derivable from the slots. Re-attach builds a fresh index
// from the slots into the inactive copy and publishes it (XB1, XB2), so an insert or remove cut
// short at any step (XI1, XD1-XD3, mid-rebuild) leaves no trace readers can trip on: a dangling
// bucket points at a slot whose key does not match, a missing one is rebuilt.
#pragma once

#include <atomic>
#include <cstdint>

#include "shm/layout.hpp"

namespace poscache::shm {

inline constexpr unsigned kIndexRetries = 64;

// Reader-side probe (XL2). `visit(slot)` is called for each bucket whose tag matches, in probe
// order; it returns true to stop (hit). Returns true if a visit stopped the probe.
template <class Visit>
inline bool probe(const Bucket* index, std::uint64_t mask, std::uint64_t capacity,
                  std::uint64_t hash, Visit&& visit) {
  const std::uint32_t tag = bucket_tag(hash);
  std::uint64_t i = hash & mask;
  for (std::uint64_t step = 0; step <= mask; ++step, i = (i + 1) & mask) {
    const std::uint64_t b = load_acquire(&index[i]);  // pairs with XI1
    if (b == kEmptyBucket) return false;
    const std::uint32_t ref = bucket_ref(b);
    if (ref != kTombstoneRef && bucket_tag(b) == tag && ref - 1u < capacity) {
      if (visit(ref - 1u)) return true;
    }
  }
  return false;
}

// Writer-side operations on one index. The writer is the only thread that stores to buckets.
class IndexWriter {
 public:
  IndexWriter(Bucket* index, std::uint64_t buckets) : index_(index), mask_(buckets - 1) {}

  // Finds the bucket holding `slot` (on `hash`'s probe path); returns mask+1 if absent.
  std::uint64_t find_slot(std::uint64_t hash, std::uint32_t slot) const noexcept {
    const std::uint64_t want = make_bucket(bucket_tag(hash), slot);
    std::uint64_t i = hash & mask_;
    for (std::uint64_t step = 0; step <= mask_; ++step, i = (i + 1) & mask_) {
      const std::uint64_t b = load_relaxed(&index_[i]);  // own writes
      if (b == kEmptyBucket) break;
      if (b == want) return i;
    }
    return mask_ + 1;
  }

  // XI1. The caller knows the key is absent. Returns true if it reused a tombstone.
  bool insert(std::uint64_t hash, std::uint32_t slot) noexcept {
    std::uint64_t i = hash & mask_;
    for (;;) {
      const std::uint64_t b = load_relaxed(&index_[i]);
      if (b == kEmptyBucket || bucket_ref(b) == kTombstoneRef) {
        // release: the slot's publish (seqlock SW4) happens before a reader sees this bucket
        store_release(&index_[i], make_bucket(bucket_tag(hash), slot));
        return b != kEmptyBucket;
      }
      i = (i + 1) & mask_;
    }
  }

  // XD1 and XD3. Returns the change in the tombstone count (+1, or minus those XD3 cleared).
  std::int64_t remove_at(std::uint64_t pos) noexcept {
    const std::uint64_t tomb = kTombstoneRef;
    store_release(&index_[pos], tomb);  // XD1
    // XD3: at the end of a probe run, tombstones are dead weight and may become empty.
    if (load_relaxed(&index_[(pos + 1) & mask_]) != kEmptyBucket) return 1;
    std::int64_t delta = 1;
    std::uint64_t i = pos;
    while (bucket_ref(load_relaxed(&index_[i])) == kTombstoneRef) {
      // relaxed: emptying a bucket at the end of a run changes no reader's outcome (see above)
      store_relaxed(&index_[i], kEmptyBucket);
      --delta;
      i = (i - 1) & mask_;
    }
    return delta;
  }

  // XB1, first half: empty every bucket (this index is not active: no reader relies on it).
  void clear() noexcept { clear_range(0, mask_ + 1); }
  // The same for buckets [from, to) (writer/index_rebuild.hpp clears a slice at a time).
  void clear_range(std::uint64_t from, std::uint64_t to) noexcept {
    for (std::uint64_t i = from; i < to; ++i) store_relaxed(&index_[i], kEmptyBucket);
  }

 private:
  Bucket* index_;
  std::uint64_t mask_;
};

}  // namespace poscache::shm
