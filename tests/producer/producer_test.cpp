// The producer (reader/producer/producer.cpp, poscache::Producer) against a writer in this process
// whose loop serves its socket and rings on a thread (as poscache-writer's does): opening, the
// checks a producer makes before anything reaches its ring (each naming the part and the value),
// batches that cannot be sent, a full ring counted once per push, and a ring re-attached to the
// next writer, on the same segment or on one it created again, with nothing lost. (The messages
// applied end to end, outcomes, drops and hostile rings: tests/ingest/ring_source_test.cpp.)
#include "poscache/producer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "poscache/format.hpp"
#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "test_util.hpp"
#include "writer/ingest/executor.hpp"
#include "writer/ingest/ring_source.hpp"
#include "writer/ingest/socket_source.hpp"

namespace poscache {
namespace {

using namespace std::chrono_literals;

// A writer on `segment` with its socket and ring sources, served by a loop thread until the
// object is destroyed: then the sources close (the producer sees its connection hang up) and the
// writer closes, leaving the segment for the next one.
class WriterLoop {
 public:
  explicit WriterLoop(const std::string& segment, bool fresh = false)
      : writer_(Writer::open(config(segment, fresh))),
        exec_(*writer_, nullptr),
        socket_(std::make_unique<ingest::SocketSource>(
            ingest::SocketConfig{ingest::default_socket_path(segment), 0600, "", 64},
            writer_->namespaces(), log_.sink())),
        rings_(std::make_unique<ingest::RingSource>(*writer_, log_.sink())) {
    socket_->set_rings(rings_.get());
    thread_ = std::thread([this] { loop(); });
  }
  ~WriterLoop() {
    stop_ = true;
    thread_.join();
    socket_.reset();
    rings_.reset();
  }
  WriterLoop(const WriterLoop&) = delete;
  WriterLoop& operator=(const WriterLoop&) = delete;
  void pause(bool p) { paused_ = p; }
  [[nodiscard]] std::uint64_t generation() const { return writer_->stats().generation; }

