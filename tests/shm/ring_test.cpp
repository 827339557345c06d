// The producer ring's protocol (shm/ring.hpp) between a producer written here by hand, step by
// step as the header states it (PP1-PP3, in a memfd), and the writer's real consumer (RingSource,
// writer/ingest/ring_source.hpp, polled by the test): sequences across the ring's end, a ring
// exactly full and one claiming more, messages written but not yet published never consumed, the
// outcome words, a drain cut by its budget, and a consumer that restarts on the same ring and goes
// on from its head. (With the real producer, poscache::Producer: tests/producer/producer_test.cpp
// and tests/ingest/ring_source_test.cpp.)
#include "shm/ring.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "poscache/format.hpp"
#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/hash.hpp"
#include "test_util.hpp"
#include "writer/ingest/executor.hpp"
#include "writer/ingest/ring_source.hpp"

namespace poscache::shm {
namespace {

// The layout the protocol's words live at: what a producer in another language must match.
TEST(RingTest, TheLayoutIsTheDocumentedOne) {
  EXPECT_EQ(kRingHeaderSize, 4096u);
  EXPECT_EQ(offsetof(RingHeader, tail), 64u);
  EXPECT_EQ(offsetof(RingHeader, full_count), 72u);
  EXPECT_EQ(offsetof(RingHeader, dropped), 80u);
  EXPECT_EQ(offsetof(RingHeader, head), 128u);
  EXPECT_EQ(offsetof(RingHeader, synced), 136u);
  EXPECT_EQ(offsetof(RingHeader, ack_futex), 152u);
  EXPECT_EQ(offsetof(RingHeader, error_len), 192u);
  EXPECT_EQ(ring_bytes(8), 4096u + 8 * 512 + 8 * 8);
  alignas(RingHeader) static std::byte ring[ring_bytes(8)];
  auto* h = reinterpret_cast<RingHeader*>(ring);
  EXPECT_EQ(reinterpret_cast<std::byte*>(ring_messages(h)), ring + 4096);
  EXPECT_EQ(reinterpret_cast<std::byte*>(ring_outcomes(h, 8)), ring + 4096 + 8 * 512);
  EXPECT_EQ(outcome_word(5, RingOutcome::rejected), (5u << 8) | 5u);
  RingMessage m{};
  EXPECT_EQ(refusal_text(m), reinterpret_cast<const char*>(&m) + 160);
  EXPECT_EQ(kRingRefusalLen, 512u - 160u);
}

// A producer's ring, written as shm/ring.hpp says a producer writes it.
class HandProducerRing {
 public:
  explicit HandProducerRing(std::uint64_t capacity) : cap_(capacity) {
    fd_ = ::memfd_create("ring-test", MFD_CLOEXEC);
    bytes_ = ring_bytes(capacity);
    EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(bytes_)), 0);
    h_ = static_cast<RingHeader*>(
        ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0));
    h_->version = kRingVersion;
    h_->message_size = sizeof(RingMessage);
    h_->capacity = capacity;
    std::memcpy(h_->name, "hand", 4);
    store_release(&h_->magic, kRingMagic);
  }
  ~HandProducerRing() {
    ::munmap(h_, bytes_);
    ::close(fd_);
  }
  HandProducerRing(const HandProducerRing&) = delete;
  HandProducerRing& operator=(const HandProducerRing&) = delete;

  [[nodiscard]] int fd() const { return fd_; }
  RingHeader* h() { return h_; }
  // PP1: room for one more, from the head the consumer published.
  [[nodiscard]] bool full() const { return tail_ - load_acquire(&h_->head) == cap_; }
  // PP2 without PP3: message tail + 1 written into its slot, not published.
  RingMessage& write(std::string_view account, std::int64_t qty, std::uint64_t source_seq = 0) {
    RingMessage& m = ring_messages(h_)[(tail_ + written_) % cap_];
    std::memset(&m, 0, sizeof m);
    m.kind = static_cast<std::uint8_t>(RingKind::upsert);
    m.ns = 0;
    m.account_len = static_cast<std::uint8_t>(account.size());
    m.instrument_len = 3;
    std::memcpy(m.account, account.data(), account.size());
    std::memcpy(m.instrument, "SOL", 3);
    m.fields_mask = 1;  // qty, scale 18: the mantissa is qty * 10^18
    const int128 v = int128{qty} * 1'000'000'000'000'000'000;
    m.values[0] = static_cast<std::uint64_t>(static_cast<unsigned __int128>(v));
    m.values[1] = static_cast<std::uint64_t>(static_cast<unsigned __int128>(v) >> 64);
    m.source_seq = source_seq;
    m.key_hash = key_hash(0, account, "SOL");
    ++written_;
    return m;
  }
  // PP3: everything written so far is published with one release store.
  std::uint64_t publish() {
    tail_ += written_;
    written_ = 0;
    store_release(&h_->tail, tail_);
    return tail_;
  }
  std::uint64_t push(std::string_view account, std::int64_t qty, std::uint64_t source_seq = 0) {
    write(account, qty, source_seq);
    return publish();
  }
  [[nodiscard]] std::uint64_t head() const { return load_acquire(&h_->head); }
  [[nodiscard]] std::uint64_t outcome(std::uint64_t seq) const {
    return load_relaxed(&ring_outcomes(h_, cap_)[(seq - 1) % cap_]);
  }
  [[nodiscard]] std::string error() const {
    return std::string(reinterpret_cast<const char*>(h_->error), load_relaxed(&h_->error_len));
  }

 private:
  std::uint64_t cap_;
  int fd_ = -1;
  std::size_t bytes_ = 0;
  RingHeader* h_ = nullptr;
  std::uint64_t tail_ = 0;
  std::uint64_t written_ = 0;
};

