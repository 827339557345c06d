// The de-duplication window's crash protocol (writer/ingest/trade_window.hpp, T1-T3), with the
// states a kill leaves built by hand: a window abandoned between T1 and T3 is resolved at the
// next open by the position's version.
#include "writer/ingest/trade_window.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

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
    w.begin(TradeWindow::hash(0, "T" + std::to_string(i)), key(), 0);
    w.commit();
  }
  EXPECT_EQ(w.recorded(), 4u);
  EXPECT_FALSE(w.contains(TradeWindow::hash(0, "T0")));
  EXPECT_FALSE(w.contains(TradeWindow::hash(0, "T1")));
  for (int i = 2; i < 6; ++i)
    EXPECT_TRUE(w.contains(TradeWindow::hash(0, "T" + std::to_string(i))));
  // The namespace is part of the identity: the same id in another book is another trade.
  EXPECT_FALSE(w.contains(TradeWindow::hash(1, "T5")));
}

TEST(TradeWindowTest, AFillThatLandedBeforeTheKillIsRememberedAtTheNextOpen) {
  test::ScratchSegment seg("tw_landed");
  {
    TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
    w.begin(TradeWindow::hash(0, "T1"), key(), /*old_version=*/41);  // T1, then "killed"
  }
  // The position now holds another version: T2 happened.
  TradeWindow w(seg.name(), 7, 16, [](const PositionKey& k) {
    EXPECT_EQ(k.account_view(), "w1");
    EXPECT_EQ(k.instrument_view(), "SOL");
    return 42;
  });
  EXPECT_TRUE(w.restored());
  EXPECT_TRUE(w.contains(TradeWindow::hash(0, "T1")));
  EXPECT_EQ(w.recorded(), 1u);
}

TEST(TradeWindowTest, AFillTheKillUndidIsForgottenAtTheNextOpen) {
  test::ScratchSegment seg("tw_undone");
  {
    TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
    w.begin(TradeWindow::hash(0, "T1"), key(), /*old_version=*/0);  // a new position, killed
  }
  TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });  // still absent
  EXPECT_FALSE(w.contains(TradeWindow::hash(0, "T1")));
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
    const TradeWindow::Fill fills[] = {{TradeWindow::hash(0, "B1"), &sol, 10},
                                       {TradeWindow::hash(0, "B1-cash"), &usdc, 20},
                                       {TradeWindow::hash(0, "B2"), &eth, 0}};
    w.begin(fills);  // T1, then "killed" after the SOL and USDC writes, before ETH's
  }
  TradeWindow w(seg.name(), 7, 16, [](const PositionKey& k) -> std::uint64_t {
    if (k.instrument_view() == "SOL") return 11;
    if (k.instrument_view() == "USDC") return 21;
    return 0;  // ETH: never written
  });
  EXPECT_TRUE(w.contains(TradeWindow::hash(0, "B1")));
  EXPECT_TRUE(w.contains(TradeWindow::hash(0, "B1-cash")));
  EXPECT_FALSE(w.contains(TradeWindow::hash(0, "B2")));
  EXPECT_EQ(w.recorded(), 2u);
  // Killed inside T3, after head moved: the open only clears what is pending.
  {
    TradeWindow x(seg.name(), 9, 16, [](const PositionKey&) { return 0; });
    const TradeWindow::Fill fills[] = {{TradeWindow::hash(0, "C1"), &sol, 0},
                                       {TradeWindow::hash(0, "C2"), &usdc, 0}};
    x.begin(fills);
    x.commit();
    x.begin(fills);  // as if T3's clearing had not happened: the hashes sit below head
  }
  TradeWindow y(seg.name(), 9, 16, [](const PositionKey&) { return 99; });
  EXPECT_EQ(y.recorded(), 2u);  // not recorded twice
  EXPECT_TRUE(y.contains(TradeWindow::hash(0, "C2")));
}

TEST(TradeWindowTest, AWindowOfAnotherGenerationStartsEmpty) {
  test::ScratchSegment seg("tw_gen");
  {
    TradeWindow w(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
    w.begin(TradeWindow::hash(0, "T1"), key(), 0);
    w.commit();
  }
  TradeWindow same(seg.name(), 7, 16, [](const PositionKey&) { return 0; });
  EXPECT_TRUE(same.contains(TradeWindow::hash(0, "T1")));
  TradeWindow other(seg.name(), 8, 16, [](const PositionKey&) { return 0; });
  EXPECT_FALSE(other.restored());
  EXPECT_FALSE(other.contains(TradeWindow::hash(0, "T1")));
}

}  // namespace
}  // namespace poscache::ingest
