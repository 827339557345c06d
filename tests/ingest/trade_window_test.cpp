// The de-duplication window's crash protocol (writer/ingest/trade_window.hpp, TW1-TW3), with the
// states a kill leaves built by hand: a window abandoned between TW1 and TW3 is resolved at the
// next open by the position's version.
#include "writer/ingest/trade_window.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <unordered_set>
#include <vector>

#include "shm/hash.hpp"
#include "test_util.hpp"

namespace poscache::ingest {
namespace {

PositionKey key() {
  PositionKey k;
  k.set(0, "w1", "SOL");
  return k;
}

TEST(TradeWindowTest, RemembersTheLastCapacityTradeIdsAndForgetsTheOldest) {
  test::ScratchSegment seg("tw_ring");
  TradeWindow w(seg.name(), 7, 4, [](const PositionKey&) { return 0; });
  for (int i = 0; i < 6; ++i) {
    w.begin(TradeWindow::id(0, "T" + std::to_string(i)), key(), 0);
    w.commit(1);
  }
  EXPECT_EQ(w.recorded(), 4u);
  EXPECT_FALSE(w.contains(TradeWindow::id(0, "T0")));
  EXPECT_FALSE(w.contains(TradeWindow::id(0, "T1")));
  for (int i = 2; i < 6; ++i) EXPECT_TRUE(w.contains(TradeWindow::id(0, "T" + std::to_string(i))));
  // The namespace is part of the identity: the same id in another book is another trade.
  EXPECT_FALSE(w.contains(TradeWindow::id(1, "T5")));
}

TEST(TradeWindowTest, AFillThatLandedBeforeTheKillIsRememberedAtTheNextOpen) {
  test::ScratchSegment seg("tw_landed");
  {
    TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
    w.begin(TradeWindow::id(0, "T1"), key(), /*old_version=*/41);  // T1, then "killed"
  }
  // The position now holds another version: TW2 happened.
  TradeWindow w(seg.name(), 7, 16, [](const PositionKey& k) {
    EXPECT_EQ(k.account_view(), "w1");
    EXPECT_EQ(k.instrument_view(), "SOL");
    return 42;
  });
  EXPECT_TRUE(w.restored());
  EXPECT_TRUE(w.contains(TradeWindow::id(0, "T1")));
  EXPECT_EQ(w.recorded(), 1u);
}

TEST(TradeWindowTest, AFillTheKillUndidIsForgottenAtTheNextOpen) {
  test::ScratchSegment seg("tw_undone");
  {
    TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
    w.begin(TradeWindow::id(0, "T1"), key(), /*old_version=*/0);  // a new position, killed
  }
  TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });  // still absent
  EXPECT_FALSE(w.contains(TradeWindow::id(0, "T1")));
  EXPECT_EQ(w.recorded(), 0u);
}

// A batch's fills, in flight together: at the next open each is remembered if and only if its
// own position moved (a kill mid-batch leaves some positions written and others not).
TEST(TradeWindowTest, ABatchKilledMidWayRemembersExactlyTheFillsThatLanded) {
  test::ScratchSegment seg("tw_batch");
  PositionKey sol = key(), usdc, eth;
  usdc.set(0, "w1", "USDC");
  eth.set(0, "w2", "ETH");
  {
    TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
    const TradeWindow::Fill fills[] = {{TradeWindow::id(0, "B1"), &sol, 10},
                                       {TradeWindow::id(0, "B1-cash"), &usdc, 20},
                                       {TradeWindow::id(0, "B2"), &eth, 0}};
    w.begin(fills);  // TW1, then "killed" after the SOL and USDC writes, before ETH's
  }
  TradeWindow w(seg.name(), 7, 16, [](const PositionKey& k) -> std::uint64_t {
    if (k.instrument_view() == "SOL") return 11;
    if (k.instrument_view() == "USDC") return 21;
    return 0;  // ETH: never written
  });
  EXPECT_TRUE(w.contains(TradeWindow::id(0, "B1")));
  EXPECT_TRUE(w.contains(TradeWindow::id(0, "B1-cash")));
  EXPECT_FALSE(w.contains(TradeWindow::id(0, "B2")));
  EXPECT_EQ(w.recorded(), 2u);
  // Killed inside TW3, after head moved: the open only clears what is pending.
  {
    TradeWindow x(seg.name(), 9, 16, [](const PositionKey&) { return 0; });
    const TradeWindow::Fill fills[] = {{TradeWindow::id(0, "C1"), &sol, 0},
                                       {TradeWindow::id(0, "C2"), &usdc, 0}};
    x.begin(fills);
    x.commit(1);
    x.begin(fills);  // as if TW3's clearing had not happened: the hashes sit below head
  }
  TradeWindow y(seg.name(), 9, 16, [](const PositionKey&) { return 99; });
  EXPECT_EQ(y.recorded(), 2u);  // not recorded twice
  EXPECT_TRUE(y.contains(TradeWindow::id(0, "C2")));
}

