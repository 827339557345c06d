// The writer's LRU order: a log of (slot, stamp) entries in the order the writer changed the
// positions, in its private memory (a re-attaching writer rebuilds it from the slots'
// updated_at and version, as it rebuilds every other list: writer.cpp, rebuild_lists).
//
// Why a log and not a doubly linked list: moving a position to the tail of a linked list writes
// its two neighbours, two random cache lines per update (measured: 65 of 225 ns per update at
// 1 M positions). Here an update appends one entry (sequential) and stamps the slot; the entry it
// had before is left behind, dead ("lazy deletion"). Exact LRU order is kept:
//
//   live entry   an entry whose stamp equals its slot's current stamp. Every occupied slot has
//                exactly one (its latest touch); a freed slot has none (stamp 0, never handed
//                out).
//   order        live entries are in the order of their slots' last change, so the first live
//                entry is the least recently updated position, of all namespaces.
//
// The log is a ring of R = 4 * next_pow2(capacity) entries. Dead entries are reclaimed by an
// incremental compaction, a few steps per append, so no append ever pauses for a whole pass:
//
//   positions (monotonic, the ring index is pos & (R - 1)):
//     front <= w <= s <= back
//     [front, w)  compacted: live entries already scanned by the current pass, in order
//     [w, s)      the hole: scanned, garbage (their live entries were copied down to w)
//     [s, back)   not yet scanned, newest appends last
//   The logical sequence is [front, w) then [s, back); with no pass running, w == s.
//   A pass starts when back - front reaches R/2. Each append then runs kSteps = 4 steps: look at
//   the entry at s, copy it to w if live, advance. The pass ends when s reaches back: the hole is
//   then at the end and back moves down to w.
//   Room: a pass starts with at most R/2 entries unscanned and closes the gap to back by 3 per
//   append, so it ends within R/6 appends: at most R/2 + R/6 < R entries are ever held. It leaves
//   at most capacity + R/6 < R/2 entries (capacity <= R/4), so each pass reclaims something and
//   a new one starts only after more appends. On average under three stamp checks per append,
//   each a read of the 8-byte stamp array (L2/L3-resident: 8 MiB at 1 M positions).
//
// Stamps are 32-bit, from a counter of appends (0 skipped). A dead entry is gone within R
// appends of its death: the running pass or the next one scans it (a pass starts once R/2 are
// held), or, while evictions keep fewer than R/2 held, the front passes it within R/2 appends.
// R <= 2^31 (capacity <= 2^29 is checked at construction), so the counter cannot come back to a
// dead entry's stamp while the entry exists: a dead entry never passes for live.
//
// Expiry needs each expiring namespace's oldest position. A cursor per expiring namespace walks
// the log from the front: it skips dead entries and entries of other namespaces, and stops at
// the first live one of its namespace (the oldest). Invariant: every live entry of the
// namespace is at or after its cursor (entries are only appended after it; compaction moves the
// cursor down with the entries: a cursor at s moves to w before s advances). Amortized, each
// cursor passes each entry once.
//
// Single-threaded (the apply thread); sized once: the apply path never allocates.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace poscache::detail {

// Zeroed anonymous memory, on 2 MiB pages where the kernel allows (MADV_HUGEPAGE): the log and
// the stamps are read at random, and with 4 KiB pages every such read would also miss the TLB.
// Populated at construction.
template <class T>
class HugeArray {
 public:
  HugeArray() = default;
  explicit HugeArray(std::size_t n) {
    if (n == 0) return;
    bytes_ = n * sizeof(T);
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ::madvise(p, bytes_, MADV_HUGEPAGE);  // a hint; failure is harmless
    p_ = static_cast<T*>(p);
    // Fault it all in now, at open, not page by page on the apply path.
    if (::madvise(p, bytes_, MADV_POPULATE_WRITE) != 0) fill_zero();  // before Linux 5.14: touch it
  }
  HugeArray(HugeArray&& o) noexcept { swap(o); }
  HugeArray& operator=(HugeArray&& o) noexcept {
    HugeArray tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~HugeArray() {
    if (p_ != nullptr) ::munmap(p_, bytes_);
  }
  T& operator[](std::size_t i) noexcept { return p_[i]; }
  const T& operator[](std::size_t i) const noexcept { return p_[i]; }
  void fill_zero() noexcept {
    if (p_ != nullptr)
      std::fill(reinterpret_cast<char*>(p_), reinterpret_cast<char*>(p_) + bytes_, 0);
  }

 private:
  void swap(HugeArray& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
  }
  T* p_ = nullptr;
  std::size_t bytes_ = 0;
};

class RecencyLog {
 public:
  static constexpr std::uint32_t kNone = 0xFFFF'FFFFu;
  static constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 29;
  static constexpr unsigned kSteps = 4;  // compaction steps per append while a pass runs

