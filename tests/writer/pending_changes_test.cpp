// writer/pending_changes: the apply thread's side of the Redis sync, with no sync thread
// behind it: marks coalesce per batch, removals are journaled before they are queued, a full
// queue drops nothing.
#include "writer/pending_changes.hpp"

#include <gtest/gtest.h>

#include <memory>

#include "test_util.hpp"

using namespace poscache;
using namespace poscache::detail;
using namespace poscache::shm;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  test::PrivateSegment seg{8};
  Journal journal{seg.base(), seg.g};
  SlotBook* book = reinterpret_cast<SlotBook*>(seg.base() + seg.g.book_offset);
  ChangeChannel channel;
  std::uint64_t next_version = 1;
  PendingChanges handoff{channel, journal, book, &next_version, 5ms, 1024};

  ChangeBatch* take() {
    ChangeBatch* b = nullptr;
    return channel.to_sync.pop(b) ? b : nullptr;
  }
};

}  // namespace

TEST(PendingChangesTest, ASlotIsQueuedOncePerBatchAndAgainInTheNext) {
  Fixture f;
  f.handoff.mark(3, 100);
  f.handoff.mark(3, 101);
  f.handoff.mark(5, 102);
  EXPECT_EQ(f.handoff.hand_off(), 1u);
  ChangeBatch* b = f.take();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->slots, (std::vector<std::uint32_t>{3, 5}));
  EXPECT_EQ(b->first_ns, 100);
  EXPECT_EQ(b->seq, 1u);
  f.handoff.mark(3, 200);  // a new batch: queued again
  EXPECT_EQ(f.handoff.hand_off(), 2u);
  EXPECT_EQ(f.take()->slots, (std::vector<std::uint32_t>{3}));
  EXPECT_EQ(f.handoff.hand_off(), 2u);  // nothing to hand off: the number stays
}

TEST(PendingChangesTest, ARemovalIsInTheJournalBeforeItIsQueued) {
  Fixture f;
  f.handoff.removal(erase_of(KeyRef{0, "alice", "SOL"}, 7), 50);
  EXPECT_EQ(f.journal.pending(), 1u);
  f.handoff.replay(pattern_of(RemovalEvent::Kind::all, 3, std::nullopt, {}), 51);
  EXPECT_EQ(f.journal.pending(), 1u);  // a replayed entry is already in the journal
  f.handoff.hand_off();
  ChangeBatch* b = f.take();
  ASSERT_EQ(b->events.size(), 2u);
  EXPECT_EQ(b->events[0].journal_pos, 1u);
  EXPECT_EQ(b->events[0].version, 7u);
  EXPECT_EQ(b->events[1].kind, RemovalEvent::Kind::all);
}

TEST(PendingChangesTest, AFullQueueKeepsTheBatchGrowingAndDropsNothing) {
  Fixture f;
  for (std::uint32_t i = 0; i < 1024; ++i) {
    f.handoff.mark(i % 8, i);
    ASSERT_EQ(f.handoff.hand_off(), i + 1);
  }
  f.handoff.mark(1, 5000);
  f.handoff.mark(2, 5001);
  EXPECT_EQ(f.handoff.hand_off(), 1024u);  // full: not handed off, kept
  f.handoff.maybe_hand_off(1'000'000'000);
  EXPECT_FALSE(f.handoff.flush(1ms));  // no sync thread: never clean
  std::size_t slots = 0;
  while (ChangeBatch* b = f.take()) {
    slots += b->slots.size();
    b->slots.clear();
    f.channel.to_apply.push(b);
  }
  EXPECT_EQ(slots, 1024u);
  EXPECT_EQ(f.handoff.hand_off(), 1025u);  // room again: the kept batch goes, whole
  EXPECT_EQ(f.take()->slots, (std::vector<std::uint32_t>{1, 2}));
}

TEST(PendingChangesTest, MaybeHandOffWaitsForHalfTheFlushIntervalOrABatchSize) {
  Fixture f;
  f.handoff.mark(1, 1'000'000);
  f.handoff.maybe_hand_off(1'000'000 + 2'000'000);  // 2 ms < 2.5 ms
  EXPECT_EQ(f.take(), nullptr);
  f.handoff.maybe_hand_off(1'000'000 + 2'500'000);
  EXPECT_NE(f.take(), nullptr);
}
