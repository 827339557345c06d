// The change ring's protocol (shm/change_ring.hpp) on a ring in private memory: what is visible
// before and after the head moves, records of one to three cells (wrapping the ring's end
// included), a reader lapped by the writer told so instead of handed another record, a cell left
// mid-write by a killed writer, a writer re-attached at its predecessor's head, and readers in
// threads copying records while the writer overwrites them, each record checking itself.
// (Through a real segment and Reader::changes: tests/reader/changes_test.cpp and the change
// torture.)
#include "shm/change_ring.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace poscache::shm {
namespace {

// A ring of `cells` cells and its head word, as the segment holds them.
struct HandChangeRing {
  explicit HandChangeRing(std::uint64_t cells) : cells_(cells), mask(cells - 1) {}
  ChangeRingWriter writer() { return ChangeRingWriter(cells_.data(), cells_.size(), &head); }
  [[nodiscard]] std::uint64_t published() const { return load_acquire(&head); }
  bool read(std::uint64_t pos, RecordWords& out, std::size_t& n) const {
    return read_record(cells_.data(), mask, pos, out, n);
  }
  ChangeCell& cell(std::uint64_t pos) { return cells_[pos & mask]; }

  std::vector<ChangeCell> cells_;
  std::uint64_t mask;
  std::uint64_t head = 0;
};

std::string record_text(const RecordWords& r) {
  std::string t(r.meta().text_len, '\0');
  r.text(t.data(), t.size());
  return t;
}
// A text of `n` bytes that says where each byte is: a copy that mixes two records shows.
std::string record_pattern(std::size_t n, char seed) {
  std::string s(n, ' ');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('!' + (seed + i) % 90);
  return s;
}

TEST(ChangeRingTest, ARecordIsReadOnlyOnceTheHeadIsPublishedAndCarriesWhatWasAppended) {
  HandChangeRing ring(16);
  ChangeRingWriter w = ring.writer();
  ASSERT_TRUE(w.enabled());
  w.append(3, 2, 41, 1'700'000'000'000'000'000, "w1", "SOL");
  EXPECT_EQ(w.pending(), 1u);
  EXPECT_EQ(ring.published(), 0u);  // written, not published: readers stop at the head
  w.publish();
  ASSERT_EQ(ring.published(), 1u);
  RecordWords r;
  std::size_t n = 0;
  ASSERT_TRUE(ring.read(0, r, n));
  EXPECT_EQ(n, 1u);
  const ChangeMeta m = r.meta();
  EXPECT_EQ(m.kind, 3);
  EXPECT_EQ(m.cells, 1);
  EXPECT_EQ(m.ns, 2);
  EXPECT_EQ(m.alen, 2);
  EXPECT_EQ(m.ilen, 3);
  EXPECT_EQ(r.w[1], 41u);                                                   // version
  EXPECT_EQ(static_cast<std::int64_t>(r.w[2]), 1'700'000'000'000'000'000);  // at
  EXPECT_EQ(record_text(r), "w1SOL");
  EXPECT_EQ(ring.cell(0).seq, 1u);  // a cell's seq: its position + 1
}

TEST(ChangeRingTest, ATextSpansOneToThreeCellsWhole) {
  HandChangeRing ring(64);
  ChangeRingWriter w = ring.writer();
  const std::vector<std::size_t> lengths = {0,
                                            1,
                                            kCellFirstTextBytes,
                                            kCellFirstTextBytes + 1,
                                            kCellFirstTextBytes + kCellTextBytes,
                                            kCellFirstTextBytes + kCellTextBytes + 1,
                                            kMaxChangeText};
  std::vector<std::uint64_t> at;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    const std::string t = record_pattern(lengths[i], static_cast<char>(i));
    at.push_back(w.pending());
    const std::size_t split = t.size() / 3;  // account and instrument, joined in the record
    w.append(1, 0, i, 0, std::string_view(t).substr(0, split), std::string_view(t).substr(split));
  }
  w.publish();
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    RecordWords r;
    std::size_t n = 0;
    ASSERT_TRUE(ring.read(at[i], r, n)) << lengths[i];
    EXPECT_EQ(n, cells_for_text(lengths[i])) << lengths[i];
    EXPECT_EQ(r.w[1], i);
    EXPECT_EQ(record_text(r), record_pattern(lengths[i], static_cast<char>(i))) << lengths[i];
    if (i + 1 < lengths.size()) {
      EXPECT_EQ(at[i + 1] - at[i], n);  // consecutive positions
    }
  }
  EXPECT_EQ(cells_for_text(kMaxChangeText), 3u);
}

