// The change ring: every change the writer applies, in order, for readers that follow it
// (Reader::changes). Layout: ChangeCell and ring_cells_for() in shm/layout.hpp; the ring lives
// at Geometry::ring_offset, its head in the header (line 3, beside change_seq).
//
// WHAT IT IS
// - A sequence of records, each 1 to 3 cells of 128 B at consecutive ring positions (u64, never
//   reused); cell (position & (ring_cells - 1)) holds it. A record names the key (or the
//   pattern) that changed, the kind of change, a version and a time; not the values: a reader
//   get()s the key for those.
// - header.ring_head: records at positions below it are published. The writer writes a change's
//   records as it applies it, and moves the head once the change is complete and visible (after
//   the slot writes, the account stripes' AW4): once per operation, once per Writer::apply batch.
// - The writer never waits for readers: it overwrites the oldest cells. A reader behind by more
//   than the ring finds a cell's seq changed and is told it was lapped, never handed a record
//   that is not the one at its position.
//
// PROTOCOL
//
//   writer (append a record of n cells at positions   reader (changes(from))
//   p .. p+n-1, then publish)                          ----------------------------------------
//   ----------------------------------------------     CR0 head = load_acquire(ring_head);
//   CW1 store_relaxed(cell(p+k).seq, kCellWriting)          from > head: invalid position;
//       for each k                                          head - from > ring_cells: lapped
//   CW2 atomic_thread_fence(release)                   for each record at p in [from, head):
//   CW3 store_relaxed each word of the cells           CR1 load_acquire(cell(p+k).seq) == p+k+1
//   CW4 store_release(cell(p+k).seq, p+k+1)                 for each cell, else lapped
//       for each k                                     CR2 copy the words: load_relaxed each
//   when the change is complete:                       CR3 atomic_thread_fence(acquire)
//   CW5 store_release(ring_head, p+n)                  CR4 load_relaxed(cell(p+k).seq) == p+k+1
//                                                           for each cell, else lapped
//
// WHY A RECORD THAT PASSES CR4 IS THE ONE WRITTEN AT ITS POSITION, WHOLE
// The slot seqlock's argument (shm/seqlock.hpp), with the cell's seq as the sequence word:
// - CR1 pairs with CW4 of the append that wrote position p: the words it stored (CW3) are visible.
// - If CR2 read any word stored by a LATER append into the same cell (position p + k*ring_cells),
//   that append's CW2 release fence and CR3's acquire fence synchronize through that word: its CW1
//   (kCellWriting) happens before CR4, which then reads kCellWriting or a later position + 1.
// - A seq value is a position + 1, used once per cell ever: no ABA, so CR4 equal to CR1 means no
//   other append touched the cell in between.
//
// WHY A READER MISSES NOTHING, SILENTLY
// - CR0's acquire pairs with CW5, which follows the change in program order: a reader that sees a
//   record sees the change it announces (get() returns that version or a later one).
// - Positions are consecutive. The reader reads every position from `from` to the head, and a
//   position it cannot read whole is reported (lapped), with the head to resync from: read the
//   state after learning `next`, then every change after `next` comes from the ring.
// - Records beyond the head are being written (CW1-CW4) or belong to a change not yet complete;
//   readers never read them.
//
// BOUNDED TIME
// No spinning: a cell that is not the expected position is reported at once, and a call reads
// at most `max` records.
//
// THE WRITER DIES (kill -9)
// A change's record may have been written and never published (CW5), or the change applied and
// its record never written. A re-attaching writer cannot tell which of its predecessor's last
// changes are missing, so its first record is a restart marker: a reader that reaches it is
// told writer_restarted, and resyncs as after a lap. Cells a killed writer left kCellWriting
// read as overwritten (lapped) for the position they held, which is correct: they were about to
// be overwritten.
//
// COST TO THE WRITER
// About two cache lines of stores per change, sequential (the next cells are prefetched for
// writing), and one release store of the head per operation or batch: bench_writer measures it
// with the ring on and off.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "shm/atomic.hpp"
#include "shm/layout.hpp"