 private:
  static WriterConfig config(const std::string& segment, bool fresh) {
    WriterConfig c = test::small_config(segment, 1024);
    c.fresh = fresh;
    return c;
  }
  void loop() {
    while (!stop_) {
      std::size_t n = 0;
      if (!paused_) {
        n += rings_->poll(exec_, 0, 256);
        n += socket_->poll(exec_, 0, 256);
      }
      writer_->tick();
      if (n == 0) std::this_thread::sleep_for(20us);
    }
  }
  test::LogLines log_;
  std::unique_ptr<Writer> writer_;
  ingest::CommandExecutor exec_;
  std::unique_ptr<ingest::SocketSource> socket_;
  std::unique_ptr<ingest::RingSource> rings_;
  std::atomic<bool> stop_{false}, paused_{false};
  std::thread thread_;
};

std::unique_ptr<Producer> open_producer(const std::string& segment, const std::string& name,
                                        std::uint64_t capacity = 64) {
  ProducerConfig c;
  c.segment = segment;
  c.name = name;
  c.capacity = capacity;
  return Producer::open(c);
}

std::string qty_in(const std::string& segment, std::string_view account) {
  Reader r = Reader::open(segment);
  Position p;
  if (r.get(0, account, "SOL", p) != ReadStatus::ok) return "absent";
  return format_field(r.namespace_info(0), p, 0);
}

ProducerConfig config_of(const std::string& segment, const std::string& name,
                         std::uint64_t capacity = 64,
                         std::chrono::milliseconds connect_timeout = 2000ms) {
  ProducerConfig c;
  c.segment = segment;
  c.name = name;
  c.capacity = capacity;
  c.connect_timeout = connect_timeout;
  return c;
}

std::string open_error(const ProducerConfig& c) {
  try {
    Producer::open(c);
  } catch (const Error& e) {
    return e.what();
  }
  return "opened";
}

TEST(ProducerTest, OpenRefusesABadNameABadCapacityOrNoWriterNamingWhy) {
  test::ScratchSegment seg("prod_open");
  for (const std::string& bad :
       {std::string(), std::string("has space"), std::string("a/b"), std::string(32, 'n')})
    EXPECT_EQ(open_error(config_of(seg.name(), bad)),
              "producer name '" + bad + "' must be 1 to 31 of [A-Za-z0-9._-]");
  for (const std::uint64_t cap : {0ull, 1ull, 3ull, 6ull, 1ull << 21})
    EXPECT_EQ(open_error(config_of(seg.name(), "p", cap)),
              "producer ring capacity " + std::to_string(cap) +
                  " must be a power of two from 2 to 1048576");
  // A segment whose writer serves no socket: open waits its connect_timeout, then names the
  // socket it could not reach.
  auto w = Writer::open(test::small_config(seg.name()));
  const auto t0 = std::chrono::steady_clock::now();
  const std::string why = open_error(config_of(seg.name(), "lonely", 64, 200ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
  EXPECT_EQ(why.rfind("producer 'lonely': cannot connect to the writer's socket /dev/shm/" +
                          seg.name() + ".sock",
                      0),
            0u)
      << why;
}

TEST(ProducerTest, AnOpenProducerIsAttachedAndItsSequencesStartAtOne) {
  test::ScratchSegment seg("prod_attached");
  WriterLoop w(seg.name());
  auto p = open_producer(seg.name(), "first");
  const ProducerStats st = p->stats();
  EXPECT_TRUE(st.attached);
  EXPECT_FALSE(st.redis);
  EXPECT_EQ(st.pushed, 0u);
  EXPECT_EQ(st.reconnects, 0u);  // the first attach is open()'s own
  auto u = p->make_update("spot", "w1", "SOL", {{"qty", "1"}});
  ASSERT_TRUE(u) << u.error();
  EXPECT_EQ(p->push(*u).seq, 1u);
  EXPECT_EQ(p->push(*u).seq, 2u);
  EXPECT_EQ(p->wait_applied(2, 5s), WaitStatus::done);
  EXPECT_EQ(p->applied(), 2u);
  EXPECT_EQ(p->wait_synced(2, 1ms), WaitStatus::no_redis);
}

TEST(ProducerTest, MakeUpdateChecksEveryPartAgainstTheSchemaNamingIt) {
  test::ScratchSegment seg("prod_make");
  WriterLoop w(seg.name());
  auto p = open_producer(seg.name(), "maker");
  const auto error_of =
      [&](std::string_view ns, std::string_view account, std::string_view instrument,
          std::initializer_list<std::pair<std::string_view, std::string_view>> f) {
        auto u = p->make_update(ns, account, instrument, f);
        EXPECT_FALSE(u) << ns << " " << account << " " << instrument;
        return u ? std::string() : u.error();
      };
  EXPECT_EQ(error_of("futures", "w1", "SOL", {{"qty", "1"}}), "unknown namespace 'futures'");
  EXPECT_NE(error_of("spot", "w:1", "SOL", {{"qty", "1"}}).find("'w:1'"), std::string::npos);
  EXPECT_NE(error_of("spot", "w1", "", {{"qty", "1"}}).find("instrument"), std::string::npos);
  EXPECT_EQ(error_of("spot", "w1", "SOL", {}), "an update needs at least one field");
  EXPECT_EQ(error_of("spot", "w1", "SOL", {{"qtty", "1"}}), "namespace 'spot' has no field 'qtty'");
  EXPECT_EQ(error_of("spot", "w1", "SOL", {{"qty", "1"}, {"qty", "2"}}), "field 'qty' given twice");
  const std::string decimal = error_of("spot", "w1", "SOL", {{"qty", "1.5x"}});
  EXPECT_EQ(decimal.rfind("field 'qty': ", 0), 0u) << decimal;
  EXPECT_NE(decimal.find("1.5x"), std::string::npos) << decimal;
  const std::string integer = error_of("moonwell", "0xab", "USDC", {{"blocks_unhealthy", "1.5"}});
  EXPECT_EQ(integer.rfind("field 'blocks_unhealthy': ", 0), 0u) << integer;
  EXPECT_EQ(error_of("moonwell", "0xab", "USDC", {{"debt_asset", std::string(49, 'a')}}),
            "text field 'debt_asset' holds at most 48 bytes, got 49");
  // A good one holds the values at their fields' scales, the mode and the sequence.
  auto u = p->make_update("spot", "w1", "SOL", {{"qty", "-2.5"}, {"fees", "0.01"}}, 42,
                          UpdateMode::replace);
  ASSERT_TRUE(u) << u.error();
  const Reader reader = Reader::open(seg.name());
  const NamespaceInfo& spot = reader.namespace_info(0);
  const auto qty = *spot.field_index("qty"), fees = *spot.field_index("fees");
  EXPECT_EQ(u->fields_mask, (1u << qty) | (1u << fees));
  EXPECT_EQ(format_decimal(u->values[qty], 18), "-2.500000000000000000");
  EXPECT_EQ(format_decimal(u->values[fees], 18), "0.010000000000000000");
  EXPECT_EQ(u->source_seq, 42u);
  EXPECT_EQ(u->mode, UpdateMode::replace);
  EXPECT_EQ(*p->namespace_id("marks"), 2);
  EXPECT_EQ(p->namespace_id("nope").error(), "unknown namespace 'nope'");
}

// An Update built by hand (not by make_update) is checked again at the push: nothing a reader
// could not hold reaches the ring, and the error says which rule it broke.
TEST(ProducerTest, AHandBuiltUpdateIsCheckedAtThePushAndNothingBadReachesTheRing) {
  test::ScratchSegment seg("prod_push");
  WriterLoop w(seg.name());
  auto p = open_producer(seg.name(), "hands");
  const auto good = [] {
    Update u;
    u.ns = 0;
    u.account_len = 2;
    std::memcpy(u.account, "w1", 2);
    u.instrument_len = 3;
    std::memcpy(u.instrument, "SOL", 3);
    u.fields_mask = 1;
    u.values[0] = 1;
    return u;
  };
  const auto refused = [&](const Update& u) {
    const PushResult r = p->push(u);
    EXPECT_EQ(r.status, PushStatus::bad_input);
    EXPECT_EQ(r.seq, 0u);
    return p->error();
  };
  Update u = good();
  u.ns = 3;
  EXPECT_EQ(refused(u), "upsert: namespace id beyond the segment's");
  u = good();
  u.account_len = 0;
  EXPECT_EQ(refused(u), "upsert: account is not a valid key part");
  u = good();
  u.account[1] = '*';
  EXPECT_EQ(refused(u), "upsert: account is not a valid key part");
  u = good();
  u.instrument_len = kMaxInstrumentLen + 1;
  EXPECT_EQ(refused(u), "upsert: instrument is not a valid key part");
  u = good();
  u.fields_mask = 0;
  EXPECT_EQ(refused(u), "upsert: no field given");
  u = good();
  u.fields_mask = 1u << 7;  // spot has seven fields, 0 to 6
  EXPECT_EQ(refused(u), "upsert: a field beyond the namespace's schema");
  u = good();
  u.values[0] = kDecimalLimit;
  EXPECT_EQ(refused(u), "upsert: a value beyond its field's range");
  u = good();
  u.ns = 1;  // moonwell: blocks_unhealthy (field 5) is an int64
  u.fields_mask = 1u << 5;
  u.values[5] = int128{INT64_MAX} + 1;
  EXPECT_EQ(refused(u), "upsert: a value beyond its field's range");
  u = good();
  u.ns = 1;  // collateral_asset (field 6) is text, in value slots 6-8
  u.fields_mask = 1u << 6;
  std::memcpy(reinterpret_cast<char*>(&u.values[6]), "\xC0\xAF", 2);
  EXPECT_EQ(refused(u), "upsert: a text field that is not UTF-8 of at most its length");
  EXPECT_EQ(p->stats().pushed, 0u);
  const PushResult ok = p->push(good());
  EXPECT_EQ(ok.status, PushStatus::ok);
  EXPECT_EQ(ok.seq, 1u);
  ASSERT_EQ(p->wait_applied(ok.seq, 5s), WaitStatus::done);
  EXPECT_EQ(p->outcome(ok.seq), Outcome::applied);
}

TEST(ProducerTest, EveryCommandRefusedAtThePushNamesTheCommandAndTheCause) {
  test::ScratchSegment seg("prod_cmds");
  WriterLoop w(seg.name());
  auto p = open_producer(seg.name(), "commands");
  const auto refused = [&](PushResult r) {
    EXPECT_EQ(r.status, PushStatus::bad_input);
    return p->error();
  };
  EXPECT_EQ(refused(p->fill("marks", "a", "B", Side::buy, "1", "1")),
            "fill: namespace 'marks' lacks the trading fields fill needs (qty, avg_price, "
            "cost_basis, realized_pnl, fees)");
  EXPECT_EQ(refused(p->fill("spot", "a", "B", Side::buy, "0", "1")),
            "fill: qty must be greater than 0 (the side says buy or sell)");
  EXPECT_EQ(refused(p->fill("spot", "a", "B", Side::sell, "1", "-1")),
            "fill: price must not be negative");
  EXPECT_EQ(refused(p->fill("spot", "a", "B", Side::buy, "1", "1", "0", std::string(65, 't'))),
            "fill: trade id longer than 64 characters");
  EXPECT_EQ(refused(p->fill("spot", "a", "B", Side::buy, "1", "1", "x")).rfind("fill: fee: ", 0),
            0u);
  EXPECT_EQ(refused(p->fill("nope", "a", "B", Side::buy, "1", "1")),
            "fill: unknown namespace 'nope'");
  EXPECT_EQ(refused(p->mark("moonwell", "USDC", "1")),
            "mark: namespace 'moonwell' has no decimal field 'mark_price'");
  EXPECT_EQ(refused(p->mark("spot", "SOL", "-1")), "mark: price must not be negative");
  EXPECT_EQ(refused(p->mark("spot", "SOL", "1e3")).rfind("mark: price: ", 0), 0u);
  EXPECT_EQ(refused(p->add("spot", "a", "B", "qty", 1)),
            "add: field 'qty' of namespace 'spot' is a decimal; add works on int64 fields");
  EXPECT_EQ(refused(p->reset("moonwell", "a", "B", "nope")),
            "add: namespace 'moonwell' has no field 'nope'");
  EXPECT_EQ(refused(p->add("nope", "a", "B", "x", 1)), "add: unknown namespace 'nope'");
  EXPECT_EQ(refused(p->erase("spot", "a b", "B")).rfind("erase: ", 0), 0u);
  EXPECT_EQ(refused(p->invalidate_account("a*b")).rfind("invalidate: ", 0), 0u);
  EXPECT_EQ(refused(p->invalidate_account("a", "nope")), "invalidate: unknown namespace 'nope'");
  EXPECT_EQ(refused(p->invalidate_namespace("nope")), "invalidate: unknown namespace 'nope'");
  EXPECT_EQ(refused(p->invalidate_matching("")),
            "invalidate: a glob over a ring has 1 to 96 characters; this one has 0 (longer ones: "
            "the socket)");
  EXPECT_EQ(refused(p->invalidate_matching(std::string(97, '*'))).find("this one has 97"),
            std::string("invalidate: a glob over a ring has 1 to 96 characters; ").size());
  EXPECT_EQ(p->stats().pushed, 0u);  // none of them reached the ring
  // The same commands, right, all travel.
  std::uint64_t last = 0;
  for (const PushResult& r :
       {p->fill("spot", "a", "B", Side::buy, "1", "1", "0.5", std::string(64, 't')),
        p->mark("spot", "B", "2"), p->add("moonwell", "a", "B", "blocks_unhealthy", 1),
        p->reset("moonwell", "a", "B", "blocks_unhealthy"), p->erase("marks", "a", "B"),
        p->invalidate_account("a", "marks"), p->invalidate_namespace("marks"),
        p->invalidate_matching(std::string(96, '*')), p->invalidate_all()}) {
    EXPECT_EQ(r.status, PushStatus::ok) << p->error();
    EXPECT_EQ(r.seq, last + 1);
    last = r.seq;
  }
  ASSERT_EQ(p->wait_applied(last, 5s), WaitStatus::done);
  EXPECT_EQ(p->stats().rejected, 0u);
}

TEST(ProducerTest, ABatchThatCannotBeSentIsRefusedWholeAndNothingOfItIsQueued) {
  test::ScratchSegment seg("prod_batch");
  WriterLoop w(seg.name());
  auto p = open_producer(seg.name(), "batcher", 8);
  EXPECT_EQ(p->end_batch().status, PushStatus::bad_input);
  EXPECT_EQ(p->error(), "end_batch: no batch is open (begin_batch first)");
  p->begin_batch();
  EXPECT_EQ(p->end_batch().status, PushStatus::bad_input);
  EXPECT_EQ(p->error(), "batch: no commands; a batch has 1 to 64");
  // Eight commands need nine slots: more than this ring's eight.
  p->begin_batch();
  for (int i = 0; i < 8; ++i) {
    const PushResult staged = p->erase("spot", "w" + std::to_string(i), "SOL");
    EXPECT_EQ(staged.status, PushStatus::ok);
    EXPECT_EQ(staged.seq, 0u);  // staged: no sequence yet
  }
  EXPECT_EQ(p->end_batch().status, PushStatus::bad_input);
  EXPECT_EQ(p->error(),
            "batch: 8 commands need a ring of at least 9 messages; this producer's holds 8");
  EXPECT_FALSE(p->in_batch());
  // Aborted: what was staged is dropped, and the next push goes out alone.
  p->begin_batch();
  p->fill("spot", "w1", "SOL", Side::buy, "1", "1");
  p->abort_batch();
  EXPECT_FALSE(p->in_batch());
  EXPECT_EQ(p->stats().pushed, 0u);
  const PushResult alone = p->erase("spot", "w1", "SOL");
  EXPECT_EQ(alone.seq, 1u);
  // Seven commands fit: the header is message 2 and command i is message 3 + i.
  p->begin_batch();
  for (int i = 0; i < 7; ++i) p->fill("spot", "b", "I" + std::to_string(i), Side::buy, "1", "1");
  const PushResult b = p->end_batch(1s);
  ASSERT_EQ(b.status, PushStatus::ok) << p->error();
  EXPECT_EQ(b.seq, 2u);
  EXPECT_EQ(p->stats().pushed, 9u);
  ASSERT_EQ(p->wait_applied(b.seq, 5s), WaitStatus::done);
  for (std::uint64_t s = b.seq; s <= b.seq + 7; ++s) EXPECT_EQ(p->outcome(s), Outcome::applied);
}

// A push that finds the ring full is counted once, whether it answers at once or waits; a wait
// for a message the writer has not applied answers timeout after its time, not before.
TEST(ProducerTest, AFullRingIsCountedOncePerPushHoweverLongItWaits) {
  test::ScratchSegment seg("prod_full");
  WriterLoop w(seg.name());
  auto p = open_producer(seg.name(), "counted", 4);
  w.pause(true);
  auto u = p->make_update("spot", "w1", "SOL", {{"qty", "1"}});
  std::uint64_t last = 0;
  for (int i = 0; i < 4; ++i) last = p->push(*u).seq;
  EXPECT_EQ(p->stats().full, 0u);
  EXPECT_EQ(p->push(*u).status, PushStatus::full);
  EXPECT_EQ(p->stats().full, 1u);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(p->push(*u, 20ms).status, PushStatus::full);  // thousands of looks at the head
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
  EXPECT_EQ(p->stats().full, 2u);
  EXPECT_EQ(p->fill("spot", "w1", "SOL", Side::buy, "1", "1", "0", {}, 5ms).status,
            PushStatus::full);
  EXPECT_EQ(p->stats().full, 3u);
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(p->wait_applied(last, 30ms), WaitStatus::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - t1, 30ms);
  EXPECT_EQ(p->outcome(last), Outcome::pending);
  w.pause(false);
  EXPECT_EQ(p->wait_applied(last, 5s), WaitStatus::done);
  EXPECT_EQ(p->push(*u).seq, last + 1);  // the refused pushes took no sequence
}

// The writer goes away with messages unapplied; the producer goes on pushing into its ring; the
// next writer on the segment gets the same ring from the producer's watcher and applies what was
// left, in order, once.
TEST(ProducerTest, TheRingIsReattachedToTheNextWriterAndNothingIsLost) {
  test::ScratchSegment seg("prod_reattach");
  auto w = std::make_unique<WriterLoop>(seg.name());
  auto p = open_producer(seg.name(), "survivor", 64);
  const auto push_qty = [&](int q) {
    auto u = p->make_update("spot", "w1", "SOL", {{"qty", std::to_string(q)}});
    const PushResult r = p->push(*u);
    EXPECT_EQ(r.status, PushStatus::ok) << p->error();
    return r.seq;
  };
  ASSERT_EQ(p->wait_applied(push_qty(1), 5s), WaitStatus::done);
  w->pause(true);
  push_qty(2);
  push_qty(3);  // published, not applied, when the writer stops
  w.reset();
  EXPECT_TRUE(test::eventually([&] { return !p->stats().attached; }, 5s));
  push_qty(4);  // no writer now: into the ring all the same
  const std::uint64_t last = push_qty(5);
  EXPECT_EQ(p->wait_applied(last, 20ms), WaitStatus::timeout);
  EXPECT_EQ(p->applied(), 1u);
  WriterLoop next(seg.name());
  EXPECT_EQ(p->wait_applied(last, 10s), WaitStatus::done);
  EXPECT_EQ(qty_in(seg.name(), "w1"), "5.000000000000000000");
  const ProducerStats st = p->stats();
  EXPECT_EQ(st.reconnects, 1u);
  EXPECT_TRUE(st.attached);
  EXPECT_EQ(st.applied, 5u);
  EXPECT_EQ(st.rejected, 0u);
  for (std::uint64_t s = 2; s <= last; ++s) EXPECT_EQ(p->outcome(s), Outcome::applied) << s;
}

// A writer that creates the segment again (a new generation) takes the ring as well: the
// producer's messages reach the new segment.
TEST(ProducerTest, AWriterThatCreatesTheSegmentAgainGetsTheRingToo) {
  test::ScratchSegment seg("prod_generation");
  auto w = std::make_unique<WriterLoop>(seg.name());
  const std::uint64_t first_generation = w->generation();
  auto p = open_producer(seg.name(), "follower", 64);
  auto u = p->make_update("spot", "old", "SOL", {{"qty", "1"}});
  ASSERT_EQ(p->wait_applied(p->push(*u).seq, 5s), WaitStatus::done);
  w.reset();
  EXPECT_TRUE(test::eventually([&] { return !p->stats().attached; }, 5s));
  WriterLoop fresh(seg.name(), true);
  ASSERT_NE(fresh.generation(), first_generation);
  EXPECT_TRUE(test::eventually([&] { return p->stats().attached; }, 10s));
  auto v = p->make_update("spot", "new", "SOL", {{"qty", "2"}});
  ASSERT_TRUE(v) << v.error();
  const PushResult r = p->push(*v);
  ASSERT_EQ(r.status, PushStatus::ok) << p->error();
  ASSERT_EQ(p->wait_applied(r.seq, 10s), WaitStatus::done);
  EXPECT_EQ(p->outcome(r.seq), Outcome::applied);
  EXPECT_EQ(qty_in(seg.name(), "new"), "2.000000000000000000");
  EXPECT_EQ(qty_in(seg.name(), "old"), "absent");  // a new segment: the old position is gone
}

}  // namespace
}  // namespace poscache
