// Hand-built slot states first (an odd sequence, a sequence that moves under the reader), then a
// threaded torture with a self-checking payload.
#include "shm/seqlock.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

using namespace poscache::shm;

namespace {
std::unique_ptr<Slot> blank_slot() {
  auto s = std::make_unique<Slot>();
  s->seq = 0;
  for (auto& w : s->payload) w = 0;
  return s;
}
}  // namespace

TEST(SeqlockTest, ReadsAStableSlot) {
  auto slot = blank_slot();
  const auto s = begin_write(*slot);
  for (std::size_t i = 0; i < kPayloadWords; ++i) store_word(*slot, i, 1000 + i);
  publish(*slot, s);
  std::uint64_t out[kPayloadWords];
  ASSERT_TRUE(try_read(*slot, out, kPayloadWords));
  for (std::size_t i = 0; i < kPayloadWords; ++i) EXPECT_EQ(out[i], 1000 + i);
}

TEST(SeqlockTest, RefusesASlotWithAnOddSequence) {
  auto slot = blank_slot();
  begin_write(*slot);  // the writer is mid-write (or died there)
  std::uint64_t out[kPayloadWords];
  EXPECT_FALSE(try_read(*slot, out, kPayloadWords));
  EXPECT_FALSE(read_bounded(*slot, out, kPayloadWords));  // bounded: returns, does not hang
}

TEST(SeqlockTest, BoundedReadReturnsWhenTheWriterNeverFinishes) {
  auto slot = blank_slot();
  slot->seq = 7;  // a dead writer's odd sequence
  std::uint64_t out[kPayloadWords];
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(read_bounded(*slot, out, kPayloadWords));
  // Not a timing assertion: only that it came back at all (a hang would time the test out).
  EXPECT_GE(std::chrono::steady_clock::now(), t0);
}

TEST(SeqlockTest, WriterStoresOnlyAfterTheSequenceTurnsOdd) {
  auto slot = blank_slot();
  const auto s = begin_write(*slot);
  EXPECT_EQ(load_relaxed(&slot->seq) & 1, 1u);
  store_word(*slot, 0, 5);
  publish(*slot, s);
  EXPECT_EQ(load_relaxed(&slot->seq), s + 2);
}

// A writer thread rewrites the slot with payloads where every word is derived from word 0; a
// reader thread checks every copy it accepts. Any torn copy fails the check.
TEST(SeqlockTest, ConcurrentReadersNeverAcceptATornCopy) {
  auto slot = blank_slot();
  for (std::size_t i = 0; i < kPayloadWords; ++i) slot->payload[i] = i;  // v = 0, consistent
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> writes{0};
  std::thread writer([&] {
    for (std::uint64_t v = 1; !stop.load(std::memory_order_relaxed); ++v) {
      const auto s = begin_write(*slot);
      for (std::size_t i = 0; i < kPayloadWords; ++i) store_word(*slot, i, v * 1000003 + i);
      publish(*slot, s);
      writes.store(v, std::memory_order_relaxed);
    }
  });
  // Not a time window: both sides must have done their share (a descheduled writer thread would
  // otherwise leave nothing to tear); the deadline only turns a hang into a failure.
  constexpr std::uint64_t kCopies = 50'000, kWrites = 200'000;
  std::uint64_t verified = 0, torn = 0, changed = 0, last_v = 0;
  std::uint64_t out[kPayloadWords];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (
      (verified < kCopies || writes.load(std::memory_order_relaxed) < kWrites || changed < 1000) &&
      std::chrono::steady_clock::now() < deadline) {
    if (!try_read(*slot, out, kPayloadWords)) continue;
    const std::uint64_t v = out[0] / 1000003;
    for (std::size_t i = 0; i < kPayloadWords; ++i) torn += out[i] != v * 1000003 + i;
    changed += v != last_v;
    last_v = v;
    ++verified;
  }
  stop = true;
  writer.join();
  std::printf(
      "seqlock: %llu consistent copies verified (%llu of a new write) while %llu writes ran, %llu "
      "torn\n",
      static_cast<unsigned long long>(verified), static_cast<unsigned long long>(changed),
      static_cast<unsigned long long>(writes.load()), static_cast<unsigned long long>(torn));
  EXPECT_EQ(torn, 0u);
  EXPECT_GE(verified, kCopies);
  EXPECT_GE(writes.load(), kWrites);
  EXPECT_GE(changed, 1000u) << "the reader hardly ever saw the writer's work overlap its reads";
}