// The writer never waits: a reader behind by more than the ring finds its cells hold later
// positions and is told so (false), for every position it lost, and reads every position still
// in the ring, a record across the ring's end included.
TEST(ChangeRingTest, AReaderLappedByTheWriterIsToldSoAndNeverHandedALaterRecord) {
  HandChangeRing ring(8);
  ChangeRingWriter w = ring.writer();
  for (std::uint64_t v = 1; v <= 21; ++v) {
    w.append(1, 0, v, 0, "a" + std::to_string(v), "I");  // one cell each: positions 0..20
    w.publish();
  }
  const std::string three = record_pattern(kMaxChangeText, 7);
  w.append(2, 0, 99, 0, three, "");      // positions 21, 22, 23: cells 5, 6, 7
  w.append(1, 0, 100, 0, "after", "I");  // position 24: cell 0
  w.publish();
  const std::uint64_t head = ring.published();
  ASSERT_EQ(head, 25u);
  RecordWords r;
  std::size_t n = 0;
  for (std::uint64_t pos = 0; pos < head - 8; ++pos)
    EXPECT_FALSE(ring.read(pos, r, n)) << "position " << pos << " was overwritten";
  for (std::uint64_t pos = head - 8; pos < 21; ++pos) {
    ASSERT_TRUE(ring.read(pos, r, n)) << pos;
    EXPECT_EQ(r.w[1], pos + 1);
    EXPECT_EQ(record_text(r), "a" + std::to_string(pos + 1) + "I");
  }
  ASSERT_TRUE(ring.read(21, r, n));
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(record_text(r), three);
  ASSERT_TRUE(ring.read(24, r, n));
  EXPECT_EQ(record_text(r), "afterI");
  // Later records reach cell 5, the first of position 21's three: that record is lost as a
  // whole, though its other two cells still hold it.
  w.append(2, 0, 101, 0, three, "");  // positions 25..27: cells 1, 2, 3
  w.append(1, 0, 102, 0, "x", "I");   // position 28: cell 4
  w.append(1, 0, 103, 0, "y", "I");   // position 29: cell 5, the first of position 21's cells
  w.publish();
  EXPECT_FALSE(ring.read(21, r, n));
}

// A record whose later cell was overwritten, or a cell a killed writer left marked mid-write,
// reads as lapped; a hand-built cell with the right seq but a torn first-cell count is bounded.
TEST(ChangeRingTest, HandBuiltCellsMidWriteOrOverwrittenAreNeverTrusted) {
  HandChangeRing ring(8);
  ChangeRingWriter w = ring.writer();
  w.append(1, 0, 1, 0, record_pattern(kCellFirstTextBytes + 10, 1), "");  // positions 0, 1
  w.append(1, 0, 2, 0, "b", "I");                                         // position 2
  w.publish();
  RecordWords r;
  std::size_t n = 0;
  ASSERT_TRUE(ring.read(0, r, n));
  store_relaxed(&ring.cell(1).seq, kCellWriting);  // its second cell being rewritten
  EXPECT_FALSE(ring.read(0, r, n));
  store_relaxed(&ring.cell(1).seq, std::uint64_t{10});  // ... and rewritten for position 9
  EXPECT_FALSE(ring.read(0, r, n));
  store_relaxed(&ring.cell(2).seq, kCellWriting);  // a writer killed inside its CW1-CW4
  EXPECT_FALSE(ring.read(2, r, n));
  // A first cell whose meta claims 200 cells (what a torn copy may hold) is read as one cell.
  HandChangeRing other(8);
  ChangeRingWriter w2 = other.writer();
  w2.append(1, 0, 5, 0, "c", "I");
  w2.publish();
  store_relaxed(&other.cell(0).word[2], change_meta(1, 200, 0, 1, 1, 2));
  ASSERT_TRUE(other.read(0, r, n));
  EXPECT_EQ(n, 1u);
}