TEST(TradeWindowTest, AWindowOfAnotherGenerationStartsEmpty) {
  test::ScratchSegment seg("tw_gen");
  {
    TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
    w.begin(TradeWindow::id(0, "T1"), key(), 0);
    w.commit(1);
  }
  TradeWindow same(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
  EXPECT_TRUE(same.contains(TradeWindow::id(0, "T1")));
  TradeWindow other(seg.name(), 8, 16, [](const PositionKey&) { return 0; });
  EXPECT_FALSE(other.restored());
  EXPECT_FALSE(other.contains(TradeWindow::id(0, "T1")));
}

// What the Redis sync reads (writer/trade_log.hpp): each trade with the version its fill wrote
// and its position, also for a fill a kill left between TW1 and TW3 (the version it took).
TEST(TradeWindowTest, TheLogCarriesEachTradesVersionAndPosition) {
  test::ScratchSegment seg("tw_log");
  {
    TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
    w.begin(TradeWindow::id(0, "T1"), key(), 0);
    w.commit(42);
    w.begin(TradeWindow::id(0, "T2"), key(), 42);  // killed after T2 wrote version 77
  }
  TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 77; });
  const detail::TradeLog log = w.log();
  ASSERT_EQ(*log.head, 2u);
  EXPECT_EQ(*log.pending_count, 0u);
  const std::uint64_t kh = shm::key_hash(0, "w1", "SOL");
  EXPECT_EQ(log.ring[0].id_hash, detail::trade_id_hash("T1"));
  EXPECT_EQ(log.ring[0].version, 42u);
  EXPECT_EQ(log.ring[0].key_hash, kh);
  EXPECT_EQ(log.ring[1].id_hash, detail::trade_id_hash("T2"));
  EXPECT_EQ(log.ring[1].version, 77u);
  EXPECT_EQ(log.ring[1].key_hash, kh);
}

// What another writer applied (Redis's trade sets) is refused here too, per namespace; what
// this window knew stays; beyond its capacity the newest versions are kept.
TEST(TradeWindowTest, LoadTakesBackTradeIdsAnotherWriterApplied) {
  test::ScratchSegment seg("tw_load");
  TradeWindow w(seg.name(), 7, 4, [](const PositionKey&) { return 0; });
  w.begin(TradeWindow::id(0, "T1"), key(), 0);
  w.commit(5);
  const auto h = [](std::string_view id) { return detail::trade_id_hash(id); };
  EXPECT_EQ(w.load({{0, h("T1"), 5}, {1, h("T1"), 6}, {0, h("T9"), 3}}), 2u);
  EXPECT_TRUE(w.contains(TradeWindow::id(0, "T1")));
  EXPECT_TRUE(w.contains(TradeWindow::id(1, "T1")));
  EXPECT_TRUE(w.contains(TradeWindow::id(0, "T9")));
  EXPECT_FALSE(w.contains(TradeWindow::id(1, "T9")));
  EXPECT_EQ(w.recorded(), 3u);
  // Six more than it holds: the four newest stay.
  std::vector<TradeWindow::Known> many;
  for (int i = 0; i < 6; ++i) many.push_back({2, h("M" + std::to_string(i)), 100u - i});
  EXPECT_EQ(w.load(many), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(w.contains(TradeWindow::id(2, "M" + std::to_string(i))));
  EXPECT_FALSE(w.contains(TradeWindow::id(2, "M4")));
  EXPECT_FALSE(w.contains(TradeWindow::id(2, "M5")));
  EXPECT_EQ(w.recorded(), 4u);
}

// The window's lookup set against std::unordered_set, over random inserts, erases and lookups
// with keys crowded into few home slots (small masks: long probe runs that wrap around the end).
TEST(TradeWindowTest, ItsHashSetAgreesWithUnorderedSet) {
  std::mt19937_64 rng(7);
  for (const std::uint64_t max_keys : {1u, 3u, 64u, 1000u}) {
    HashSet64 set(max_keys);
    std::unordered_set<std::uint64_t> ref;
    std::vector<std::uint64_t> pool;
    for (std::uint64_t i = 0; i < 4 * max_keys + 8; ++i)
      pool.push_back((rng() % 8) * 4096 + (rng() % 4) + 1);  // few distinct low bits
    for (int op = 0; op < 200'000; ++op) {
      const std::uint64_t k = pool[rng() % pool.size()];
      switch (rng() % 3) {
        case 0:
          if (ref.size() < max_keys || ref.count(k) != 0) {
            set.insert(k);
            ref.insert(k);
          }
          break;
        case 1:
          set.erase(k);
          ref.erase(k);
          break;
        default:
          ASSERT_EQ(set.contains(k), ref.count(k) != 0) << "max " << max_keys << " op " << op;
      }
    }
    for (const std::uint64_t k : pool) ASSERT_EQ(set.contains(k), ref.count(k) != 0);
  }
}

}  // namespace
}  // namespace poscache::ingest
