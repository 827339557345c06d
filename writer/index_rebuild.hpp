// The index rebuilt a slice at a time, so the writer never stops for it.
//
// Removals leave tombstones (shm/index.hpp, XD1); past a limit the index is rebuilt into its
// inactive copy and published (XB1, XB2). Done in one go, that re-indexes every live position:
// 20 ms at 1 M positions, during which nothing is applied. Here the same rebuild is spread over
// the removals that make it necessary, a bounded slice per removal:
//
//   clear   XB1's first half, kClearPerStep buckets of the inactive copy per slice;
//   copy    XB1's second half, kCopyPerStep slots per slice in slot order: each live one is
//           inserted into the inactive copy. `next_slot` is how far the scan has gone.
//   publish XB2, after the slice that copies the last slot.
//
// Between slices the writer goes on applying. It maintains the active copy as always, and the
// inactive one for the slots the scan has passed (slot < next_slot): an insert there is also
// inserted into it, a removal also removed from it. A slot the scan has not reached is copied
// as it is when the scan gets there; one freed before is skipped. So at XB2 the new copy holds
// exactly the live slots, as a rebuild in one go would have left it (plus the tombstones of the
// removals since the scan passed their slots, which it counts).
//
// Readers are not affected: they never use the inactive copy, and XB2 publishes it complete
// with release, as before (the no-false-miss argument of shm/index.hpp holds unchanged). A
// writer killed mid-rebuild leaves an inactive copy half built, which nobody reads; re-attach
// rebuilds in one go anyway.
//
// Slices are sized so a rebuild finishes before tombstones reach the hard limit: it starts
// `steps()` removals (times two) before the limit, and each removal adds at most one tombstone.
// A bulk removal (an invalidation of many positions) can still cross the limit at once; the
// rebuild in progress is then finished in one go.
#pragma once

#include <algorithm>
#include <cstdint>

#include "shm/index.hpp"
#include "shm/layout.hpp"

namespace poscache::detail {

class IndexRebuild {
 public:
  // Per slice: clearing 4 096 buckets is 32 KiB of sequential stores (~1-2 µs); copying 64
  // slots reads 64 slot headers in order and makes up to 64 random bucket stores (~5-8 µs).
  static constexpr std::uint64_t kClearPerStep = 4096;
  static constexpr std::uint32_t kCopyPerStep = 64;

  void bind(shm::Bucket* const index[2], std::uint64_t buckets, std::uint64_t capacity) noexcept {
    index_[0] = index[0];
    index_[1] = index[1];
    buckets_ = buckets;
    capacity_ = capacity;
    phase_ = Phase::idle;
  }

  // Slices a whole rebuild takes.
  [[nodiscard]] std::uint64_t steps() const noexcept {
    return (buckets_ + kClearPerStep - 1) / kClearPerStep +
           (capacity_ + kCopyPerStep - 1) / kCopyPerStep;
  }
  [[nodiscard]] bool active() const noexcept { return phase_ != Phase::idle; }

  // Begins a rebuild of the copy that is inactive at `epoch`.
  void start(std::uint64_t epoch) noexcept {
    target_ = index_[(epoch + 1) & 1];
    phase_ = Phase::clear;
    next_bucket_ = 0;
    next_slot_ = 0;
    tombstones_ = 0;
  }
  // A rebuild in one go overwrites the inactive copy: whatever was in progress is dropped.
  void cancel() noexcept { phase_ = Phase::idle; }

  // The writer inserted slot `s` (key hash `hash`) into the active copy.
  void inserted(std::uint64_t hash, std::uint32_t s) noexcept {
    if (phase_ != Phase::copy || s >= next_slot_) return;
    if (shm::IndexWriter(target_, buckets_).insert(hash, s)) --tombstones_;
  }
  // The writer is removing slot `s` from the active copy.
  void removed(std::uint64_t hash, std::uint32_t s) noexcept {
    if (phase_ != Phase::copy || s >= next_slot_) return;
    shm::IndexWriter iw(target_, buckets_);
    const std::uint64_t pos = iw.find_slot(hash, s);
    if (pos < buckets_) tombstones_ += iw.remove_at(pos);
  }

  // One slice. `live_hash(s, &hash)` says whether slot s holds a position and its key hash.
  // Returns true when the inactive copy is complete: the caller publishes it (XB2) and takes
  // tombstones() as the new copy's count.
  template <class LiveHash>
  bool step(LiveHash&& live_hash) noexcept {
    shm::IndexWriter iw(target_, buckets_);
    if (phase_ == Phase::clear) {
      const std::uint64_t end = std::min(buckets_, next_bucket_ + kClearPerStep);
      iw.clear_range(next_bucket_, end);
      next_bucket_ = end;
      if (end == buckets_) phase_ = Phase::copy;
      return false;
    }
    const std::uint64_t end = std::min<std::uint64_t>(capacity_, next_slot_ + kCopyPerStep);
    for (std::uint64_t s = next_slot_; s < end; ++s) {
      std::uint64_t hash = 0;
      // Inserting may reuse a tombstone a removal left behind the scan.
      if (live_hash(static_cast<std::uint32_t>(s), &hash) &&
          iw.insert(hash, static_cast<std::uint32_t>(s)))
        --tombstones_;
    }
    next_slot_ = static_cast<std::uint32_t>(end);
    if (end < capacity_) return false;
    phase_ = Phase::idle;
    return true;
  }
  // Tombstones in the copy being built (removals of slots the scan had passed).
  [[nodiscard]] std::uint64_t tombstones() const noexcept {
    return tombstones_ > 0 ? static_cast<std::uint64_t>(tombstones_) : 0;
  }

 private:
  enum class Phase { idle, clear, copy };
  shm::Bucket* index_[2] = {nullptr, nullptr};
  shm::Bucket* target_ = nullptr;
  std::uint64_t buckets_ = 0;
  std::uint64_t capacity_ = 0;
  Phase phase_ = Phase::idle;
  std::uint64_t next_bucket_ = 0;
  std::uint32_t next_slot_ = 0;
  std::int64_t tombstones_ = 0;
};

}  // namespace poscache::detail
