// The writer's LRU order (writer/recency_log.hpp) against a reference model: a map from slot to
// the time of its last change. Many compaction passes, expiry cursors, the stamp counter's wrap.
#include "writer/recency_log.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

using poscache::detail::RecencyLog;

namespace {

// What the log must answer: each live slot with its namespace and the tick of its last touch.
struct Model {
  struct Live {
    std::uint64_t tick;
    std::uint16_t ns;
  };
  std::map<std::uint32_t, Live> live;
  std::uint64_t tick = 0;
  void touch(std::uint32_t s, std::uint16_t ns) { live[s] = {++tick, ns}; }
  void forget(std::uint32_t s) { live.erase(s); }
  // Live slots, least recently touched first (optionally of one namespace).
  std::vector<std::uint32_t> order(int ns = -1) const {
    std::map<std::uint64_t, std::uint32_t> by_tick;
    for (const auto& [s, l] : live) {
      if (ns < 0 || l.ns == ns) by_tick[l.tick] = s;
    }
    std::vector<std::uint32_t> out;
    for (const auto& [t, s] : by_tick) out.push_back(s);
    return out;
  }
};

std::vector<std::uint32_t> log_order(const RecencyLog& log, int ns = -1) {
  std::vector<std::uint32_t> out;
  log.for_each([&](std::uint32_t s, std::uint16_t of) {
    if (ns < 0 || of == ns) out.push_back(s);
  });
  return out;
}

}  // namespace

TEST(RecencyLogTest, TheOldestIsTheLeastRecentlyTouchedAndFreedSlotsDoNotCount) {
  RecencyLog log(8);
  for (std::uint32_t s = 0; s < 5; ++s) log.touch(s, 0);
  EXPECT_EQ(log.oldest(), 0u);
  log.touch(0, 0);  // updated: now the newest
  EXPECT_EQ(log.oldest(), 1u);
  log.forget(1);
  log.forget(2);
  EXPECT_EQ(log.oldest(), 3u);
  EXPECT_EQ(log_order(log), (std::vector<std::uint32_t>{3, 4, 0}));
  log.forget(3);
  log.forget(4);
  log.forget(0);
  EXPECT_EQ(log.oldest(), RecencyLog::kNone);
  log.touch(2, 1);  // a freed slot reused
  EXPECT_EQ(log.oldest(), 2u);
}

// Random churn over a full table (capacity 1000, a 4096-entry ring): updates of random slots,
// evictions of the oldest, frees and reuses, through hundreds of compaction passes. After every
// operation the oldest agrees with the model; every few hundred, the whole order and each
// namespace's order do too, and the ring never holds more than the bound the header argues.
TEST(RecencyLogTest, AgreesWithAReferenceModelThroughManyCompactionPasses) {
  constexpr std::uint32_t kCap = 1000;
  RecencyLog log(kCap);
  Model m;
  std::mt19937 rng(7);
  std::vector<std::uint32_t> free_slots;
  for (std::uint32_t s = 0; s < kCap; ++s) free_slots.push_back(s);
  std::uint64_t max_held = 0;
  for (int op = 0; op < 200'000; ++op) {
    const auto what = static_cast<unsigned>(rng() % 100);
    if (what < 70 && !m.live.empty()) {  // update a random live slot (a hot subset half the time)
      auto it = m.live.begin();
      std::advance(it,
                   rng() % (rng() % 2 ? std::min<std::size_t>(m.live.size(), 20) : m.live.size()));
      const std::uint32_t s = it->first;
      const std::uint16_t ns = it->second.ns;
      log.touch(s, ns);
      m.touch(s, ns);
    } else if (what < 90 && !free_slots.empty()) {  // insert into a free slot
      const std::uint32_t s = free_slots.back();
      free_slots.pop_back();
      const auto ns = static_cast<std::uint16_t>(rng() % 3);
      log.touch(s, ns);
      m.touch(s, ns);
    } else if (what < 95 && !m.live.empty()) {  // evict the oldest
      const std::uint32_t s = log.oldest();
      ASSERT_EQ(s, m.order().front()) << "op " << op;
      log.forget(s);
      m.forget(s);
      free_slots.push_back(s);
    } else if (!m.live.empty()) {  // erase a random one
      auto it = m.live.begin();
      std::advance(it, rng() % m.live.size());
      const std::uint32_t s = it->first;
      log.forget(s);
      m.forget(s);
      free_slots.push_back(s);
    }
    max_held = std::max(max_held, log.held());
    if (op % 509 == 0) {
      ASSERT_EQ(log_order(log), m.order()) << "op " << op;
      for (int ns = 0; ns < 3; ++ns)
        ASSERT_EQ(log_order(log, ns), m.order(ns)) << "op " << op << " ns " << ns;
      const std::uint32_t oldest = log.oldest();
      ASSERT_EQ(oldest, m.live.empty() ? RecencyLog::kNone : m.order().front()) << "op " << op;
    }
  }
  EXPECT_LE(max_held, log.ring_size() / 2 + log.ring_size() / 6 + 1);
  EXPECT_EQ(log.forced_passes(), 0u);
  // Dead entries were reclaimed: what is held is within a pass's slack of what is live.
  EXPECT_LT(log.held(), log.ring_size() / 2 + log.ring_size() / 6 + 1);
}

