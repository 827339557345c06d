// The inspector's verify (tools/verify.hpp) beside a live writer: what it reports is damage
// that is there, never a change in flight or an index rebuilt under the walk; and damage that
// is there is reported, even while the writer works on.
#include "tools/verify.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/layout.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace std::chrono_literals;

namespace {

std::string account_of(std::uint64_t k) {
  return "acct" + std::to_string(k);
}

// Until `stop`, as fast as it can: inserts a new key and erases the oldest (`live` of them:
// every key new, so tombstones pile up and the index is rebuilt every few thousand changes,
// XB1-XB2), and until `hot_until` inserts or erases one of 1024 hot keys (slots and buckets
// reused at once); after, the live count swings by one, between `live` and `live` + 1.
void churn(Writer& w, const std::atomic<bool>& stop, std::uint64_t live,
           std::chrono::steady_clock::time_point hot_until) {
  std::mt19937_64 rng(7);
  std::vector<bool> hot(1024, false);
  bool hot_on = true;
  for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
    w.upsert(test::must(w.make_update("spot", account_of(n), "SOL", {{"qty", "1"}})));
    if (n >= live) w.erase(test::must(w.make_key("spot", account_of(n - live), "SOL")));
    if (n % 1024 == 0) {
      w.tick();
      hot_on = std::chrono::steady_clock::now() < hot_until;
    }
    if (!hot_on) continue;
    const std::uint64_t k = rng() % hot.size();
    const std::string a = "hot" + std::to_string(k);
    if (hot[k])
      w.erase(test::must(w.make_key("spot", a, "ETH")));
    else
      w.upsert(test::must(w.make_update("spot", a, "ETH", {{"qty", "2"}})));
    hot[k] = !hot[k];
  }
}

}  // namespace

// Verify in a loop while another thread inserts and erases past the tombstone threshold: many
// walks overlap a rebuild (the index they began with is replaced, then cleared for the next),
// and none may report a problem. Before each candidate was judged again against the index in
// force, walks overlapping rebuilds reported "tag does not match" and "not reachable".
TEST(VerifyTest, NeverReportsDamageWhileTheWriterRebuildsTheIndex) {
  test::ScratchSegment seg("vrebuild");
  WriterConfig c = test::small_config(seg.name(), 16384);
  c.heartbeat_interval = 1s;
  auto w = Writer::open(c);
  const Reader r = Reader::open(seg.name());
  std::atomic<bool> stop{false};
  const auto until = std::chrono::steady_clock::now() + 4s;
  std::thread writer([&] { churn(*w, stop, 15000, until - 2s); });  // half the buckets live
  std::uint64_t walks = 0, overlapped = 0, reported = 0;
  std::string first;
  while (std::chrono::steady_clock::now() < until || overlapped < 20) {
    const std::uint64_t before = r.stats().index_rebuilds;
    const tools::VerifyReport rep = tools::verify(r);
    ++walks;
    if (r.stats().index_rebuilds != before) ++overlapped;
    reported += rep.problems.size();
    for (const auto& p : rep.problems) std::printf("  reported: %s\n", p.c_str());
    if (first.empty() && !rep.problems.empty()) first = rep.problems.front();
    if (std::chrono::steady_clock::now() > until + 60s) break;  // a writer far too slow
  }
  stop = true;
  writer.join();
  std::printf("verify: %llu walks, %llu overlapped a rebuild (%llu rebuilds), %llu problems\n",
              static_cast<unsigned long long>(walks), static_cast<unsigned long long>(overlapped),
              static_cast<unsigned long long>(r.stats().index_rebuilds),
              static_cast<unsigned long long>(reported));
  EXPECT_EQ(reported, 0u) << "the first: " << first;
  EXPECT_GE(overlapped, 20u) << "too few walks overlapped a rebuild to prove anything";
  EXPECT_TRUE(tools::verify(r).problems.empty());  // and at rest
}

// A bucket damaged by hand (its tag no longer its slot's key's) is reported, at rest and while
// the writer keeps updating every position (no key added or removed: nothing repairs it): the
// second look that keeps verify quiet about changes in flight must not hide damage.
TEST(VerifyTest, ADamagedBucketIsReportedEvenWhileTheWriterWorks) {
  test::ScratchSegment seg("vdamage");
  WriterConfig c = test::small_config(seg.name(), 1024);
  c.heartbeat_interval = 1s;
  auto w = Writer::open(c);
  for (std::uint64_t k = 0; k < 500; ++k)
    w->upsert(test::must(w->make_update("spot", account_of(k), "SOL", {{"qty", "1"}})));
  const Reader r = Reader::open(seg.name());
  ASSERT_TRUE(tools::verify(r).problems.empty());
  std::uint64_t damaged = 0;
  {
    const test::RwMapping m(seg.name());
    auto* h = reinterpret_cast<shm::SegmentHeader*>(m.base());
    auto* idx = reinterpret_cast<shm::Bucket*>(
        m.base() + h->index_offset[shm::load_acquire(&h->index_epoch) & 1]);
    for (; damaged < h->index_buckets; ++damaged) {
      const std::uint64_t b = shm::load_acquire(&idx[damaged]);
      if (b != shm::kEmptyBucket && shm::bucket_ref(b) != shm::kTombstoneRef) {
        shm::store_release(&idx[damaged], b ^ (std::uint64_t{1} << 40));  // a bit of the tag
        break;
      }
    }
  }
  const std::string want = "bucket " + std::to_string(damaged) + ": tag does not match slot";
  auto reports = [&](const tools::VerifyReport& rep) {
    for (const auto& p : rep.problems)
      if (p.rfind(want, 0) == 0) return true;
    return false;
  };
  EXPECT_TRUE(reports(tools::verify(r))) << want;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
      const std::string qty = std::to_string(n % 1000);
      w->upsert(test::must(w->make_update("spot", account_of(n % 500), "SOL", {{"qty", qty}})));
    }
  });
  int found = 0;
  for (int i = 0; i < 10; ++i) found += reports(tools::verify(r)) ? 1 : 0;
  stop = true;
  writer.join();
  EXPECT_EQ(found, 10) << want;
}