  RecencyLog() = default;
  explicit RecencyLog(std::uint64_t capacity) {
    if (capacity > kMaxCapacity) {
      throw std::length_error("capacity " + std::to_string(capacity) +
                              " is above the writer's limit of " + std::to_string(kMaxCapacity) +
                              " positions");
    }
    std::uint64_t n = 1024;
    while (n < capacity) n <<= 1;
    ring_ = HugeArray<Entry>(4 * n);
    mask_ = 4 * n - 1;
    stamps_ = HugeArray<Stamp>(capacity);
  }

  // Forget everything (every slot free), keeping the memory. Expiring namespaces stay set.
  void clear() noexcept {
    stamps_.fill_zero();
    front_ = w_ = s_ = back_ = 0;
    next_stamp_ = 1;
    for (auto& c : cursors_) c.pos = 0;
  }

  // The namespaces whose positions expire: each gets a cursor (see oldest_of).
  void set_expiring(std::span<const std::uint16_t> namespaces) {
    cursors_.clear();
    for (std::uint16_t ns : namespaces) cursors_.push_back({ns, front_});
  }

  // `slot` (of namespace `ns`) was inserted or changed: it is now the most recently updated.
  void touch(std::uint32_t slot, std::uint16_t ns) noexcept {
    std::uint32_t stamp = next_stamp_++;
    if (stamp == 0) stamp = next_stamp_++;  // 0 means "freed"
    stamps_[slot] = Stamp{stamp, ns, 0};
    if (back_ - front_ > mask_) make_room();  // never, by the argument above; kept as a guard
    ring_[back_ & mask_] = Entry{slot, stamp};
    ++back_;
    if (!active_ && back_ - front_ >= (mask_ + 1) / 2) {
      active_ = true;
      w_ = s_ = front_;
    }
    for (unsigned i = 0; i < kSteps && active_; ++i) step();
  }

  // `slot` was freed: its live entry dies.
  void forget(std::uint32_t slot) noexcept { stamps_[slot].stamp = 0; }

  // Where the stamp of `slot` lives, for a prefetch ahead of touch().
  [[nodiscard]] const void* stamp_address(std::uint32_t slot) const noexcept {
    return &stamps_[slot];
  }

  // The least recently updated position of all namespaces, or kNone if none is live. Drops the
  // dead entries it finds at the front.
  std::uint32_t oldest() noexcept {
    for (;;) {
      if (front_ == w_ && w_ != s_) front_ = w_ = s_;  // empty compacted part: skip the hole
      if (front_ == back_) return kNone;
      const Entry e = ring_[front_ & mask_];
      if (live(e)) return e.slot;
      ++front_;
      if (w_ < front_) w_ = front_;
      if (s_ < front_) s_ = front_;
    }
  }

  // The oldest live position of expiring namespace `ns` (set_expiring), or kNone if it has none
  // or `budget` entries of other namespaces or dead ones were passed first (the search resumes
  // there next time). Each entry passed costs one unit of `budget`.
  std::uint32_t oldest_of(std::uint16_t ns, std::size_t& budget) noexcept {
    Cursor* c = cursor(ns);
    if (c == nullptr) return kNone;
    std::uint64_t pos = normalize(c->pos);
    while (pos < back_ && budget > 0) {
      const Entry e = ring_[pos & mask_];
      if (live(e) && stamps_[e.slot].ns == ns) break;
      pos = normalize(pos + 1);
      --budget;
    }
    c->pos = pos;
    if (pos >= back_) return kNone;
    const Entry e = ring_[pos & mask_];
    return live(e) && stamps_[e.slot].ns == ns ? e.slot : kNone;
  }

