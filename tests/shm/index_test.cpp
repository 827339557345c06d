#include "shm/index.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <vector>

using namespace poscache::shm;

namespace {
struct Table {
  explicit Table(std::uint64_t n) : buckets(n), mem(new Bucket[n]) {
    for (std::uint64_t i = 0; i < n; ++i) mem[i] = 0;
  }
  std::uint64_t buckets;
  std::unique_ptr<Bucket[]> mem;
  IndexWriter writer() { return IndexWriter(mem.get(), buckets); }
  bool contains(std::uint64_t hash, std::uint32_t slot) const {
    return probe(mem.get(), buckets - 1, 1u << 20, hash,
                 [&](std::uint32_t s) { return s == slot; });
  }
};
}  // namespace

TEST(IndexTest, FindsWhatWasInsertedAndNotWhatWasRemoved) {
  Table t(16);
  auto w = t.writer();
  w.insert(0x1111'0000'0000'0003, 7);
  w.insert(0x2222'0000'0000'0003, 8);  // same home bucket: probes past the first
  EXPECT_TRUE(t.contains(0x1111'0000'0000'0003, 7));
  EXPECT_TRUE(t.contains(0x2222'0000'0000'0003, 8));
  const auto pos = w.find_slot(0x1111'0000'0000'0003, 7);
  ASSERT_EQ(pos, 3u);
  EXPECT_EQ(w.remove_at(pos), 1);  // a tombstone: bucket 4 is still occupied
  EXPECT_FALSE(t.contains(0x1111'0000'0000'0003, 7));
  EXPECT_TRUE(t.contains(0x2222'0000'0000'0003, 8));  // still reachable past the tombstone
}

TEST(IndexTest, TombstonesAtTheEndOfARunBecomeEmpty) {
  Table t(16);
  auto w = t.writer();
  w.insert(0xA'0000'0005, 1);     // bucket 5
  w.insert(0xB'0000'0005, 2);     // bucket 6
  EXPECT_EQ(w.remove_at(5), 1);   // 6 occupied: stays a tombstone
  EXPECT_EQ(w.remove_at(6), -1);  // 7 empty: 6 and the tombstone at 5 are both emptied
  EXPECT_EQ(load_relaxed(&t.mem[5]), kEmptyBucket);
  EXPECT_EQ(load_relaxed(&t.mem[6]), kEmptyBucket);
}

TEST(IndexTest, InsertReusesTheFirstTombstoneOnItsPath) {
  Table t(16);
  auto w = t.writer();
  w.insert(0xA'0000'0005, 1);
  w.insert(0xB'0000'0005, 2);
  w.remove_at(5);
  EXPECT_TRUE(w.insert(0xC'0000'0005, 3));  // reused bucket 5
  EXPECT_EQ(bucket_ref(load_relaxed(&t.mem[5])), 4u);
}

TEST(IndexTest, ProbeWrapsAroundTheEnd) {
  Table t(16);
  auto w = t.writer();
  w.insert(0xA'0000'000F, 1);
  w.insert(0xB'0000'000F, 2);  // wraps to bucket 0
  EXPECT_TRUE(t.contains(0xB'0000'000F, 2));
}

// No false misses: a reader thread looks up keys that stay present the whole time while the
// writer inserts and removes other keys around them (tombstones and XD3 clean-ups included).
TEST(IndexTest, PresentKeysAreAlwaysFoundWhileOthersChurn) {
  Table t(1024);
  auto w = t.writer();
  std::vector<std::uint64_t> pinned;
  std::mt19937_64 rng(7);
  for (std::uint32_t i = 0; i < 64; ++i) {
    pinned.push_back((rng() & ~0x3FFull) | (rng() & 0x3F));  // homes in the first 64 buckets
    w.insert(pinned.back(), i);
  }
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> churned{0};
  std::thread churn([&] {
    std::mt19937_64 r(9);
    std::vector<std::pair<std::uint64_t, std::uint32_t>> live;
    std::uint32_t next = 1000;
    while (!stop.load(std::memory_order_relaxed)) {
      churned.fetch_add(1, std::memory_order_relaxed);
      if (live.size() < 300 && (r() & 1)) {
        const std::uint64_t h = (r() & ~0x3FFull) | (r() & 0x7F);  // crowd the same region
        w.insert(h, next);
        live.emplace_back(h, next++);
      } else if (!live.empty()) {
        const std::size_t k = r() % live.size();
        w.remove_at(w.find_slot(live[k].first, live[k].second));
        live[k] = live.back();
        live.pop_back();
      }
    }
  });
  // Until both sides did their share (not a time window); the deadline only turns a hang into a
  // failure.
  constexpr std::uint64_t kLookups = 2'000'000, kChurn = 1'000'000;
  std::uint64_t lookups = 0, misses = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while ((lookups < kLookups || churned.load(std::memory_order_relaxed) < kChurn) &&
         std::chrono::steady_clock::now() < deadline) {
    for (std::uint32_t i = 0; i < pinned.size(); ++i) {
      misses += !t.contains(pinned[i], i);
      ++lookups;
    }
  }
  stop = true;
  churn.join();
  std::printf(
      "index: %llu lookups of present keys while %llu inserts and removes ran, %llu false misses\n",
      static_cast<unsigned long long>(lookups), static_cast<unsigned long long>(churned.load()),
      static_cast<unsigned long long>(misses));
  EXPECT_EQ(misses, 0u);
  EXPECT_GE(lookups, kLookups);
  EXPECT_GE(churned.load(), kChurn);
}
