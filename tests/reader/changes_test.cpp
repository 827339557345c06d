// Reader::changes over the change ring (shm/change_ring.hpp): every kind of change recorded in
// order with its key and version, and visible to get() once its record is; a reader the ring
// lapped, one that follows across a writer killed with -9, one with a position from nowhere, and
// hand-built cells (mid-write, overwritten, a record's second cell overwritten, undecodable),
// each answered with a status that says resync and where, never with a wrong record.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <thread>
#include <vector>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/change_ring.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace std::chrono_literals;

namespace {

class ChangesTest : public ::testing::Test {
 protected:
  test::ScratchSegment seg{"changes"};
  std::unique_ptr<Writer> w = Writer::open(test::small_config(seg.name(), 64));
  Reader r = Reader::open(seg.name());
  std::vector<Change> got;

  ApplyResult put(const char* ns, const std::string& a, const std::string& i, const char* v) {
    const std::string_view n(ns);
    const char* field = n == "marks" ? "bid" : n == "moonwell" ? "collateral_amount" : "qty";
    return w->upsert(test::must(w->make_update(ns, a, i, {{field, v}})));
  }
  // The changes from `from`, expected ok; returns next.
  std::uint64_t follow(std::uint64_t from) {
    const ChangesResult res = r.changes(from, got);
    EXPECT_EQ(res.status, ChangeStatus::ok) << to_string(res.status);
    return res.next;
  }
  // The ring's cells and head, writable behind the writer's back.
  struct Ring {
    test::RwMapping m;
    shm::SegmentHeader* h;
    shm::ChangeCell* cells;
    std::uint64_t mask;
    explicit Ring(const std::string& name) : m(name) {
      h = reinterpret_cast<shm::SegmentHeader*>(m.base());
      const shm::Geometry g = shm::geometry_for(h->capacity);
      cells = reinterpret_cast<shm::ChangeCell*>(m.base() + g.ring_offset);
      mask = g.ring_cells - 1;
    }
    shm::ChangeCell& at(std::uint64_t pos) const { return cells[pos & mask]; }
  };
};

}  // namespace

TEST_F(ChangesTest, RecordsEveryKindOfChangeInOrderWithItsKeyAndVersion) {
  const std::uint64_t start = r.change_position();
  EXPECT_EQ(r.change_ring_cells(), shm::ring_cells_for(64));
  const ApplyResult ins = put("spot", "alice", "SOL", "1");
  const ApplyResult upd = put("spot", "alice", "SOL", "2");
  put("marks", "alice", "SOL", "140");
  const ApplyResult gone = w->erase(test::must(w->make_key("spot", "alice", "SOL")));
  w->invalidate_account("alice", std::nullopt);
  put("moonwell", "bob", "USDC", "5");
  w->invalidate_namespace(*w->namespace_id("moonwell"));
  w->invalidate_matching("spot:*:BTC");
  w->invalidate_all();
  const std::uint64_t next = follow(start);
  ASSERT_EQ(got.size(), 9u);
  const ChangeKind kinds[] = {ChangeKind::inserted,
                              ChangeKind::updated,
                              ChangeKind::inserted,
                              ChangeKind::erased,
                              ChangeKind::invalidated_account,
                              ChangeKind::inserted,
                              ChangeKind::invalidated_namespace,
                              ChangeKind::invalidated_glob,
                              ChangeKind::invalidated_all};
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].kind, kinds[i]) << i;
  EXPECT_EQ(got[0].version, ins.version);
  EXPECT_EQ(got[1].version, upd.version);
  EXPECT_EQ(got[0].account_view(), "alice");
  EXPECT_EQ(got[0].instrument_view(), "SOL");
  EXPECT_EQ(got[0].ns, *r.namespace_id("spot"));
  EXPECT_EQ(got[2].ns, *r.namespace_id("marks"));
  EXPECT_GT(got[3].version, gone.version);  // the erase's own version, above the position's
  EXPECT_EQ(got[4].account_view(), "alice");
  EXPECT_EQ(got[4].ns, kAnyNamespace);
  EXPECT_EQ(got[6].ns, *r.namespace_id("moonwell"));
  EXPECT_EQ(got[7].pattern_view(), "spot:*:BTC");
  for (std::size_t i = 1; i < got.size(); ++i) {
    EXPECT_GT(got[i].position, got[i - 1].position);
    EXPECT_GE(got[i].at_ns, got[i - 1].at_ns);
  }
  EXPECT_EQ(next, r.change_position());
  // What covers() says about a key, for a follower that keeps its own copy.
  EXPECT_TRUE(got[4].covers(0, "spot", "alice", "BTC"));
  EXPECT_FALSE(got[4].covers(0, "spot", "bob", "BTC"));
  EXPECT_TRUE(got[7].covers(0, "spot", "bob", "BTC"));
  EXPECT_FALSE(got[7].covers(0, "spot", "bob", "SOL"));
  EXPECT_TRUE(got[8].covers(1, "moonwell", "x", "y"));
  EXPECT_TRUE(got[0].covers(0, "spot", "alice", "SOL"));
  EXPECT_FALSE(got[0].covers(2, "marks", "alice", "SOL"));
  // Nothing new: ok and empty, at the same place.
  EXPECT_EQ(follow(next), next);
  EXPECT_TRUE(got.empty());
}