  // Every live position, least recently updated first: f(slot, ns). f must not change the log.
  template <class F>
  void for_each(F&& f) const {
    for (std::uint64_t pos = normalize(front_); pos < back_; pos = normalize(pos + 1)) {
      const Entry e = ring_[pos & mask_];
      if (live(e)) f(e.slot, stamps_[e.slot].ns);
    }
  }

  // Eviction prediction for the batch pipeline: the next live slot at or after `pos` (a
  // position; start from front_position()), advancing `pos` past it; kNone after `max_skip`
  // dead entries or at the end. A hint only: the log may change before the eviction happens.
  std::uint32_t predict(std::uint64_t& pos, unsigned max_skip) const noexcept {
    pos = normalize(pos);
    for (unsigned k = 0; pos < back_ && k <= max_skip; ++k) {
      const Entry e = ring_[pos & mask_];
      pos = normalize(pos + 1);
      if (live(e)) return e.slot;
    }
    return kNone;
  }
  [[nodiscard]] std::uint64_t front_position() const noexcept { return front_; }

  [[nodiscard]] std::uint64_t ring_size() const noexcept { return mask_ + 1; }
  [[nodiscard]] std::uint64_t held() const noexcept { return back_ - front_; }  // entries and hole
  [[nodiscard]] std::uint64_t forced_passes() const noexcept { return forced_passes_; }
  // For tests: where the stamp counter stands (to drive it through its wrap-around).
  void set_next_stamp_for_test(std::uint32_t next) noexcept { next_stamp_ = next; }

 private:
  struct Entry {
    std::uint32_t slot;
    std::uint32_t stamp;
  };
  struct Stamp {
    std::uint32_t stamp;  // of the slot's live entry; 0: the slot is free
    std::uint16_t ns;
    std::uint16_t reserved;
  };
  struct Cursor {
    std::uint16_t ns;
    std::uint64_t pos;
  };

  [[nodiscard]] bool live(const Entry& e) const noexcept {
    return stamps_[e.slot].stamp == e.stamp;
  }

  // A position as the logical sequence sees it: the start of the hole means "after the hole",
  // and anything before the front is the front. (A cursor is never strictly inside the hole.)
  [[nodiscard]] std::uint64_t normalize(std::uint64_t pos) const noexcept {
    if (pos < front_) pos = front_;
    if (pos == w_ && w_ < s_) pos = s_;
    return pos;
  }

  Cursor* cursor(std::uint16_t ns) noexcept {
    for (auto& c : cursors_) {
      if (c.ns == ns) return &c;
    }
    return nullptr;
  }

  // One compaction step (see the header comment).
  void step() noexcept {
    if (s_ == back_) {  // the pass is over: the hole is at the end, give it back
      for (auto& c : cursors_) {
        if (c.pos >= w_) c.pos = w_;
      }
      back_ = s_ = w_;
      active_ = false;
      return;
    }
    __builtin_prefetch(&stamps_[ring_[(s_ + 8) & mask_].slot]);
    for (auto& c : cursors_) {
      if (c.pos == s_) c.pos = w_;  // the entries it stands before move down to w
    }
    const Entry e = ring_[s_ & mask_];
    if (live(e)) {
      if (w_ != s_) ring_[w_ & mask_] = e;
      ++w_;
    }
    ++s_;
  }

  void make_room() noexcept {
    ++forced_passes_;
    if (!active_) {
      active_ = true;
      w_ = s_ = front_;
    }
    while (active_) step();
  }

  HugeArray<Entry> ring_;
  HugeArray<Stamp> stamps_;
  std::uint64_t mask_ = 0;
  std::uint64_t front_ = 0, w_ = 0, s_ = 0, back_ = 0;
  std::uint32_t next_stamp_ = 1;
  bool active_ = false;
  std::uint64_t forced_passes_ = 0;  // make_room() calls: 0, by the argument in the header
  std::vector<Cursor> cursors_;
};

}  // namespace poscache::detail
