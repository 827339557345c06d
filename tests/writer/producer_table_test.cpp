// The writer's side of the segment's producer table (writer/producer_table.hpp), over a table
// built by hand: which entry a producer gets, what a new producer finds in it, what an operator
// still sees of one that left, and that every change is published under the entry's seqlock.
#include "writer/producer_table.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>

#include "shm/seqlock.hpp"

namespace poscache::detail {
namespace {

using shm::kMaxProducers;
using shm::ProducerState;
using shm::ProducerStatus;

// The table as a reader sees it: a consistent copy of entry `i`, or a failure if it stayed
// mid-write (its sequence odd).
struct ProducerEntry {
  ProducerStatus copy{};
  [[nodiscard]] ProducerState state() const { return static_cast<ProducerState>(copy.state); }
  [[nodiscard]] std::string name() const {
    const auto* c = reinterpret_cast<const char*>(copy.name);
    return std::string(c, ::strnlen(c, sizeof copy.name));
  }
  [[nodiscard]] std::string error() const {
    return std::string(reinterpret_cast<const char*>(copy.error), copy.error_len);
  }
};

class HandTable {
 public:
  HandTable() : t_(entries_.data()) {}
  ProducerTable& table() { return t_; }
  ProducerStatus& raw(int i) { return entries_[static_cast<std::size_t>(i)]; }
  ProducerEntry read(int i) const {
    ProducerEntry e;
    const ProducerStatus& s = entries_[static_cast<std::size_t>(i)];
    EXPECT_TRUE(
        shm::seqlock_try_read(&s.seq, &s.seq + 1, &e.copy.seq + 1, shm::kProducerStatusWords))
        << "entry " << i << " left mid-write (seq " << s.seq << ")";
    e.copy.seq = s.seq;
    return e;
  }