TEST_F(ChangesTest, EvictionsAndExpiriesAreRecordedAsTheRemovalsOfTheirKeys) {
  test::ScratchSegment seg2("changes_expiry");
  WriterConfig c = test::small_config(seg2.name(), 4);
  c.namespaces[2].stale_after = 1ms;  // marks
  c.namespaces[2].expire_after = 1ms;
  auto w2 = Writer::open(c);
  Reader r2 = Reader::open(seg2.name());
  const std::uint64_t start = r2.change_position();
  for (int i = 0; i < 5; ++i) {  // the fifth evicts the first
    w2->upsert(test::must(w2->make_update("spot", "a" + std::to_string(i), "SOL", {{"qty", "1"}})));
  }
  w2->upsert(test::must(w2->make_update("marks", "m", "SOL", {{"bid", "1"}})));  // evicts a1
  std::this_thread::sleep_for(5ms);
  w2->tick();
  ASSERT_EQ(r2.changes(start, got).status, ChangeStatus::ok);
  std::vector<std::string> seen;
  for (const Change& ch : got)
    seen.push_back(std::string(to_string(ch.kind)) + " " + std::string(ch.account_view()));
  const std::vector<std::string> want = {"inserted a0", "inserted a1", "inserted a2",
                                         "inserted a3", "evicted a0",  "inserted a4",
                                         "evicted a1",  "inserted m",  "expired m"};
  EXPECT_EQ(seen, want);
}

TEST_F(ChangesTest, AChangeIsVisibleToGetOnceItsRecordIs) {
  std::uint64_t at = r.change_position();
  Position p;
  for (int i = 0; i < 200; ++i) {
    put("spot", "acct" + std::to_string(i % 7), "SOL", std::to_string(i).c_str());
    at = follow(at);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(r.get(0, got[0].account_view(), got[0].instrument_view(), p), ReadStatus::ok);
    EXPECT_GE(p.version, got[0].version);
  }
}