namespace poscache::shm {

inline constexpr std::uint64_t kCellWriting = ~0ull;
inline constexpr std::size_t kCellWords = sizeof(ChangeCell) / 8;  // 16, seq included
// The kind byte of a restart marker (the public kinds, poscache::ChangeKind, are 1-9).
inline constexpr std::uint8_t kRestartRecord = 0x7F;

// The meta word of a record's first cell (word 3 counting seq as 0).
constexpr std::uint64_t change_meta(std::uint8_t kind, std::uint8_t cells, std::uint16_t ns,
                                    std::uint8_t alen, std::uint8_t ilen,
                                    std::uint16_t text_len) noexcept {
  return std::uint64_t{kind} | std::uint64_t{cells} << 8 | std::uint64_t{ns} << 16 |
         std::uint64_t{alen} << 32 | std::uint64_t{ilen} << 40 | std::uint64_t{text_len} << 48;
}
struct ChangeMeta {
  std::uint8_t kind, cells;
  std::uint16_t ns;
  std::uint8_t alen, ilen;
  std::uint16_t text_len;
};
constexpr ChangeMeta change_meta_of(std::uint64_t m) noexcept {
  return {static_cast<std::uint8_t>(m),        static_cast<std::uint8_t>(m >> 8),
          static_cast<std::uint16_t>(m >> 16), static_cast<std::uint8_t>(m >> 32),
          static_cast<std::uint8_t>(m >> 40),  static_cast<std::uint16_t>(m >> 48)};
}
constexpr std::size_t cells_for_text(std::size_t text) noexcept {
  return text <= kCellFirstTextBytes ? 1 : text <= kCellFirstTextBytes + kCellTextBytes ? 2 : 3;
}

// A record as words, cell after cell (word 16k is cell k's seq, not copied). The text runs from
// word 4 of the first cell, then from word 1 of each further cell.
struct RecordWords {
  std::uint64_t w[kMaxRecordCells * kCellWords];

  [[nodiscard]] ChangeMeta meta() const noexcept { return change_meta_of(w[3]); }
  // Copies `len` text bytes out (len <= kMaxChangeText).
  void text(char* out, std::size_t len) const noexcept {
    const auto* c = reinterpret_cast<const char*>(w);
    std::size_t done = std::min(len, kCellFirstTextBytes);
    std::memcpy(out, c + 32, done);
    for (std::size_t k = 1; done < len; ++k) {
      const std::size_t part = std::min(len - done, kCellTextBytes);
      std::memcpy(out + done, c + k * sizeof(ChangeCell) + 8, part);
      done += part;
    }
  }
};

// Writer side. Only the writer's apply thread calls it.
class ChangeRingWriter {
 public:
  ChangeRingWriter() = default;
  ChangeRingWriter(ChangeCell* cells, std::uint64_t count, std::uint64_t* head) noexcept
      : cells_(cells), mask_(count - 1), head_(head), pending_(load_relaxed(head)) {}

  [[nodiscard]] bool enabled() const noexcept { return cells_ != nullptr; }
  [[nodiscard]] std::uint64_t pending() const noexcept { return pending_; }