 private:
  std::array<ProducerStatus, kMaxProducers> entries_{};
  ProducerTable t_;
};

TEST(ProducerTableTest, AProducerGetsTheFirstFreeEntryWithItsIdentityPublished) {
  HandTable t;
  const int a = t.table().attach("risk-gw", 4242, 1000, 111);
  const int b = t.table().attach("oms", 4343, 1001, 222);
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 1);
  const ProducerEntry e = t.read(a);
  EXPECT_EQ(e.state(), ProducerState::attached);
  EXPECT_EQ(e.name(), "risk-gw");
  EXPECT_EQ(e.copy.pid, 4242);
  EXPECT_EQ(e.copy.uid, 1000u);
  EXPECT_EQ(e.copy.attached_at_ns, 111);
  EXPECT_EQ(e.copy.detached_at_ns, 0);
  EXPECT_EQ(e.copy.seq, 2u);  // one seqlock write, published (even)
  EXPECT_EQ(t.read(2).state(), ProducerState::free);
}

TEST(ProducerTableTest, CountsErrorsAndDetachShowWhatTheProducerDidAndWhenItLeft) {
  HandTable t;
  const int id = t.table().attach("feed", 7, 0, 10);
  t.table().counts(
      id, ProducerCounts{.pushed = 5, .applied = 4, .rejected = 1, .full = 2, .synced = 3});
  t.table().error(id, "message 5: fill: qty '1.5x' is not a decimal");
  t.table().detach(id, 99);
  const ProducerEntry e = t.read(id);
  EXPECT_EQ(e.state(), ProducerState::detached);
  EXPECT_EQ(e.copy.detached_at_ns, 99);
  EXPECT_EQ(e.copy.attached_at_ns, 10);
  EXPECT_EQ(e.name(), "feed");  // an operator still sees who it was
  EXPECT_EQ(e.copy.pushed, 5u);
  EXPECT_EQ(e.copy.applied, 4u);
  EXPECT_EQ(e.copy.rejected, 1u);
  EXPECT_EQ(e.copy.full, 2u);
  EXPECT_EQ(e.copy.synced, 3u);
  EXPECT_EQ(e.error(), "message 5: fill: qty '1.5x' is not a decimal");
  EXPECT_EQ(e.copy.seq % 2, 0u);
}

TEST(ProducerTableTest, AnErrorLongerThanTheFieldIsCutToItAndAShorterOneLeavesNothingBehind) {
  HandTable t;
  const int id = t.table().attach("noisy", 1, 0, 1);
  const std::string longer(300, 'x');
  t.table().error(id, longer);
  EXPECT_EQ(t.read(id).error(), std::string(sizeof(ProducerStatus::error), 'x'));
  t.table().error(id, "short");
  const ProducerEntry e = t.read(id);
  EXPECT_EQ(e.error(), "short");
  // NUL-padded: the words after the text hold nothing of the longer one.
  const auto* bytes = reinterpret_cast<const char*>(e.copy.error);
  for (std::size_t i = 5; i < sizeof e.copy.error; ++i) ASSERT_EQ(bytes[i], '\0') << i;
}

TEST(ProducerTableTest, AFullTableReusesTheEntryOfTheProducerThatLeftFirst) {
  HandTable t;
  for (std::size_t i = 0; i < kMaxProducers; ++i)
    ASSERT_EQ(t.table().attach("p" + std::to_string(i), 1, 0, 1), static_cast<int>(i));
  EXPECT_EQ(t.table().attach("one-too-many", 1, 0, 2), -1);  // every entry attached
  t.table().counts(
      40, ProducerCounts{.pushed = 9, .applied = 9, .rejected = 9, .full = 9, .synced = 9});
  t.table().error(40, "the old producer's error");
  t.table().detach(17, 300);
  t.table().detach(40, 100);  // left first
  t.table().detach(52, 200);
  const int id = t.table().attach("newcomer", 77, 5, 400);
  EXPECT_EQ(id, 40);
  const ProducerEntry e = t.read(id);
  EXPECT_EQ(e.state(), ProducerState::attached);
  EXPECT_EQ(e.name(), "newcomer");
  EXPECT_EQ(e.copy.pid, 77);
  EXPECT_EQ(e.copy.detached_at_ns, 0);
  // Nothing of the producer that had the entry before.
  EXPECT_EQ(e.copy.pushed + e.copy.applied + e.copy.rejected + e.copy.full + e.copy.synced, 0u);
  EXPECT_EQ(e.error(), "");
  EXPECT_EQ(t.table().attach("next", 1, 0, 500), 52);  // then the next to have left
  EXPECT_EQ(t.table().attach("last", 1, 0, 600), 17);
  EXPECT_EQ(t.table().attach("none", 1, 0, 700), -1);
}

TEST(ProducerTableTest, AtOpenEntriesAPreviousWriterLeftAttachedAreDetachedAndOthersKept) {
  HandTable t;
  t.table().attach("alive-before-crash", 1, 0, 10);  // 0
  t.table().attach("left-earlier", 2, 0, 10);        // 1
  t.table().detach(1, 50);
  ProducerTable fresh(&t.raw(0));  // the next writer, on the same table
  fresh.orphan_all(1000);
  EXPECT_EQ(t.read(0).state(), ProducerState::detached);
  EXPECT_EQ(t.read(0).copy.detached_at_ns, 1000);
  EXPECT_EQ(t.read(1).state(), ProducerState::detached);
  EXPECT_EQ(t.read(1).copy.detached_at_ns, 50);  // when it really left
  EXPECT_EQ(t.read(2).state(), ProducerState::free);
  EXPECT_EQ(t.read(2).copy.seq, 0u);  // never written
}

TEST(ProducerTableTest, AnIdOutsideTheTableChangesNothing) {
  HandTable t;
  const int id = t.table().attach("only", 1, 0, 1);
  const ProducerStatus before = t.raw(id);
  for (const int bad : {-1, static_cast<int>(kMaxProducers), 1 << 20}) {
    t.table().counts(
        bad, ProducerCounts{.pushed = 1, .applied = 1, .rejected = 1, .full = 1, .synced = 1});
    t.table().error(bad, "nobody");
    t.table().detach(bad, 5);
  }
  EXPECT_EQ(std::memcmp(&before, &t.raw(id), sizeof before), 0);
  for (std::size_t i = 1; i < kMaxProducers; ++i) EXPECT_EQ(t.raw(static_cast<int>(i)).seq, 0u);
}

}  // namespace
}  // namespace poscache::detail
