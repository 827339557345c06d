// A writer killed mid-write: readers get a bounded, typed answer; a new writer re-attaches,
// repairs the slot from the undo record and keeps every other position. The mid-write states
// are built by hand, one per step of the seqlock protocol (shm/seqlock.hpp, "THE WRITER DIES").
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/layout.hpp"
#include "shm/seqlock.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace poscache::shm;
using namespace std::chrono_literals;

namespace {

enum class DieAt { before_w1, after_w1, after_w3, after_w4, odd_without_undo };

// In a child process: a writer inserts 3 positions (slot 0 = alice/SOL qty 1), starts changing
// slot 0 to qty 2 by hand up to `step`, and is killed with SIGKILL.
void run_writer_and_die(const std::string& segment, DieAt step) {
  const pid_t child = test::fork_child([&] {
    WriterConfig c = test::small_config(segment, 16);
    c.heartbeat_interval = std::chrono::seconds(1);  // a reader calls it dead only after 10 s
    auto w = Writer::open(c);
    w->upsert(*w->make_update("spot", "alice", "SOL", {{"qty", "1"}, {"fees", "0.5"}}));
    w->upsert(*w->make_update("spot", "bob", "SOL", {{"qty", "7"}}));
    w->upsert(*w->make_update("marks", "alice", "SOL", {{"bid", "140"}}));
    w->tick();
    // Map the segment as the writer does and walk the protocol by hand on slot 0.
    const test::RwMapping m(segment);
    std::byte* base = m.base();
    auto* h = reinterpret_cast<SegmentHeader*>(base);
    auto* slot = reinterpret_cast<Slot*>(base + h->slots_offset);
    auto* wa = reinterpret_cast<WriterArea*>(base + h->writer_offset);
    SlotPayload next;
    std::memcpy(&next, slot->payload, sizeof next);
    next.values[0][0] = 2'000'000'000'000'000'000ull;  // qty 2 at scale 18
    next.version += 100;
    std::uint64_t cur[kPayloadWords], nxt[kPayloadWords];
    std::memcpy(cur, slot->payload, sizeof cur);
    std::memcpy(nxt, &next, sizeof nxt);
    std::size_t changed[kPayloadWords];
    std::size_t k = 0;
    for (std::size_t i = 0; i < kPayloadWords; ++i) {
      if (cur[i] != nxt[i]) changed[k++] = i;
    }
    if (step != DieAt::odd_without_undo) {  // the record the writer saves before SW1
      for (std::size_t j = 0; j < k; ++j) {
        wa->undo.word[j] = static_cast<std::uint8_t>(changed[j]);
        wa->undo.old[j] = cur[changed[j]];
      }
      wa->undo.count = k;
      wa->undo.seq_before = load_acquire(&slot->seq);
      store_release(&wa->undo.slot_plus_one, 1);
    }
    if (step != DieAt::before_w1) {
      const auto s = begin_write(*slot);
      if (step == DieAt::after_w3 || step == DieAt::after_w4 || step == DieAt::odd_without_undo) {
        // half of the changed words only, unless the write completes
        const std::size_t n = step == DieAt::after_w4 ? k : k / 2;
        for (std::size_t j = 0; j < n; ++j) store_word(*slot, changed[j], nxt[changed[j]]);
      }
      if (step == DieAt::after_w4) publish(*slot, s);
    }
    ::raise(SIGKILL);
    return 0;
  });
  ASSERT_EQ(test::wait_child(child), 128 + SIGKILL);
}

std::string qty(const Reader&, const Position& p) {
  return format_decimal(p.values[0], 18);
}

}  // namespace

class ReattachTest : public ::testing::TestWithParam<DieAt> {};

