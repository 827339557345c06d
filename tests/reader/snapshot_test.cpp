// Reader::snapshot and positions_of over the account index (shm/accounts.hpp): the positions an
// account has, as a scan finds them, through inserts, updates, erases, invalidations and
// evictions; and hand-built mid-change states (a stripe left odd, the index epoch odd, an
// entry whose count disagrees with its list), each answered in bounded time with a typed status
// and never with a partial list.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/accounts.hpp"
#include "test_util.hpp"

using namespace poscache;

namespace {

// "ns:instrument=value0" of each position, sorted: what an account holds, order aside.
std::multiset<std::string> holdings(const Reader& r, const std::vector<Position>& ps) {
  std::multiset<std::string> out;
  for (const Position& p : ps) {
    out.insert(r.namespaces()[p.ns].name + ":" + std::string(p.instrument_view()) + "=" +
               format_decimal(p.values[0], r.namespaces()[p.ns].fields[0].scale));
  }
  return out;
}

std::multiset<std::string> scanned(const Reader& r, const std::string& account) {
  ScanFilter f;
  f.account = account;
  std::vector<Position> ps;
  r.scan(f, [&](const Position& p) { ps.push_back(p); });
  return holdings(r, ps);
}

class SnapshotTest : public ::testing::Test {
 protected:
  test::ScratchSegment seg{"snap"};
  std::unique_ptr<Writer> w = Writer::open(test::small_config(seg.name(), 64));
  Reader r = Reader::open(seg.name());

  void put(const char* ns, const std::string& a, const std::string& i, const char* qty) {
    const std::string_view n(ns);
    const char* field = n == "marks" ? "bid" : n == "moonwell" ? "collateral_amount" : "qty";
    const ApplyStatus st = w->upsert(test::must(w->make_update(ns, a, i, {{field, qty}}))).status;
    ASSERT_TRUE(st == ApplyStatus::inserted || st == ApplyStatus::updated) << to_string(st);
  }
  // The stripe word of `account` and the epoch, writable behind the writer's back.
  std::uint64_t& stripe_of(test::RwMapping& m, std::string_view account) {
    const auto& h = *reinterpret_cast<const shm::SegmentHeader*>(m.base());
    const shm::Geometry g = shm::geometry_for(h.capacity);
    auto* stripes = reinterpret_cast<std::uint64_t*>(m.base() + g.stripes_offset);
    return stripes[shm::account_hash(account) & (g.account_stripes - 1)];
  }
};

}  // namespace

TEST_F(SnapshotTest, ListsWhatAScanFindsThroughEveryKindOfChange) {
  std::vector<Position> snap;
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::not_found);
  put("spot", "alice", "SOL", "1");
  put("spot", "alice", "BTC", "2");
  put("marks", "alice", "SOL", "140");
  put("moonwell", "alice", "USDC", "5");
  put("spot", "bob", "SOL", "7");
  ASSERT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  EXPECT_EQ(snap.size(), 4u);
  EXPECT_EQ(holdings(r, snap), scanned(r, "alice"));
  for (const Position& p : snap) EXPECT_EQ(p.account_view(), "alice");
  put("spot", "alice", "SOL", "3");  // an update keeps the list
  ASSERT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  EXPECT_EQ(holdings(r, snap), scanned(r, "alice"));
  EXPECT_EQ(holdings(r, snap).count("spot:SOL=3.000000000000000000"), 1u);
  w->erase(test::must(w->make_key("spot", "alice", "BTC")));  // the middle of the list
  ASSERT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  EXPECT_EQ(snap.size(), 3u);
  EXPECT_EQ(holdings(r, snap), scanned(r, "alice"));
  w->invalidate_account("alice", r.namespace_id("marks"));
  ASSERT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  EXPECT_EQ(holdings(r, snap), scanned(r, "alice"));
  EXPECT_EQ(snap.size(), 2u);
  w->invalidate_account("alice");
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::not_found);
  EXPECT_TRUE(snap.empty());
  EXPECT_TRUE(r.positions_of("alice").empty());
  ASSERT_EQ(r.snapshot("bob", snap), ReadStatus::ok);
  EXPECT_EQ(snap.size(), 1u);
  EXPECT_EQ(r.positions_of("bob").size(), 1u);
  EXPECT_EQ(r.snapshot("", snap), ReadStatus::bad_key);
  EXPECT_EQ(r.snapshot(std::string(65, 'a'), snap), ReadStatus::bad_key);
}