  // CW1-CW4: a record of text a + b (a key's account and instrument, or a pattern) at the next
  // position; readers see it after publish(). The caller has validated the lengths.
  void append(std::uint8_t kind, std::uint16_t ns, std::uint64_t version, std::int64_t at_ns,
              std::string_view a, std::string_view b) noexcept {
    if (cells_ == nullptr) return;
    const std::size_t len = std::min(a.size() + b.size(), kMaxChangeText);
    const std::size_t n = cells_for_text(len);
    RecordWords r;
    std::memset(r.w, 0, n * sizeof(ChangeCell));
    r.w[1] = version;
    r.w[2] = static_cast<std::uint64_t>(at_ns);
    r.w[3] = change_meta(kind, static_cast<std::uint8_t>(n), ns,
                         static_cast<std::uint8_t>(std::min<std::size_t>(a.size(), 255)),
                         static_cast<std::uint8_t>(std::min<std::size_t>(b.size(), 255)),
                         static_cast<std::uint16_t>(len));
    put_text(r, a, b, len);
    const std::uint64_t p = pending_;
    for (std::size_t k = 0; k < n; ++k) store_relaxed(&cell(p + k).seq, kCellWriting);  // CW1
    std::atomic_thread_fence(std::memory_order_release);                                // CW2
    for (std::size_t k = 0; k < n; ++k) {
      ChangeCell& c = cell(p + k);
      for (std::size_t j = 1; j < kCellWords; ++j)
        store_relaxed(&c.word[j - 1], r.w[k * kCellWords + j]);  // CW3
    }
    for (std::size_t k = 0; k < n; ++k) store_release(&cell(p + k).seq, p + k + 1);  // CW4
    pending_ = p + n;
    // The cells after next, for writing: the stores above found theirs in cache this way.
    const ChangeCell& ahead = cell(pending_ + 2);
    __builtin_prefetch(&ahead, 1);
    __builtin_prefetch(reinterpret_cast<const char*>(&ahead) + kCacheLine, 1);
  }

  // CW5: every record appended so far is published.
  void publish() noexcept {
    if (cells_ != nullptr && pending_ != load_relaxed(head_)) store_release(head_, pending_);
  }

 private:
  ChangeCell& cell(std::uint64_t pos) const noexcept { return cells_[pos & mask_]; }
  static void put_text(RecordWords& r, std::string_view a, std::string_view b,
                       std::size_t len) noexcept {
    char text[kMaxChangeText];
    const std::size_t na = std::min(a.size(), len);
    if (na > 0) std::memcpy(text, a.data(), na);  // (an empty view may have a null data())
    if (len > na) std::memcpy(text + na, b.data(), len - na);
    auto* c = reinterpret_cast<char*>(r.w);
    std::size_t done = std::min(len, kCellFirstTextBytes);
    std::memcpy(c + 32, text, done);
    for (std::size_t k = 1; done < len; ++k) {
      const std::size_t part = std::min(len - done, kCellTextBytes);
      std::memcpy(c + k * sizeof(ChangeCell) + 8, text + done, part);
      done += part;
    }
  }

  ChangeCell* cells_ = nullptr;
  std::uint64_t mask_ = 0;
  std::uint64_t* head_ = nullptr;
  std::uint64_t pending_ = 0;  // the next position to write (>= the published head)
};

// Reader side: CR1-CR4 for the record at `pos` (below a head loaded with CR0). False if any of its
// cells no longer holds it (the ring lapped the reader there). `cells` is the record's cell
// count, valid when true.
inline bool read_record(const ChangeCell* ring, std::uint64_t mask, std::uint64_t pos,
                        RecordWords& out, std::size_t& cells) noexcept {
  const ChangeCell& first = ring[pos & mask];
  if (load_acquire(&first.seq) != pos + 1) return false;                                     // CR1
  for (std::size_t j = 1; j < kCellWords; ++j) out.w[j] = load_relaxed(&first.word[j - 1]);  // CR2
  // A torn copy may hold any count: bounded here, and proven by CR4 before it is trusted.
  std::size_t n = change_meta_of(out.w[3]).cells;
  if (n < 1 || n > kMaxRecordCells) n = 1;
  for (std::size_t k = 1; k < n; ++k) {
    const ChangeCell& c = ring[(pos + k) & mask];
    if (load_acquire(&c.seq) != pos + k + 1) return false;  // CR1
    for (std::size_t j = 1; j < kCellWords; ++j)
      out.w[k * kCellWords + j] = load_relaxed(&c.word[j - 1]);  // CR2
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // CR3
  for (std::size_t k = 0; k < n; ++k) {
    if (load_relaxed(&ring[(pos + k) & mask].seq) != pos + k + 1) return false;  // CR4
  }
  cells = n;
  return true;
}

}  // namespace poscache::shm