// The writer's side: a writer on a scratch segment, its executor and the ring consumer, polled
// by the test (no thread: each step of the consumer happens where the test says).
class Consumer {
 public:
  explicit Consumer(const std::string& segment)
      : writer_(Writer::open(test::small_config(segment, 1024))),
        exec_(*writer_, nullptr),
        rings_(std::make_unique<ingest::RingSource>(*writer_, log_.sink())) {}
  std::string attach(HandProducerRing& ring, std::uint64_t conn = 1) {
    return rings_->attach(ring.fd(), conn, ::getpid(), ::getuid());
  }
  std::size_t poll(std::size_t budget = 256) { return rings_->poll(exec_, 0, budget); }
  [[nodiscard]] std::size_t rings() const { return rings_->rings(); }
  // The consumer stops (its writer goes on): the ring is released, its head stays in the ring.
  void stop() { rings_.reset(); }
  test::LogLines& log() { return log_; }

 private:
  test::LogLines log_;
  std::unique_ptr<Writer> writer_;
  ingest::CommandExecutor exec_;
  std::unique_ptr<ingest::RingSource> rings_;
};

std::string qty_of(const std::string& segment, std::string_view account) {
  Reader r = Reader::open(segment);
  Position p;
  if (r.get(0, account, "SOL", p) != ReadStatus::ok) return "absent";
  return format_field(r.namespace_info(0), p, 0);
}
std::string qty(std::int64_t v) {
  return std::to_string(v) + ".000000000000000000";
}

TEST(RingTest, SequencesRunAcrossTheRingsEndInOrderEachWithItsOutcome) {
  test::ScratchSegment seg("ring_wrap");
  Consumer c(seg.name());
  HandProducerRing ring(4);
  ASSERT_EQ(c.attach(ring), "");
  EXPECT_EQ(load_acquire(&ring.h()->attached), 1u);
  EXPECT_EQ(load_acquire(&ring.h()->synced), 0u);  // no Redis: synced never moves
  std::uint64_t seq = 0;
  for (int round = 0; round < 5; ++round) {  // 5 rounds of 3 messages through 4 slots
    for (int k = 0; k < 3; ++k) seq = ring.push("w" + std::to_string(k), round * 10 + k);
    c.poll();
    ASSERT_EQ(ring.head(), seq) << round;  // head is the producer's "applied"
    for (std::uint64_t n = seq - 2; n <= seq; ++n)
      EXPECT_EQ(ring.outcome(n), outcome_word(n, RingOutcome::applied)) << n;
  }
  EXPECT_EQ(seq, 15u);
  for (int k = 0; k < 3; ++k)
    EXPECT_EQ(qty_of(seg.name(), "w" + std::to_string(k)), qty(40 + k));  // the last round's
}

TEST(RingTest, MessagesWrittenButNotPublishedAreNeverConsumed) {
  test::ScratchSegment seg("ring_unpublished");
  Consumer c(seg.name());
  HandProducerRing ring(8);
  ASSERT_EQ(c.attach(ring), "");
  const std::uint64_t first = ring.push("w1", 1);
  // Message 2 written whole, message 3 only half (its key, not its value): no PP3 yet.
  ring.write("w2", 2);
  RingMessage& half = ring.write("w3", 0);
  half.values[0] = 0;
  EXPECT_EQ(c.poll(), 1u);
  EXPECT_EQ(ring.head(), first);
  EXPECT_EQ(qty_of(seg.name(), "w2"), "absent");
  EXPECT_EQ(qty_of(seg.name(), "w3"), "absent");
  EXPECT_EQ(c.poll(), 0u);  // polled again: still nothing beyond the tail
  // The producer finishes message 3 and publishes both with one store: both are applied.
  const int128 three = int128{3} * 1'000'000'000'000'000'000;
  half.values[0] = static_cast<std::uint64_t>(three);
  EXPECT_EQ(ring.publish(), 3u);
  EXPECT_EQ(c.poll(), 2u);
  EXPECT_EQ(ring.head(), 3u);
  EXPECT_EQ(qty_of(seg.name(), "w2"), qty(2));
  EXPECT_EQ(qty_of(seg.name(), "w3"), qty(3));
}