TEST(ChangeRingTest, AWriterReattachedToTheRingGoesOnFromThePublishedHead) {
  HandChangeRing ring(16);
  {
    ChangeRingWriter first = ring.writer();
    first.append(1, 0, 1, 0, "a", "I");
    first.append(1, 0, 2, 0, "b", "I");
    first.publish();
    first.append(1, 0, 3, 0, "lost", "I");  // written, never published: the writer dies here
  }
  ChangeRingWriter next = ring.writer();
  EXPECT_EQ(next.pending(), 2u);  // from the head, over the unpublished record
  next.append(kRestartRecord, 0, 0, 0, "", "");
  next.publish();
  RecordWords r;
  std::size_t n = 0;
  ASSERT_TRUE(ring.read(2, r, n));
  EXPECT_EQ(r.meta().kind, kRestartRecord);
  EXPECT_EQ(ring.published(), 3u);
  ChangeRingWriter off;  // a segment without a ring: appends and publishes do nothing
  EXPECT_FALSE(off.enabled());
  off.append(1, 0, 1, 0, "a", "I");
  off.publish();
  EXPECT_EQ(off.pending(), 0u);
}

// One writer appends records of one to three cells into a small ring as fast as it can; readers
// follow the head and copy records while they are overwritten. Every record read whole must be
// the one written at its position: its version is its position and its text is derived from
// the version, so any mixed copy shows. Readers must also be lapped: the point of the test.
TEST(ChangeRingTest, ReadersFollowingAWriterThatLapsThemNeverAcceptAForeignRecord) {
  HandChangeRing ring(32);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> verified{0}, lapped{0}, wrong{0};
  std::thread writer([&] {
    ChangeRingWriter w = ring.writer();
    for (std::uint64_t k = 0; !stop.load(std::memory_order_relaxed); ++k) {
      const std::uint64_t pos = w.pending();
      const std::size_t len = (k * 37) % (kMaxChangeText + 1);
      const std::string t = record_pattern(len, static_cast<char>(pos % 90));
      w.append(static_cast<std::uint8_t>(1 + pos % 9), static_cast<std::uint16_t>(pos % 3), pos,
               static_cast<std::int64_t>(pos * 3), t, "");
      if (k % 3 == 0) w.publish();
    }
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      RecordWords r;
      std::size_t n = 0;
      std::uint64_t pos = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t head = ring.published();
        if (pos >= head) continue;
        // Lapped, or too far behind to catch up: resync at the head, a record's start (the head
        // moves only past whole records), as a follower does after `lapped`.
        if (head - pos > ring.cells_.size() || !ring.read(pos, r, n)) {
          lapped.fetch_add(1, std::memory_order_relaxed);
          pos = head;
          continue;
        }
        const ChangeMeta m = r.meta();
        const bool own = r.w[1] == pos && static_cast<std::uint64_t>(r.w[2]) == pos * 3 &&
                         m.kind == 1 + pos % 9 && m.ns == pos % 3 && m.cells == n &&
                         m.text_len <= kMaxChangeText &&
                         record_text(r) == record_pattern(m.text_len, static_cast<char>(pos % 90));
        (own ? verified : wrong).fetch_add(1, std::memory_order_relaxed);
        pos += n;
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((verified.load() < 200'000 || lapped.load() < 1'000) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  writer.join();
  for (auto& t : readers) t.join();
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_GE(verified.load(), 200'000u);
  EXPECT_GE(lapped.load(), 1'000u) << "the readers were never lapped: nothing was proven";
  std::printf("change ring: %llu records verified, %llu lapped reads\n",
              static_cast<unsigned long long>(verified.load()),
              static_cast<unsigned long long>(lapped.load()));
}

}  // namespace
}  // namespace poscache::shm