TEST_F(ChangesTest, ABatchIsPublishedAtItsEndAndLongTextsSpanCells) {
  const std::uint64_t start = r.change_position();
  const std::string long_account(kMaxAccountLen, 'a');
  const std::string long_instrument(kMaxInstrumentLen, 'b');
  const std::string long_glob = "spot:" + std::string(240, '?') + "*";
  std::vector<Op> ops;
  ops.emplace_back(
      test::must(w->make_update("spot", long_account, long_instrument, {{"qty", "1"}})));
  ops.emplace_back(test::must(w->make_update("spot", "x", "y", {{"qty", "1"}})));
  ops.emplace_back(InvalidateMatching{long_glob});
  ASSERT_TRUE(w->apply(ops).applied);
  ASSERT_EQ(r.changes(start, got).status, ChangeStatus::ok);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].account_view(), long_account);
  EXPECT_EQ(got[0].instrument_view(), long_instrument);
  EXPECT_EQ(got[1].position, got[0].position + 2);  // 128 bytes of key: two cells
  EXPECT_EQ(got[2].pattern_view(), long_glob);      // 246 bytes: three cells
  EXPECT_EQ(r.change_position(), got[2].position + 3);
  // At most `max` at a time, continuing where the last call stopped.
  ChangesResult res = r.changes(start, got, 2);
  ASSERT_EQ(res.status, ChangeStatus::ok);
  EXPECT_EQ(got.size(), 2u);
  res = r.changes(res.next, got, 2);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].pattern_view(), long_glob);
}

TEST_F(ChangesTest, AReaderTheRingLappedIsToldWhereToResync) {
  const std::uint64_t start = r.change_position();
  const std::uint64_t cells = r.change_ring_cells();
  for (std::uint64_t i = 0; i <= cells; ++i) put("spot", "a" + std::to_string(i % 50), "SOL", "1");
  const ChangesResult res = r.changes(start, got);
  EXPECT_EQ(res.status, ChangeStatus::lapped);
  EXPECT_EQ(res.next, r.change_position());
  EXPECT_TRUE(got.empty());
  // From there on it follows again.
  put("spot", "z", "SOL", "1");
  EXPECT_EQ(follow(res.next), r.change_position());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].account_view(), "z");
  // A position the ring never reached: from another generation, or made up.
  const ChangesResult ahead = r.changes(r.change_position() + 5, got);
  EXPECT_EQ(ahead.status, ChangeStatus::invalid_position);
  EXPECT_EQ(ahead.next, r.change_position());
}

TEST_F(ChangesTest, HandBuiltCellsThatAreNotTheRecordAtTheirPositionAreReportedNotRead) {
  const std::uint64_t start = r.change_position();
  put("spot", "a", "SOL", "1");
  put("spot", std::string(60, 'k'), std::string(60, 'i'), "1");  // two cells
  put("spot", "c", "SOL", "1");
  Ring ring(seg.name());
  auto lapped_at = [&](std::uint64_t from) {
    const ChangesResult res = r.changes(from, got);
    return res.status == ChangeStatus::lapped && res.next == r.change_position();
  };
  ASSERT_EQ(follow(start), start + 4);
  // 1. Mid-write: the writer has begun overwriting the cell (CW1 done, CW4 not yet).
  std::uint64_t& first = ring.at(start).seq;
  first = shm::kCellWriting;
  EXPECT_TRUE(lapped_at(start));
  // 2. Overwritten: the cell holds the record a full ring later.
  first = start + ring.mask + 2;
  EXPECT_TRUE(lapped_at(start));
  first = start + 1;
  ASSERT_EQ(follow(start), start + 4);
  // 3. A two-cell record whose second cell was overwritten: the first alone is not handed out.
  std::uint64_t& second = ring.at(start + 2).seq;
  second = shm::kCellWriting;
  EXPECT_TRUE(lapped_at(start + 1));
  EXPECT_TRUE(lapped_at(start));  // what came before it is handed out, then the lap
  EXPECT_EQ(got.size(), 1u);
  second = start + 3;
  ASSERT_EQ(follow(start + 1), start + 4);
  // 4. A whole record that cannot be one (a corrupt segment): an unknown kind, a cell count that
  //    disagrees with its cells, a key longer than the format allows.
  std::uint64_t& meta = ring.at(start + 3).word[2];
  const std::uint64_t saved = meta;
  for (const std::uint64_t bad : {saved & ~0xFFull, (saved & ~0xFF00ull) | (2ull << 8),
                                  (saved & ~(0xFFull << 32)) | (65ull << 32)}) {
    meta = bad;
    EXPECT_TRUE(lapped_at(start + 3)) << std::hex << bad;
  }
  meta = saved;
  ASSERT_EQ(follow(start + 3), start + 4);
  EXPECT_EQ(got[0].account_view(), "c");
  // 5. A head beyond what was written (a torn head would be this): the cells there are not the
  //    positions, so they are reported, never decoded.
  shm::store_release(&ring.h->ring_head, start + 6);
  EXPECT_EQ(r.changes(start + 4, got).status, ChangeStatus::lapped);
}

