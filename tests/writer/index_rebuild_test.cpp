// writer/index_rebuild.hpp: the index rebuilt a slice per removal while the writer goes on
// applying. A rebuild's copy must end with exactly the live slots (none missing, none pointing at
// a freed slot, its tombstones counted), whatever the writer did on either side of the scan
// between slices; every live key is found throughout; no rebuild is done in one go.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "test_util.hpp"
#include "tools/verify.hpp"

using namespace poscache;

namespace {

std::string rebuild_key(std::uint64_t i) {
  return "acct" + std::to_string(i);
}

// The segment as `poscache-inspect verify` sees it: every live slot reachable, every bucket
// pointing at a live slot with its tag, one bucket per slot; and the header's tombstone count
// the active index's.
void expect_consistent(const Reader& r, const Writer& w, const char* when) {
  const tools::VerifyReport rep = tools::verify(r);
  for (const std::string& p : rep.problems) ADD_FAILURE() << when << ": " << p;
  EXPECT_EQ(rep.tombstones, w.stats().tombstones) << when;
}

TEST(IndexRebuildTest, EachRebuildEndsWithExactlyTheLiveSlotsWhateverHappenedBetweenSlices) {
  test::ScratchSegment seg("slices");
  constexpr std::uint64_t kCapacity = 2048;
  auto w = Writer::open(test::small_config(seg.name(), kCapacity));
  Reader r = Reader::open(seg.name());
  std::mt19937_64 rng(7);
  std::set<std::uint64_t> live;  // the model: keys the table holds
  std::uint64_t next = 0;
  // Full, then churn: erases of random live keys (tombstones), inserts of new keys into the
  // free slots (some behind the scan, some ahead of it), and evicting inserts once full.
  for (; next < kCapacity; ++next) {
    ASSERT_EQ(w->upsert(*w->make_update("spot", rebuild_key(next), "SOL", {{"qty", "1"}})).status,
              ApplyStatus::inserted);
    live.insert(next);
  }
  std::uint64_t rebuilds_seen = w->stats().index_rebuilds;
  std::uint64_t checks = 0;
  Position p;
  for (int op = 0; op < 60000; ++op) {
    const std::uint64_t dice = rng() % 8;
    if (dice < 3 && !live.empty()) {
      auto it = live.lower_bound(rng() % next);
      if (it == live.end()) it = live.begin();
      ASSERT_EQ(w->erase(*w->make_key("spot", rebuild_key(*it), "SOL")).status,
                ApplyStatus::erased);
      live.erase(it);
    } else {
      ASSERT_EQ(w->upsert(*w->make_update("spot", rebuild_key(next), "SOL", {{"qty", "2"}})).status,
                ApplyStatus::inserted);
      live.insert(next++);
      while (live.size() > kCapacity) live.erase(live.begin());  // the least recently updated
    }
    const WriterStats st = w->stats();
    if (st.index_rebuilds != rebuilds_seen) {  // a rebuild just published its copy
      rebuilds_seen = st.index_rebuilds;
      expect_consistent(r, *w, "after a sliced rebuild");
      ++checks;
      // Every live key through the reader, the readers' own path.
      for (std::uint64_t k : live)
        ASSERT_EQ(r.get("spot", rebuild_key(k), "SOL", p), ReadStatus::ok) << rebuild_key(k);
    } else if (op % 997 == 0) {
      expect_consistent(r, *w, "between slices");
    }
    if (HasFailure()) return;
  }
  EXPECT_GE(checks, 10u) << "too few rebuilds to prove anything";
  const WriterStats st = w->stats();
  // Spread out: every rebuild took many slices, never one go (steps() at 2048 slots is 33).
  EXPECT_GE(st.index_rebuild_slices, st.index_rebuilds * 30);
  std::uint64_t counted = 0;
  for (std::uint64_t n : st.index_step_counts) counted += n;
  EXPECT_GT(counted, 0u);
  EXPECT_GT(st.index_step_longest_ns, 0);
  expect_consistent(r, *w, "at the end");
}

// A bulk removal (an invalidation of many positions) that takes tombstones past the hard limit
// (a quarter of the buckets) finishes the rebuild in progress in the same operation.
TEST(IndexRebuildTest, ABulkRemovalPastTheLimitFinishesTheRebuildInProgressAtOnce) {
  test::ScratchSegment seg("bulk");
  constexpr std::uint64_t kCapacity = 1024;  // 2048 buckets: the limit is 512 tombstones
  auto w = Writer::open(test::small_config(seg.name(), kCapacity));
  Reader r = Reader::open(seg.name());
  std::mt19937_64 rng(3);
  std::vector<std::pair<std::string, std::string>> held;
  std::uint64_t n = 0;
  const auto insert = [&] {
    held.emplace_back("a" + std::to_string(rng() % 8), "I" + std::to_string(n++));
    return w->upsert(*w->make_update("spot", held.back().first, held.back().second, {{"qty", "1"}}))
        .status;
  };
  while (held.size() < kCapacity) ASSERT_EQ(insert(), ApplyStatus::inserted);
  // Erase one, insert another, until a sliced rebuild has begun.
  for (int i = 0; w->stats().index_rebuild_slices == 0; ++i) {
    ASSERT_LT(i, 200000) << "no rebuild began";
    const std::size_t k = rng() % held.size();
    ASSERT_EQ(w->erase(*w->make_key("spot", held[k].first, held[k].second)).status,
              ApplyStatus::erased);
    held[k] = held.back();
    held.pop_back();
    ASSERT_EQ(insert(), ApplyStatus::inserted);
  }
  const WriterStats begun = w->stats();
  ASSERT_EQ(begun.index_rebuilds, 0u);
  ASSERT_LE(begun.tombstones, 512u);
  // One account's positions in one operation: past the limit, so the rest of the rebuild is done
  // in it (many slices at once), and the copy it publishes holds no more than that op left.
  const std::size_t gone = w->invalidate_account("a0");
  const WriterStats st = w->stats();
  ASSERT_GT(gone, 64u);
  EXPECT_EQ(st.index_rebuilds, 1u);
  EXPECT_GT(st.index_rebuild_slices, begun.index_rebuild_slices + 1);
  EXPECT_LE(st.tombstones, 512u);
  expect_consistent(r, *w, "after the bulk removal");
  Position p;
  for (const auto& [account, instrument] : held) {
    if (account != "a0") {
      ASSERT_EQ(r.get("spot", account, instrument, p), ReadStatus::ok) << account << instrument;
    }
  }
}

}  // namespace