TEST_P(ReattachTest, ANewWriterRepairsTheSlotAndKeepsEverythingElse) {
  test::ScratchSegment seg("reattach");
  const DieAt step = GetParam();
  run_writer_and_die(seg.name(), step);
  const bool mid_write =
      step == DieAt::after_w1 || step == DieAt::after_w3 || step == DieAt::odd_without_undo;

  Reader r = Reader::open(seg.name());
  Position p;
  const ReadStatus first = r.get("spot", "alice", "SOL", p);
  if (mid_write) {
    // Bounded and typed, never a torn copy: busy while the heartbeat is fresh (it beats every
    // second, so it is fresh for 10 s), dead once it is older than ten beats (moved back by hand).
    EXPECT_EQ(first, ReadStatus::writer_busy) << to_string(first);
    {
      const test::RwMapping m(seg.name());
      auto* h = reinterpret_cast<SegmentHeader*>(m.base());
      store_release(&h->heartbeat_ns, load_acquire(&h->heartbeat_ns) - 20'000'000'000);
    }
    EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_dead);
    EXPECT_FALSE(r.writer().alive);
  } else {
    EXPECT_EQ(first, ReadStatus::ok);
  }
  // The other positions are readable throughout.
  ASSERT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(qty(r, p), "7.000000000000000000");

  auto w = Writer::open(test::small_config(seg.name(), 16));
  EXPECT_TRUE(w->stats().reattached);
  EXPECT_EQ(r.stats().writer.restarts, 1u);
  EXPECT_EQ(r.stats().repairs, mid_write ? 1u : 0u);
  EXPECT_TRUE(r.writer().alive);

  const ReadStatus after = r.get("spot", "alice", "SOL", p);
  switch (step) {
    case DieAt::before_w1:
    case DieAt::after_w1:
    case DieAt::after_w3:  // restored from the undo record: the value before the cut write
      ASSERT_EQ(after, ReadStatus::ok);
      EXPECT_EQ(qty(r, p), "1.000000000000000000");
      EXPECT_EQ(format_decimal(p.values[6], 18), "0.500000000000000000");
      break;
    case DieAt::after_w4:  // the write completed before the kill
      ASSERT_EQ(after, ReadStatus::ok);
      EXPECT_EQ(qty(r, p), "2.000000000000000000");
      break;
    case DieAt::odd_without_undo:  // nothing to restore from: dropped, never served half-written
      EXPECT_EQ(after, ReadStatus::not_found);
      break;
  }
  ASSERT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::ok);
  ASSERT_EQ(r.get("marks", "alice", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(r.stats().live, step == DieAt::odd_without_undo ? 2u : 3u);

  // The repaired writer goes on: updates, inserts, and versions keep increasing.
  const auto res = w->upsert(*w->make_update("spot", "alice", "SOL", {{"qty", "3"}}));
  EXPECT_EQ(res.status,
            step == DieAt::odd_without_undo ? ApplyStatus::inserted : ApplyStatus::updated);
  ASSERT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(qty(r, p), "3.000000000000000000");
  for (int i = 0; i < 40; ++i) {  // more than capacity: eviction works on the rebuilt lists
    w->upsert(*w->make_update("spot", "x" + std::to_string(i), "SOL", {{"qty", "1"}}));
  }
  EXPECT_EQ(r.stats().live, 16u);
}

INSTANTIATE_TEST_SUITE_P(EachStep, ReattachTest,
                         ::testing::Values(DieAt::before_w1, DieAt::after_w1, DieAt::after_w3,
                                           DieAt::after_w4, DieAt::odd_without_undo),
                         [](const auto& param_info) {
                           switch (param_info.param) {
                             case DieAt::before_w1:
                               return "DiesBeforeW1";
                             case DieAt::after_w1:
                               return "DiesAfterW1";
                             case DieAt::after_w3:
                               return "DiesAfterHalfOfW3";
                             case DieAt::after_w4:
                               return "DiesAfterW4";
                             case DieAt::odd_without_undo:
                               return "OddSlotWithoutUndoRecord";
                           }
                           return "unknown";
                         });

TEST(ReattachCleanTest, ACleanlyClosedSegmentIsReopenedWithEveryPosition) {
  test::ScratchSegment seg("clean");
  {
    auto w = Writer::open(test::small_config(seg.name(), 16));
    for (int i = 0; i < 10; ++i)
      w->upsert(
          *w->make_update("spot", "a" + std::to_string(i), "SOL", {{"qty", std::to_string(i)}}));
    w->close();
  }
  Reader r = Reader::open(seg.name());
  EXPECT_EQ(r.stats().state, "closed");
  Position p;
  EXPECT_EQ(r.get("spot", "a3", "SOL", p), ReadStatus::ok);  // still readable when closed
  auto w = Writer::open(test::small_config(seg.name(), 16));
  EXPECT_EQ(r.stats().state, "ready");
  EXPECT_EQ(r.stats().writer.restarts, 0u);  // a clean close is not a crash
  EXPECT_EQ(r.stats().live, 10u);
  EXPECT_EQ(w->upsert(*w->make_update("spot", "a3", "SOL", {{"qty", "9"}})).status,
            ApplyStatus::updated);
}

// The LRU order lives in the writer's private memory, so a killed writer takes it along: its
// successor rebuilds it from the slots (updated_at, then version). After a SIGKILL, evictions
// must still take positions in the order of their last change, across namespaces, including
// positions whose last change reordered them.
TEST(ReattachLruTest, AfterAKillEvictionsFollowTheOrderOfTheLastChanges) {
  test::ScratchSegment seg("lru_kill");
  // Even accounts are in spot, odd ones in marks. Inserted a0..a7, then a0, a3, a1 changed again:
  // the order of last change, least recent first.
  auto ns_of = [](int i) { return std::string(i % 2 == 0 ? "spot" : "marks"); };
  const std::vector<int> order = {2, 4, 5, 6, 7, 0, 3, 1};
  const pid_t child = test::fork_child([&] {
    auto w = Writer::open(test::small_config(seg.name(), 8));
    auto put = [&](int i, const char* v) {
      const std::pair<std::string_view, std::string_view> f[] = {{i % 2 == 0 ? "qty" : "bid", v}};
      w->upsert(*w->make_update(ns_of(i), "a" + std::to_string(i), "SOL", f));
    };
    for (int i = 0; i < 8; ++i) put(i, "1");
    put(0, "2");
    put(3, "2");
    put(1, "2");
    ::kill(::getpid(), SIGKILL);
    return 0;
  });
  ASSERT_EQ(test::wait_child(child), 128 + SIGKILL);
  auto w = Writer::open(test::small_config(seg.name(), 8));
  ASSERT_TRUE(w->stats().reattached);
  Reader r = Reader::open(seg.name());
  Position p;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const ApplyResult res =
        w->upsert(*w->make_update("spot", "new" + std::to_string(k), "SOL", {{"qty", "1"}}));
    ASSERT_TRUE(res.evicted) << k;
    const int gone = order[k];
    EXPECT_EQ(r.get(ns_of(gone), "a" + std::to_string(gone), "SOL", p), ReadStatus::not_found)
        << "eviction " << k << " should have taken a" << gone;
    for (std::size_t later = k + 1; later < order.size(); ++later) {
      const int kept = order[later];
      EXPECT_NE(r.get(ns_of(kept), "a" + std::to_string(kept), "SOL", p), ReadStatus::not_found)
          << "a" << kept << " evicted too early (eviction " << k << ")";
    }
  }
}