// Exactly full (tail = head + capacity) is a valid ring, applied whole; a tail beyond that is a
// damaged ring: dropped unread, its true head kept, the reason stored for the producer.
TEST(RingTest, AFullRingIsDrainedAndATailBeyondItDropsTheRing) {
  test::ScratchSegment seg("ring_full");
  Consumer c(seg.name());
  HandProducerRing ring(4);
  ASSERT_EQ(c.attach(ring), "");
  for (int i = 1; i <= 4; ++i) ring.push("f" + std::to_string(i), i);
  EXPECT_TRUE(ring.full());  // PP1 would answer `full` now
  EXPECT_EQ(c.poll(), 4u);
  EXPECT_EQ(ring.head(), 4u);
  EXPECT_FALSE(ring.full());
  EXPECT_EQ(qty_of(seg.name(), "f4"), qty(4));
  // A tail five ahead of the head: more than the ring holds.
  for (int i = 0; i < 4; ++i) ring.write("g", i);
  store_release(&ring.h()->tail, std::uint64_t{9});
  c.poll();
  EXPECT_EQ(load_acquire(&ring.h()->dropped), 1u);
  EXPECT_EQ(ring.head(), 4u);  // what it really applied
  EXPECT_EQ(qty_of(seg.name(), "g"), "absent");
  EXPECT_NE(ring.error().find("dropped as damaged"), std::string::npos) << ring.error();
  EXPECT_EQ(c.rings(), 0u);
  test::ScratchSegment other_segment("ring_full_again");
  Consumer again(other_segment.name());
  EXPECT_NE(again.attach(ring).find("dropped as damaged"), std::string::npos);
}

TEST(RingTest, ADrainTakesAtMostItsBudgetAndTheNextGoesOnInOrder) {
  test::ScratchSegment seg("ring_budget");
  Consumer c(seg.name());
  HandProducerRing ring(16);
  ASSERT_EQ(c.attach(ring), "");
  for (int i = 1; i <= 10; ++i) ring.push("b", i);
  EXPECT_EQ(c.poll(4), 4u);
  EXPECT_EQ(ring.head(), 4u);
  EXPECT_EQ(qty_of(seg.name(), "b"), qty(4));
  EXPECT_EQ(c.poll(4), 4u);
  EXPECT_EQ(ring.head(), 8u);
  EXPECT_EQ(c.poll(4), 2u);
  EXPECT_EQ(ring.head(), 10u);
  EXPECT_EQ(qty_of(seg.name(), "b"), qty(10));
}

// A consumer that stops (or dies) and the next one on the same ring: the next goes on from the
// head the ring holds. What the first applied but never published as its head (a kill between
// copying and the head's store, simulated by putting the head back) is applied again: an upsert
// carrying a source sequence is then stale, never applied twice over a newer value.
TEST(RingTest, ARestartedConsumerGoesOnFromTheRingsHead) {
  test::ScratchSegment seg("ring_restart");
  HandProducerRing ring(8);
  {
    Consumer first(seg.name());
    ASSERT_EQ(first.attach(ring), "");
    for (int i = 1; i <= 6; ++i) ring.push("r", i, static_cast<std::uint64_t>(i));
    first.poll();
    ASSERT_EQ(ring.head(), 6u);
    first.stop();
    EXPECT_EQ(load_acquire(&ring.h()->attached), 0u);
  }
  // Messages pushed while no consumer runs wait in the ring.
  for (int i = 7; i <= 8; ++i) ring.push("r", i, static_cast<std::uint64_t>(i));
  store_release(&ring.h()->head, std::uint64_t{4});  // messages 5 and 6 "applied, head not stored"
  Consumer next(seg.name());  // the next writer re-attaches the segment and takes the ring
  ASSERT_EQ(next.attach(ring), "");
  EXPECT_EQ(next.poll(), 4u);  // 5 to 8
  EXPECT_EQ(ring.head(), 8u);
  EXPECT_EQ(ring.outcome(5), outcome_word(5, RingOutcome::stale));  // already applied
  EXPECT_EQ(ring.outcome(6), outcome_word(6, RingOutcome::stale));
  EXPECT_EQ(ring.outcome(7), outcome_word(7, RingOutcome::applied));
  EXPECT_EQ(ring.outcome(8), outcome_word(8, RingOutcome::applied));
  EXPECT_EQ(qty_of(seg.name(), "r"), qty(8));
  // A head beyond the tail is not a ring to go on from.
  HandProducerRing bad(8);
  bad.push("x", 1);
  store_release(&bad.h()->head, std::uint64_t{3});
  test::ScratchSegment other_segment("ring_restart_other");
  Consumer other(other_segment.name());
  EXPECT_EQ(other.attach(bad), "ring indices out of range (head 3, tail 1)");
}

}  // namespace
}  // namespace poscache::shm