// Many accounts coming and going (entries inserted and erased, later entries shifted back,
// slots evicted and reused): every account's snapshot equals what a scan finds.
TEST_F(SnapshotTest, AgreesWithAScanForEveryAccountUnderChurnAndEviction) {
  std::mt19937_64 rng(11);
  std::vector<Position> snap;
  for (int round = 0; round < 6000; ++round) {
    const std::string a = "acct" + std::to_string(rng() % 40);
    const std::string i = "I" + std::to_string(rng() % 6);
    const std::uint64_t k = rng() % 100;
    const char* ns = (rng() & 1) ? "spot" : "marks";
    if (k < 60) {
      put(ns, a, i, std::to_string(round).c_str());  // past 64 live: evictions
    } else if (k < 90) {
      w->erase(test::must(w->make_key(ns, a, i)));
    } else if (k < 96) {
      w->invalidate_account(a);
    } else if (k < 98) {
      w->invalidate_matching("spot:acct" + std::to_string(rng() % 4) + "*:*");
    } else if (k < 99) {
      w->invalidate_namespace(*r.namespace_id(ns));
    } else {
      std::vector<Op> ops;  // a batch: an insert, an erase and a removal of a whole account
      ops.emplace_back(test::must(w->make_update("spot", a, "Z", {{"qty", "1"}})));
      ops.emplace_back(Erase{test::must(w->make_key("spot", a, i))});
      ops.emplace_back(InvalidateAccount{"acct" + std::to_string(rng() % 40), std::nullopt});
      ASSERT_TRUE(w->apply(ops).applied);
    }
    if (round % 50 == 0) {
      for (int n = 0; n < 40; ++n) {
        const std::string acct = "acct" + std::to_string(n);
        const ReadStatus st = r.snapshot(acct, snap);
        const auto expect = scanned(r, acct);
        if (expect.empty()) {
          ASSERT_EQ(st, ReadStatus::not_found) << acct << " round " << round;
        } else {
          ASSERT_EQ(st, ReadStatus::ok) << acct << " round " << round;
          ASSERT_EQ(holdings(r, snap), expect) << acct << " round " << round;
        }
      }
    }
  }
  EXPECT_GT(r.stats().evictions, 0u);
}

// A change left open (the writer stopped or died between AW1 and AW4): snapshots of that account
// are a bounded writer_busy while the heartbeat beats (or the writer lives) and writer_dead
// once it stops and the writer is gone (here: closed, its lock free); never a list.
// positions_of falls back to a scan. Other accounts are unaffected.
TEST_F(SnapshotTest, AStripeLeftOddIsBusyThenDeadNeverAList) {
  put("spot", "alice", "SOL", "1");
  put("spot", "alice", "BTC", "2");
  put("spot", "bob", "SOL", "7");
  w->heartbeat();
  test::RwMapping m(seg.name());
  std::uint64_t& st = stripe_of(m, "alice");
  const std::uint64_t even = st;
  ASSERT_EQ(even % 2, 0u);
  st = even + 1;
  std::vector<Position> snap;
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_busy);
  EXPECT_TRUE(snap.empty());
  EXPECT_EQ(r.positions_of("alice").size(), 2u) << "positions_of falls back to a scan";
  if (&stripe_of(m, "bob") != &st) {
    EXPECT_EQ(r.snapshot("bob", snap), ReadStatus::ok);
  }
  auto& h = *reinterpret_cast<shm::SegmentHeader*>(m.base());
  const std::int64_t beat = h.heartbeat_ns;
  h.heartbeat_ns = beat - 3'600'000'000'000;                      // an hour without a heartbeat
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_busy);  // its process lives
  const std::int64_t live_pid = h.writer_pid;
  const pid_t gone = test::fork_child([] { return 0; });  // a pid no process has once reaped
  test::wait_child(gone);
  h.writer_pid = gone;
  // A header naming a dead process while this process holds the writer's lock: alive.
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_busy);
  h.writer_pid = live_pid;
  w->close();
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_dead);
  h.heartbeat_ns = beat;
  st = even + 2;  // the change completes
  ASSERT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  EXPECT_EQ(snap.size(), 2u);
}

// Entries moving (AE1-AE2): while the epoch is odd no snapshot trusts a probe.
TEST_F(SnapshotTest, AnOddAccountEpochIsBusy) {
  put("spot", "alice", "SOL", "1");
  w->heartbeat();
  test::RwMapping m(seg.name());
  auto& h = *reinterpret_cast<shm::SegmentHeader*>(m.base());
  const std::uint64_t e = h.accounts_epoch;
  h.accounts_epoch = e | 1;
  std::vector<Position> snap;
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_busy);
  EXPECT_EQ(r.snapshot("nobody", snap), ReadStatus::writer_busy) << "not even a miss";
  h.accounts_epoch = (e | 1) + 1;
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  EXPECT_EQ(r.snapshot("nobody", snap), ReadStatus::not_found);
}

// A list that does not end where its entry's count says (a change in progress that the stripe
// did not cover would look like this): never served short or long.
TEST_F(SnapshotTest, AListThatDisagreesWithItsCountIsNeverServed) {
  put("spot", "alice", "SOL", "1");
  put("spot", "alice", "BTC", "2");
  put("spot", "alice", "ETH", "3");
  w->heartbeat();
  test::RwMapping m(seg.name());
  const auto& h = *reinterpret_cast<const shm::SegmentHeader*>(m.base());
  const shm::Geometry g = shm::geometry_for(h.capacity);
  auto* entries = reinterpret_cast<shm::AccountEntry*>(m.base() + g.accounts_offset);
  const std::uint64_t key = shm::account_key(shm::account_hash("alice"));
  shm::AccountEntry* e = nullptr;
  for (std::uint64_t i = 0; i < g.index_buckets; ++i) {
    if (entries[i].key == key) e = &entries[i];
  }
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->count, 3u);
  std::vector<Position> snap;
  e->count = 2;  // the list runs on past its count
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_busy);
  e->count = 4;  // the list ends before its count
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::writer_busy);
  e->count = 3;
  ASSERT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  EXPECT_EQ(snap.size(), 3u);
}