TEST_F(ChangesTest, AWriterWithoutTheRingSaysSoAndARetiredSegmentToo) {
  test::ScratchSegment seg2("changes_off");
  WriterConfig c = test::small_config(seg2.name(), 16);
  c.change_ring = false;
  auto w2 = Writer::open(c);
  Reader r2 = Reader::open(seg2.name());
  w2->upsert(test::must(w2->make_update("spot", "a", "SOL", {{"qty", "1"}})));
  EXPECT_EQ(r2.change_ring_cells(), 0u);
  EXPECT_EQ(r2.changes(0, got).status, ChangeStatus::unavailable);
  w2.reset();
  c.fresh = true;  // a new generation: the old one's readers are told
  c.change_ring = true;
  auto w3 = Writer::open(c);
  EXPECT_EQ(r2.changes(0, got).status, ChangeStatus::retired);
  ASSERT_EQ(r2.follow(), FollowResult::reattached);
  EXPECT_EQ(r2.changes(r2.change_position(), got).status, ChangeStatus::ok);
}

TEST(ChangesRestartTest, AReaderFollowingAcrossAKilledWriterIsToldToResync) {
  test::ScratchSegment seg("changes_kill");
  {
    auto w = Writer::open(test::small_config(seg.name(), 16));
    w->upsert(test::must(w->make_update("spot", "a", "SOL", {{"qty", "1"}})));
  }  // closed cleanly: its successor adds no marker
  auto w = Writer::open(test::small_config(seg.name(), 16));
  Reader r = Reader::open(seg.name());
  const std::uint64_t at = r.change_position();
  std::vector<Change> got;
  w->upsert(test::must(w->make_update("spot", "b", "SOL", {{"qty", "1"}})));
  ASSERT_EQ(r.changes(at, got).status, ChangeStatus::ok);
  ASSERT_EQ(got.size(), 1u);
  const std::uint64_t before_kill = r.change_position();
  w.reset();
  const pid_t child = test::fork_child([&] {
    auto wk = Writer::open(test::small_config(seg.name(), 16));
    wk->upsert(test::must(wk->make_update("spot", "c", "SOL", {{"qty", "1"}})));
    ::kill(::getpid(), SIGKILL);
    return 0;
  });
  ASSERT_EQ(test::wait_child(child), 128 + SIGKILL);
  auto w2 = Writer::open(test::small_config(seg.name(), 16));
  w2->upsert(test::must(w2->make_update("spot", "d", "SOL", {{"qty", "1"}})));
  const ChangesResult res = r.changes(before_kill, got);
  EXPECT_EQ(res.status, ChangeStatus::writer_restarted);
  ASSERT_EQ(got.size(), 1u);  // what came before the marker
  EXPECT_EQ(got[0].account_view(), "c");
  ASSERT_EQ(r.changes(res.next, got).status, ChangeStatus::ok);  // after the resync: from next
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].account_view(), "d");
}

TEST_F(ChangesTest, WaitForChangesWakesWhenTheRingMoves) {
  const std::uint64_t at = r.change_position();
  EXPECT_FALSE(r.wait_for_changes(at, 1ms));
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    put("spot", "a", "SOL", "1");
    w->tick();  // wakes waiting readers
  });
  EXPECT_TRUE(r.wait_for_changes(at, 10s));
  t.join();
  EXPECT_EQ(follow(at), r.change_position());
  EXPECT_EQ(got.size(), 1u);
}