// Each expiring namespace's oldest, found by its cursor past the other namespaces' entries and
// dead ones, while compaction moves entries under the cursors. A small budget makes the cursor
// stop and resume.
TEST(RecencyLogTest, ExpiryCursorsFindEachNamespacesOldestWhileCompactionMovesEntries) {
  constexpr std::uint32_t kCap = 600;
  RecencyLog log(kCap);
  const std::vector<std::uint16_t> expiring = {1, 2};
  log.set_expiring(expiring);
  Model m;
  std::mt19937 rng(11);
  for (std::uint32_t s = 0; s < kCap; ++s) {
    const auto ns = static_cast<std::uint16_t>(s % 4);
    log.touch(s, ns);
    m.touch(s, ns);
  }
  for (int op = 0; op < 300'000; ++op) {
    const auto s = static_cast<std::uint32_t>(rng() % kCap);
    if (m.live.count(s) != 0 && rng() % 8 == 0) {
      log.forget(s);
      m.forget(s);
    } else {
      const std::uint16_t ns =
          m.live.count(s) != 0 ? m.live[s].ns : static_cast<std::uint16_t>(rng() % 4);
      log.touch(s, ns);
      m.touch(s, ns);
    }
    if (op % 37 == 0) {
      const std::uint16_t ns = expiring[rng() % 2];
      const std::vector<std::uint32_t> want = m.order(ns);
      std::size_t budget = 1 + rng() % 64;
      std::uint32_t got = log.oldest_of(ns, budget);
      while (got == RecencyLog::kNone && budget == 0) {  // ran out: resume where it stopped
        budget = 1 + rng() % 64;
        got = log.oldest_of(ns, budget);
      }
      ASSERT_EQ(got, want.empty() ? RecencyLog::kNone : want.front())
          << "op " << op << " ns " << ns;
      if (!want.empty() && rng() % 2 == 0) {  // expire it, as tick() does
        log.forget(got);
        m.forget(got);
      }
    }
    if (op % 2003 == 0) {  // expire all of namespace 1: its cursor runs to the end of the log
      std::size_t budget = 1'000'000;
      for (std::uint32_t got; (got = log.oldest_of(1, budget)) != RecencyLog::kNone;) {
        log.forget(got);
        m.forget(got);
      }
      ASSERT_TRUE(m.order(1).empty()) << "op " << op;
    }
  }
  std::size_t budget = 1;
  EXPECT_EQ(log.oldest_of(0, budget), RecencyLog::kNone);  // not an expiring namespace
}

// Stamps are 32-bit and 0 means "freed": a counter that wraps skips 0, and entries made just
// before the wrap still order correctly against those made after it.
TEST(RecencyLogTest, TheStampCounterWrapsWithoutReviving) {
  RecencyLog log(16);
  log.set_next_stamp_for_test(0xFFFF'FFF0u);
  Model m;
  for (std::uint32_t i = 0; i < 64; ++i) {
    const std::uint32_t s = i % 16;
    log.touch(s, 0);
    m.touch(s, 0);
    if (i % 5 == 0) {
      log.forget(s);
      m.forget(s);
    }
    ASSERT_EQ(log_order(log), m.order()) << "touch " << i;
  }
}
