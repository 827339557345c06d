#include "poscache/writer.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <list>
#include <random>
#include <thread>

#include "poscache/reader.hpp"
#include "shm/clock.hpp"
#include "shm/layout.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace std::chrono_literals;

namespace {

using test::must;

std::string dec(const Position& p, const Reader& r, const char* field) {
  const auto& info = r.namespace_info(p.ns);
  const auto f = *info.field_index(field);
  return format_decimal(p.values[f], info.fields[f].scale);
}

}  // namespace

class WriterTest : public ::testing::Test {
 protected:
  test::ScratchSegment seg{"w"};
  std::unique_ptr<Writer> w = Writer::open(test::small_config(seg.name(), 8));
  Reader r = Reader::open(seg.name());
};

TEST_F(WriterTest, InsertsThenUpdatesAndReadersSeeEveryField) {
  auto res = w->upsert(must(
      w->make_update("spot", "wallet1", "SOL", {{"qty", "12.5"}, {"avg_price", "141.25"}}, 1)));
  EXPECT_EQ(res.status, ApplyStatus::inserted);
  Position p;
  ASSERT_EQ(r.get("spot", "wallet1", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(dec(p, r, "qty"), "12.500000000000000000");
  EXPECT_EQ(dec(p, r, "avg_price"), "141.250000000000000000");
  EXPECT_EQ(p.fields_set, 0b11u);
  EXPECT_EQ(p.source_seq, 1u);
  const auto v1 = p.version;

  res = w->upsert(must(w->make_update("spot", "wallet1", "SOL", {{"qty", "-3"}}, 2)));
  EXPECT_EQ(res.status, ApplyStatus::updated);
  ASSERT_EQ(r.get("spot", "wallet1", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(dec(p, r, "qty"), "-3.000000000000000000");
  EXPECT_EQ(dec(p, r, "avg_price"), "141.250000000000000000");  // merge kept it
  EXPECT_GT(p.version, v1);
  EXPECT_GE(p.updated_at_ns, p.created_at_ns);
  EXPECT_EQ(r.stats().inserts, 1u);
  EXPECT_EQ(r.stats().updates, 1u);
}

// The small public calls: a producer that refuses an update itself (make_update failed) counts it
// where operators look; both ends name the segment they are on.
TEST_F(WriterTest, CountRejectAndSegmentNamesAreWhatOperatorsSee) {
  EXPECT_EQ(r.stats().rejects, 0u);
  w->count_reject();
  w->count_reject();
  EXPECT_EQ(r.stats().rejects, 2u);
  EXPECT_EQ(w->stats().rejects, 2u);
  EXPECT_EQ(w->segment_name(), seg.name());
  EXPECT_EQ(r.segment_name(), seg.name());
  EXPECT_EQ(w->namespaces().size(), 3u);
}

TEST_F(WriterTest, ReplaceModeUnsetsTheFieldsNotGiven) {
  w->upsert(must(w->make_update("spot", "a", "X", {{"qty", "1"}, {"fees", "0.1"}})));
  w->upsert(must(w->make_update("spot", "a", "X", {{"qty", "2"}}, 0, UpdateMode::replace)));
  Position p;
  ASSERT_EQ(r.get("spot", "a", "X", p), ReadStatus::ok);
  EXPECT_EQ(p.fields_set, 1u);
  EXPECT_TRUE(p.values[6] == 0);
}

TEST_F(WriterTest, LendingPositionsKeepBaseUnitsAndBlocks) {
  w->upsert(must(w->make_update("moonwell", "0xAbC0000000000000000000000000000000000001", "USDC",
                                {{"collateral_amount", "1500000000000000000000000"},
                                 {"debt_amount", "999999999999999999999"},
                                 {"liquidation_threshold", "0.825"},
                                 {"health_factor", "1.237500000000000001"},
                                 {"last_update_block", "21000123"},
                                 {"blocks_unhealthy", "0"}})));
  Position p;
  ASSERT_EQ(r.get("moonwell", "0xAbC0000000000000000000000000000000000001", "USDC", p),
            ReadStatus::ok);
  EXPECT_EQ(dec(p, r, "collateral_amount"), "1500000000000000000000000");
  EXPECT_EQ(dec(p, r, "health_factor"), "1.237500000000000001");
  EXPECT_EQ(p.int64(4), 21000123);
}

TEST_F(WriterTest, BadInputIsRefusedWithAClearErrorAndNothingChanges) {
  const auto before = r.change_sequence();
  struct Case {
    const char* ns;
    const char* account;
    const char* instrument;
    const char* field;
    const char* value;
    const char* expect;
  };
  const Case cases[] = {
      {"futures", "a", "X", "qty", "1", "unknown namespace 'futures'"},
      {"spot", "", "X", "qty", "1", "account is empty"},
      {"spot", "a b", "X", "qty", "1", "account 'a b' has ' '"},
      {"spot", "a", "X:Y", "qty", "1", "instrument 'X:Y' has ':'"},
      {"spot", "a", "X", "qtyy", "1", "has no field 'qtyy'"},
      {"spot", "a", "X", "qty", "1.0000000000000000001", "more than 18 digits after the point"},
      {"spot", "a", "X", "qty", "1e9", "has 'e'"},
      {"spot", "a", "X", "qty", "100000000000000000000", "overflows"},
      {"moonwell", "a", "X", "last_update_block", "1.5", "not a base-10 64-bit integer"},
  };
  for (const Case& c : cases) {
    const std::pair<std::string_view, std::string_view> f[] = {{c.field, c.value}};
    const auto u = w->make_update(c.ns, c.account, c.instrument, f);
    ASSERT_FALSE(u) << c.expect;
    EXPECT_NE(u.error().find(c.expect), std::string::npos) << u.error();
  }
  EXPECT_EQ(r.change_sequence(), before);
  EXPECT_EQ(r.stats().live, 0u);
  // A hand-built Update that bypasses make_update is checked again and counted.
  Update bad;
  bad.ns = 0;
  bad.account_len = 200;
  EXPECT_EQ(w->upsert(bad).status, ApplyStatus::bad_input);
  EXPECT_EQ(r.stats().rejects, 1u);
}

TEST_F(WriterTest, OlderSourceSequencesAreRefused) {
  w->upsert(must(w->make_update("spot", "a", "X", {{"qty", "5"}}, 10)));
  EXPECT_EQ(w->upsert(must(w->make_update("spot", "a", "X", {{"qty", "4"}}, 9))).status,
            ApplyStatus::stale_source);
  EXPECT_EQ(w->upsert(must(w->make_update("spot", "a", "X", {{"qty", "4"}}, 10))).status,
            ApplyStatus::stale_source);
  Position p;
  r.get("spot", "a", "X", p);
  EXPECT_EQ(dec(p, r, "qty"), "5.000000000000000000");
  EXPECT_EQ(r.stats().rejects, 2u);
}

TEST_F(WriterTest, AFullTableEvictsTheLeastRecentlyUpdatedAcrossNamespaces) {
  // capacity 8: fill it, touch the first, insert one more: the second-oldest goes.
  for (int i = 0; i < 8; ++i) {
    const std::string acct = "acct" + std::to_string(i);
    const char* ns = i % 2 ? "spot" : "moonwell";
    const char* field = i % 2 ? "qty" : "debt_amount";
    const std::pair<std::string_view, std::string_view> f[] = {{field, "1"}};
    ASSERT_EQ(w->upsert(must(w->make_update(ns, acct, "X", f))).status, ApplyStatus::inserted);
    std::this_thread::sleep_for(1ms);  // distinct updated_at
  }
  w->upsert(
      must(w->make_update("moonwell", "acct0", "X", {{"debt_amount", "2"}})));  // acct0 now newest
  const auto res = w->upsert(must(w->make_update("spot", "new", "X", {{"qty", "1"}})));
  EXPECT_EQ(res.status, ApplyStatus::inserted);
  EXPECT_TRUE(res.evicted);
  Position p;
  EXPECT_EQ(r.get("spot", "acct1", "X", p), ReadStatus::not_found);  // the oldest
  EXPECT_EQ(r.get("moonwell", "acct0", "X", p), ReadStatus::ok);
  EXPECT_EQ(r.get("spot", "new", "X", p), ReadStatus::ok);
  EXPECT_EQ(r.stats().evictions, 1u);
  EXPECT_EQ(r.stats().live, 8u);
}

// The same promise through a long churn: thousands of updates (through upsert() and
// upsert_batch(), across namespaces) run the writer's recency log through many compaction passes,
// and every evicting insert removes exactly the position a reference order says is the least
// recently updated.
TEST(WriterEvictionTest, EveryEvictionTakesTheLeastRecentlyUpdatedThroughLongChurn) {
  test::ScratchSegment seg("lru");
  auto w = Writer::open(test::small_config(seg.name(), 64));
  Reader r = Reader::open(seg.name());
  std::list<std::pair<std::string, std::string>> order;  // (ns, account), least recent first
  auto touched = [&](const std::string& ns, const std::string& acct) {
    order.remove({ns, acct});
    order.emplace_back(ns, acct);
  };
  auto update_of = [&](const std::string& ns, const std::string& acct, int v) {
    const std::string val = std::to_string(v);
    if (ns == "spot") return must(w->make_update(ns, acct, "X", {{"qty", val}}));
    return must(w->make_update(ns, acct, "X", {{"debt_amount", val}}));
  };
  std::mt19937 rng(5);
  int next_account = 0;
  for (int i = 0; i < 64; ++i) {
    const std::string ns = i % 3 ? "spot" : "moonwell";
    const std::string acct = "a" + std::to_string(next_account++);
    ASSERT_EQ(w->upsert(update_of(ns, acct, i)).status, ApplyStatus::inserted);
    touched(ns, acct);
  }
  std::size_t evictions = 0;
  for (int round = 0; round < 400; ++round) {
    // A batch of updates to random present positions (a hot few more often).
    std::vector<Update> batch;
    std::vector<std::pair<std::string, std::string>> keys;
    for (int k = 0; k < 40; ++k) {
      auto it = order.begin();
      std::advance(it, rng() % 2 ? rng() % 8 + 56 : rng() % 64);
      keys.push_back(*it);
      batch.push_back(update_of(it->first, it->second, k));
    }
    if (round % 2) {
      std::vector<ApplyResult> res(batch.size());
      w->upsert_batch(batch, res);
    } else {
      for (const Update& u : batch) w->upsert(u);
    }
    for (const auto& k : keys) touched(k.first, k.second);
    // Then one new key: it must push out exactly the least recently updated.
    const auto victim = order.front();
    const std::string ns = round % 3 ? "spot" : "moonwell";
    const std::string acct = "a" + std::to_string(next_account++);
    const ApplyResult res = w->upsert(update_of(ns, acct, round));
    ASSERT_EQ(res.status, ApplyStatus::inserted);
    ASSERT_TRUE(res.evicted);
    ++evictions;
    order.pop_front();
    touched(ns, acct);
    Position p;
    ASSERT_EQ(r.get(victim.first, victim.second, "X", p), ReadStatus::not_found)
        << "round " << round << ": expected " << victim.first << ":" << victim.second << " evicted";
    for (const auto& [kns, kacct] : order) {
      ASSERT_EQ(r.get(kns, kacct, "X", p), ReadStatus::ok)
          << "round " << round << ": " << kns << ":" << kacct << " lost";
    }
  }
  EXPECT_EQ(r.stats().evictions, evictions);
}

TEST_F(WriterTest, EraseAndEachInvalidationRemoveExactlyTheirPositions) {
  auto put = [&](const char* ns, const char* a, const char* i) {
    const char* field = std::string_view(ns) == "spot" ? "qty" : "bid";
    const std::pair<std::string_view, std::string_view> f[] = {{field, "1"}};
    w->upsert(must(w->make_update(ns, a, i, f)));
  };
  put("spot", "alice", "SOL");
  put("spot", "alice", "BTC");
  put("marks", "alice", "SOL");
  put("spot", "bob", "SOL");
  put("marks", "bob", "ETH");
  Position p;
  EXPECT_EQ(w->erase(*w->make_key("spot", "bob", "SOL")).status, ApplyStatus::erased);
  EXPECT_EQ(w->erase(*w->make_key("spot", "bob", "SOL")).status, ApplyStatus::not_found);
  EXPECT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::not_found);

  EXPECT_EQ(w->invalidate_account("alice", *w->namespace_id("marks")), 1u);
  EXPECT_EQ(r.get("marks", "alice", "SOL", p), ReadStatus::not_found);
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(w->invalidate_matching("spot:alice:B*"), 1u);
  EXPECT_EQ(r.get("spot", "alice", "BTC", p), ReadStatus::not_found);
  EXPECT_EQ(w->invalidate_namespace(*w->namespace_id("marks")), 1u);
  EXPECT_EQ(r.get("marks", "bob", "ETH", p), ReadStatus::not_found);
  EXPECT_EQ(w->invalidate_account("alice"), 1u);
  EXPECT_EQ(r.stats().live, 0u);
  put("spot", "carol", "SOL");
  put("marks", "dave", "SOL");
  EXPECT_EQ(w->invalidate_all(), 2u);
  EXPECT_EQ(r.stats().live, 0u);
  EXPECT_EQ(r.stats().erases, 1u);
  EXPECT_EQ(r.stats().invalidations, 6u);
  // A pattern must be 1 to 256 characters: it is journaled for Redis as written.
  for (const std::string& bad : {std::string(), std::string(257, '*')}) {
    try {
      w->invalidate_matching(bad);
      ADD_FAILURE() << "accepted a pattern of " << bad.size() << " characters";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("glob pattern must be 1 to 256 characters, got " +
                                           std::to_string(bad.size())),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(w->invalidate_matching(std::string(256, '*')), 0u);
}

// Live positions per namespace (the header's namespace_live, in stats() of both sides) move with
// every way a position comes and goes: insert, eviction, erase, invalidation, expiry, and a
// re-attach recounts them from the slots.
TEST(WriterNamespaceCountTest, LivePositionsAreCountedPerNamespaceThroughEveryWayInAndOut) {
  test::ScratchSegment seg("nslive");
  WriterConfig c = test::small_config(seg.name(), 8);
  c.namespaces[2].stale_after = 20ms;
  c.namespaces[2].expire_after = 50ms;
  auto w = Writer::open(c);
  auto r = Reader::open(seg.name());
  using Counts = std::vector<std::uint64_t>;  // spot, moonwell, marks
  auto counts = [&] {
    const Counts from_writer = w->stats().namespace_live;
    EXPECT_EQ(r.stats().namespace_live, from_writer);
    return from_writer;
  };
  for (int i = 0; i < 3; ++i)
    w->upsert(must(w->make_update("spot", "a" + std::to_string(i), "SOL", {{"qty", "1"}})));
  for (int i = 0; i < 2; ++i)
    w->upsert(
        must(w->make_update("moonwell", "a" + std::to_string(i), "USDC", {{"debt_amount", "1"}})));
  w->upsert(must(w->make_update("marks", "m", "SOL", {{"bid", "1"}})));
  w->upsert(must(w->make_update("spot", "a0", "SOL", {{"qty", "2"}})));  // an update: no change
  EXPECT_EQ(counts(), (Counts{3, 2, 1}));
  // Fill to capacity, then one more: the least recently updated (spot a1) is evicted.
  w->upsert(must(w->make_update("moonwell", "b0", "USDC", {{"debt_amount", "1"}})));
  w->upsert(must(w->make_update("moonwell", "b1", "USDC", {{"debt_amount", "1"}})));
  EXPECT_EQ(counts(), (Counts{3, 4, 1}));
  EXPECT_TRUE(
      w->upsert(must(w->make_update("moonwell", "b2", "USDC", {{"debt_amount", "1"}}))).evicted);
  EXPECT_EQ(counts(), (Counts{2, 5, 1}));
  EXPECT_EQ(w->erase(*w->make_key("moonwell", "b0", "USDC")).status, ApplyStatus::erased);
  EXPECT_EQ(counts(), (Counts{2, 4, 1}));
  EXPECT_EQ(w->invalidate_account("a0"), 2u);  // spot and moonwell
  EXPECT_EQ(counts(), (Counts{1, 3, 1}));
  std::this_thread::sleep_for(80ms);
  w->tick();  // the mark expires
  EXPECT_EQ(counts(), (Counts{1, 3, 0}));
  // A writer that re-attaches counts them again from the slots (the header's words zeroed here
  // stand for counts a killed writer left wrong).
  w.reset();
  {
    const test::RwMapping m(seg.name());
    for (auto& n : reinterpret_cast<shm::SegmentHeader*>(m.base())->namespace_live) n = 0;
  }
  w = Writer::open(c);
  EXPECT_EQ(counts(), (Counts{1, 3, 0}));
  EXPECT_EQ(w->invalidate_namespace(*w->namespace_id("moonwell")), 3u);
  EXPECT_EQ(counts(), (Counts{1, 0, 0}));
}

// Updates built by hand (bypassing make_update) are checked on the apply path by a yes/no fast
// path: each way of being malformed is refused by upsert() and by upsert_batch() alike, counted,
// and changes nothing, while the good updates of the same batch apply.
TEST_F(WriterTest, EveryKindOfMalformedHandBuiltUpdateIsRefusedByBothApplyPaths) {
  const Update good = must(w->make_update("spot", "a", "X", {{"qty", "1"}}));
  std::vector<std::pair<std::string, Update>> bad;
  auto add = [&](std::string what, auto&& mutate) {
    Update u = good;
    mutate(u);
    bad.emplace_back(std::move(what), u);
  };
  add("namespace id out of range", [](Update& u) { u.ns = 7; });
  add("empty account", [](Update& u) { u.account_len = 0; });
  add("account too long", [](Update& u) { u.account_len = kMaxAccountLen + 1; });
  add("account character", [](Update& u) { u.account[0] = ' '; });
  add("empty instrument", [](Update& u) { u.instrument_len = 0; });
  add("instrument character", [](Update& u) { u.instrument[0] = ':'; });
  add("no field", [](Update& u) { u.fields_mask = 0; });
  add("field beyond the schema", [](Update& u) { u.fields_mask = 1u << 20; });
  add("39-digit mantissa", [](Update& u) { u.values[0] = kDecimalLimit; });
  add("negative 39 digits", [](Update& u) { u.values[0] = -kDecimalLimit; });
  add("int64 field beyond 64 bits", [](Update& u) {
    u.ns = 1;                 // moonwell
    u.fields_mask = 1u << 4;  // last_update_block, an int64
    u.values[4] = static_cast<int128>(INT64_MAX) + 1;
  });
  std::uint64_t rejects = 0;
  for (const auto& [what, u] : bad) {
    EXPECT_EQ(w->upsert(u).status, ApplyStatus::bad_input) << what;
    std::vector<Update> batch = {must(w->make_update("spot", "b", "Y", {{"qty", "2"}})), u};
    std::vector<ApplyResult> res(batch.size());
    w->upsert_batch(batch, res);
    EXPECT_EQ(res[1].status, ApplyStatus::bad_input) << what;
    EXPECT_NE(res[0].status, ApplyStatus::bad_input) << what;
    rejects += 2;
    EXPECT_EQ(r.stats().rejects, rejects) << what;
  }
  Position p;
  EXPECT_EQ(r.get("spot", "a", "X", p), ReadStatus::not_found);  // nothing of the bad ones landed
  EXPECT_EQ(r.stats().live, 1u);                                 // only spot:b:Y
  EXPECT_EQ(w->upsert(good).status, ApplyStatus::inserted);      // and the original is fine
}

TEST_F(WriterTest, ABatchWithOneBadOpAppliesNothing) {
  std::vector<Op> ops;
  ops.emplace_back(must(w->make_update("spot", "a", "X", {{"qty", "1"}})));
  Update bad = must(w->make_update("spot", "b", "X", {{"qty", "1"}}));
  bad.ns = 31;  // not a namespace of this segment
  ops.emplace_back(bad);
  const auto seq = r.change_sequence();
  const BatchResult br = w->apply(ops);
  EXPECT_FALSE(br.applied);
  EXPECT_NE(br.error.find("op 1: namespace id 31 is out of range"), std::string::npos) << br.error;
  Position p;
  EXPECT_EQ(r.get("spot", "a", "X", p), ReadStatus::not_found);
  EXPECT_EQ(r.change_sequence(), seq);

  ops.pop_back();
  ops.emplace_back(InvalidateMatching{"spot:zzz*"});
  const BatchResult ok = w->apply(ops);
  ASSERT_TRUE(ok.applied) << ok.error;
  EXPECT_EQ(ok.results[0].status, ApplyStatus::inserted);
  EXPECT_EQ(r.change_sequence(), seq + 1);  // one step for the whole batch
}

TEST_F(WriterTest, StaleReadsStillReturnTheValueFlaggedWithItsAge) {
  // marks: stale_after 1 s, expire_after 60 s (preset). Read with a clock 2 s ahead: stale.
  w->upsert(must(w->make_update("marks", "m", "SOL", {{"bid", "140.1"}})));
  Position p;
  ASSERT_EQ(r.get(*r.namespace_id("marks"), "m", "SOL", p), ReadStatus::ok);
  const std::int64_t later = p.updated_at_ns + 2'000'000'000;
  ASSERT_EQ(r.get(*r.namespace_id("marks"), "m", "SOL", p, later), ReadStatus::stale);
  EXPECT_TRUE(p.stale);
  EXPECT_EQ(p.age_ns, 2'000'000'000);
}

TEST(WriterExpiryTest, TickRemovesPositionsPastExpireAfter) {
  test::ScratchSegment seg("exp");
  WriterConfig c = test::small_config(seg.name(), 8);
  c.namespaces[2].stale_after = 20ms;
  c.namespaces[2].expire_after = 100ms;
  auto w = Writer::open(c);
  auto r = Reader::open(seg.name());
  w->upsert(*w->make_update("marks", "m", "SOL", {{"bid", "1"}}));
  w->upsert(*w->make_update("spot", "m", "SOL", {{"qty", "1"}}));
  Position p;
  // get() ages positions with the coarse clock (one kernel tick, at most 4 ms, behind): leave
  // margin.
  std::this_thread::sleep_for(40ms);
  EXPECT_EQ(r.get("marks", "m", "SOL", p), ReadStatus::stale);
  std::this_thread::sleep_for(80ms);
  w->tick();
  EXPECT_EQ(r.get("marks", "m", "SOL", p), ReadStatus::not_found);
  EXPECT_EQ(r.get("spot", "m", "SOL", p), ReadStatus::ok);  // no expire_after: stays
  EXPECT_EQ(r.stats().expirations, 1u);
}

// Expiry through the recency log after many compaction passes: an expiring namespace's entries
// are moved by compaction among thousands of updates of a namespace that never expires, and
// tick() still removes exactly the positions past expire_after. Which those are is decided from
// each position's own updated_at and clock readings around tick(), not from sleeps, so a slow
// machine cannot make it fail.
TEST(WriterExpiryTest, ExpiryFindsEveryExpiredPositionAmongManyUpdatesOfOtherNamespaces) {
  test::ScratchSegment seg("exp2");
  WriterConfig c = test::small_config(seg.name(), 256);
  c.namespaces[2].stale_after = 50ms;  // marks
  c.namespaces[2].expire_after = 150ms;
  auto w = Writer::open(c);
  auto r = Reader::open(seg.name());
  // Each mark's updated_at as the writer stamped it, taken right after the change: on a slow run
  // the old half may already be expired by the churn's own tick()s when the test looks again.
  std::vector<std::string> marks;
  std::vector<std::int64_t> updated_at;
  auto put_mark = [&](std::size_t i, const char* bid) {
    w->upsert(*w->make_update("marks", marks[i], "SOL", {{"bid", bid}}));
    updated_at[i] = w->find(*w->make_key("marks", marks[i], "SOL"))->updated_at_ns;
  };
  for (int i = 0; i < 60; ++i) {
    marks.push_back("m" + std::to_string(i));
    updated_at.push_back(0);
    put_mark(marks.size() - 1, "1");
  }
  auto churn = [&] {  // 100 spot positions, 8000 updates: several compaction passes
    for (int k = 0; k < 8000; ++k) {
      w->upsert(*w->make_update("spot", "s" + std::to_string(k % 100), "SOL",
                                {{"qty", std::to_string(k)}}));
      if (k % 200 == 0) w->tick();  // as the daemon's loop does: the expiry cursor moves up the log
    }
  };
  churn();
  std::this_thread::sleep_for(80ms);
  for (std::size_t i = 0; i < marks.size(); i += 2)
    put_mark(i, "2");  // refresh half (if not yet expired)
  churn();
  std::this_thread::sleep_for(100ms);
  Position p;
  const std::int64_t before = shm::realtime_ns();
  w->tick();
  const std::int64_t after = shm::realtime_ns();
  const std::int64_t ttl = std::chrono::nanoseconds(150ms).count();
  std::size_t expired = 0, checked = 0;
  for (std::size_t i = 0; i < marks.size(); ++i) {
    const ReadStatus st = r.get("marks", marks[i], "SOL", p);
    if (before - updated_at[i] >
        ttl + 1'000'000) {  // expired before tick() began (1 ms for clock skew)
      EXPECT_EQ(st, ReadStatus::not_found) << marks[i] << " should have expired";
      ++expired;
      ++checked;
    } else if (after - updated_at[i] < ttl - 1'000'000) {  // still young when tick() ended
      EXPECT_TRUE(st == ReadStatus::ok || st == ReadStatus::stale) << marks[i] << " expired early";
      ++checked;
    }
  }
  EXPECT_GE(expired, 30u);  // the half never refreshed is older than the TTL however slow the run
  EXPECT_GE(r.stats().expirations, expired);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(r.get("spot", "s" + std::to_string(i), "SOL", p), ReadStatus::ok);
}

TEST(WriterSegmentTest, SegmentModeIsExactlyTheConfiguredOne) {
  test::ScratchSegment seg("mode");
  WriterConfig c = test::small_config(seg.name());
  const mode_t old = ::umask(0077);
  auto w = Writer::open(c);
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  w.reset();
  // A mode other than the default, with a umask that would strip its group and other bits.
  for (const mode_t mode : {mode_t{0600}, mode_t{0644}, mode_t{0660}}) {
    test::ScratchSegment other("mode");
    WriterConfig o = test::small_config(other.name());
    o.mode = mode;
    const mode_t saved = ::umask(0077);
    auto w2 = Writer::open(o);
    ::umask(saved);
    ASSERT_EQ(::stat(("/dev/shm/" + other.name()).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, mode) << std::oct << mode;
  }
  // A mode the writer itself could not write through is refused before anything is touched, and
  // the message shows it in octal.
  test::ScratchSegment refused("mode");
  WriterConfig r = test::small_config(refused.name());
  for (const mode_t bad : {mode_t{0400}, mode_t{01640}}) {
    r.mode = bad;
    try {
      Writer::open(r);
      ADD_FAILURE() << "mode " << std::oct << bad << " was accepted";
    } catch (const Error& e) {
      char want[32];
      std::snprintf(want, sizeof want, "segment mode 0%o must grant", static_cast<unsigned>(bad));
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
    EXPECT_NE(::access(("/dev/shm/" + refused.name()).c_str(), F_OK), 0)
        << "a refused open left a segment";
  }
}

TEST(WriterSegmentTest, AMismatchedExistingSegmentIsRefusedUnlessRecreateIsAsked) {
  test::ScratchSegment seg("mis");
  WriterConfig c = test::small_config(seg.name(), 16);
  { auto w = Writer::open(c); }
  c.capacity = 32;
  try {
    Writer::open(c);
    FAIL() << "a mismatched segment was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected capacity 32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("found capacity 16"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--recreate"), std::string::npos) << e.what();
  }
  c.recreate_on_mismatch = true;
  auto w = Writer::open(c);
  EXPECT_EQ(w->stats().capacity, 32u);
}

TEST(WriterSegmentTest, ConfigErrorsNameWhatIsWrong) {
  WriterConfig c = test::small_config("poscache_test_cfg");
  c.capacity = 0;
  EXPECT_THROW(Writer::open(c), Error);
  c.capacity =
      (std::uint64_t{1} << 29) + 1;  // the writer's recency log is limited to 2^29 positions
  try {
    Writer::open(c);
    FAIL() << "capacity 2^29 + 1 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is out of range: 1 to 536870912"), std::string::npos)
        << e.what();
  }
  c = test::small_config("bad/name");
  EXPECT_THROW(Writer::open(c), Error);
  c = test::small_config("poscache_test_cfg");
  c.namespaces.push_back(preset_trading("spot"));
  try {
    Writer::open(c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'spot' is configured twice"), std::string::npos);
  }
}

TEST_F(WriterTest, UpsertBatchAppliesInOrderAndRefusesOnlyTheBadOnes) {
  std::vector<Update> us;
  us.push_back(must(w->make_update("spot", "a", "X", {{"qty", "1"}})));
  us.push_back(must(w->make_update("spot", "a", "X", {{"qty", "2"}})));  // same key, later wins
  Update bad = must(w->make_update("spot", "b", "X", {{"qty", "1"}}));
  bad.instrument_len = 0;
  us.push_back(bad);
  us.push_back(must(w->make_update("marks", "a", "X", {{"bid", "3"}})));
  for (int i = 0; i < 40; ++i)
    us.push_back(must(w->make_update("spot", "k" + std::to_string(i), "X", {{"qty", "5"}})));
  std::vector<ApplyResult> res(us.size());
  w->upsert_batch(us, res);
  EXPECT_EQ(res[0].status, ApplyStatus::inserted);
  EXPECT_EQ(res[1].status, ApplyStatus::updated);
  EXPECT_EQ(res[2].status, ApplyStatus::bad_input);
  EXPECT_EQ(res[3].status, ApplyStatus::inserted);
  EXPECT_TRUE(res[43].evicted);  // capacity 8: later inserts evict
  Position p;
  for (int i = 32; i < 40; ++i)
    EXPECT_EQ(r.get("spot", "k" + std::to_string(i), "X", p), ReadStatus::ok) << i;
  EXPECT_EQ(r.get("spot", "a", "X", p), ReadStatus::not_found);  // the oldest went first
  EXPECT_EQ(r.stats().live, 8u);
  EXPECT_EQ(r.stats().rejects, 1u);
  EXPECT_GT(res[1].version, res[0].version);
}

namespace {

// The huge= option of the tmpfs on /dev/shm ("never" when none is given).
std::string dev_shm_huge_option() {
  FILE* f = std::fopen("/proc/mounts", "r");
  char line[1024];
  std::string opt = "never";
  while (f != nullptr && std::fgets(line, sizeof line, f) != nullptr) {
    const std::string l = line;
    if (l.find(" /dev/shm tmpfs ") == std::string::npos) continue;
    const auto at = l.find("huge=");
    opt = at == std::string::npos ? "never" : l.substr(at + 5, l.find_first_of(", ", at) - at - 5);
  }
  if (f != nullptr) std::fclose(f);
  return opt;
}

}  // namespace

TEST(WriterSegmentTest, ANewSegmentIsOnTwoMiBPagesThatReaderProcessesShare) {
  test::ScratchSegment seg("huge");
  WriterConfig c = test::small_config(seg.name(), 20'000);  // ~11 MiB
  std::string log;
  c.log = [&](LogLevel, std::string_view text) { log.append(text).append("\n"); };
  {
    auto w = Writer::open(c);
    const WriterStats st = w->stats();
    ASSERT_GE(st.segment_bytes, 5 * (std::size_t{2} << 20));
    if (const std::string why = test::tmpfs_collapse_unsupported(); !why.empty()) {
      EXPECT_NE(log.find("MADV_COLLAPSE"), std::string::npos) << log;  // the writer says why
      POSCACHE_SKIP_OR_FAIL("this kernel keeps tmpfs on 4 KiB pages: " + why);
    }
    // Every whole 2 MiB of the file (only the tail beyond the last boundary stays small), unless
    // the kernel had no free huge page at that moment: then the log says why.
    const std::uint64_t whole = st.segment_bytes & ~((std::uint64_t{2} << 20) - 1);
    if (st.huge_page_bytes < whole) {
      EXPECT_NE(log.find("(MADV_COLLAPSE: "), std::string::npos) << log;
      // The probe just collapsed 2 MiB of another file: none at all is a failure, not a skip.
      ASSERT_GT(st.huge_page_bytes, 0u)
          << "the probe collapsed a page but the segment got none: " << log;
    }
    EXPECT_NE(log.find("MiB on 2 MiB pages"), std::string::npos) << log;
    for (int i = 0; i < 100; ++i) {
      w->upsert(
          *w->make_update("spot", "acct" + std::to_string(i), "SOL", {{"qty", std::to_string(i)}}));
    }
    const std::string child = test::in_child([&] {
      Reader r = Reader::open(seg.name());
      Position p;
      for (int i = 0; i < 100; ++i) {
        if (r.get("spot", "acct" + std::to_string(i), "SOL", p) != ReadStatus::ok ||
            dec(p, r, "qty") != std::to_string(i) + ".000000000000000000") {
          return std::string("position ") + std::to_string(i) + " wrong";
        }
      }
      return std::to_string(r.huge_page_bytes());
    });
    EXPECT_EQ(child, std::to_string(st.huge_page_bytes))
        << "a reader process maps the same huge pages";
  }
  // A writer re-attaching keeps the pages as they are (a collapse would make attached readers
  // fault); turned off, a new segment stays on 4 KiB pages unless the mount says otherwise.
  c.huge_pages = false;
  c.fresh = true;
  log.clear();
  {
    auto w = Writer::open(c);
    if (dev_shm_huge_option() == "never") {
      EXPECT_EQ(w->stats().huge_page_bytes, 0u);
    }
  }
  EXPECT_NE(log.find("(huge_pages is off)"), std::string::npos) << log;
  c.huge_pages = true;
  c.fresh = false;
  log.clear();
  auto w = Writer::open(c);
  EXPECT_TRUE(w->stats().reattached);
  if (dev_shm_huge_option() == "never") {
    EXPECT_EQ(w->stats().huge_page_bytes, 0u);
    EXPECT_NE(log.find("(as created; a fresh segment collapses)"), std::string::npos) << log;
  }
}

// Only a creation of ours that was cut short is replaced without being asked: an empty file, or a
// file of exactly a segment's size whose header was never written. Anything else under the name
// is someone else's file: refused, naming what was found, and left as it was.
TEST(WriterSegmentTest, AForeignFileUnderTheNameIsRefusedAndKeptUnlessRecreateIsAsked) {
  test::ScratchSegment seg("foreign_file");
  const std::string path = "/dev/shm/" + seg.name();
  auto make_file = [&](const std::string& content, std::size_t zeros) {
    seg.cleanup();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    if (zeros > 0) {
      ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(zeros)), 0);
    }
    ::close(fd);
  };
  auto file_size = [&] {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : std::size_t{0};
  };
  WriterConfig c = test::small_config(seg.name(), 16);
  // A few bytes of text.
  make_file("hi\n", 0);
  try {
    Writer::open(c);
    ADD_FAILURE() << "a 3-byte foreign file was replaced";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a poscache segment (3 bytes"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(file_size(), 3u) << "the foreign file was touched";
  // Zeros, but not a segment's size.
  make_file("", 65536);
  try {
    Writer::open(c);
    ADD_FAILURE() << "a 64 KiB file of zeros was replaced";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("found 65536 bytes that begin with an empty header"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(file_size(), 65536u);
  // --recreate replaces either.
  c.recreate_on_mismatch = true;
  EXPECT_NO_THROW(Writer::open(c));
  make_file("hi\n", 0);
  EXPECT_NO_THROW(Writer::open(c));
  c.recreate_on_mismatch = false;
  // What a cut creation leaves is replaced without asking: an empty file, or a whole segment's
  // size of zeros.
  make_file("", 0);
  EXPECT_NO_THROW(Writer::open(c));
  make_file("", shm::geometry_for(64).segment_size);
  EXPECT_NO_THROW(Writer::open(c));
  EXPECT_EQ(file_size(), shm::geometry_for(16).segment_size);
}
