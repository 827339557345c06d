#include "poscache/reader.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "poscache/writer.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace std::chrono_literals;

class ReaderTest : public ::testing::Test {
 protected:
  test::ScratchSegment seg{"r"};
  std::unique_ptr<Writer> w = Writer::open(test::small_config(seg.name(), 32));
  Reader r = Reader::open(seg.name());
};

TEST_F(ReaderTest, ReportsNotFoundAndBadKeys) {
  Position p;
  EXPECT_EQ(r.get("spot", "nobody", "SOL", p), ReadStatus::not_found);
  EXPECT_EQ(r.get("nope", "a", "SOL", p), ReadStatus::bad_key);
  EXPECT_EQ(r.get(NamespaceId{9}, "a", "SOL", p), ReadStatus::bad_key);
  EXPECT_EQ(r.get("spot", "", "SOL", p), ReadStatus::bad_key);
  EXPECT_EQ(r.get("spot", std::string(65, 'a'), "SOL", p), ReadStatus::bad_key);
}

TEST_F(ReaderTest, SeesTheSchemaTheWriterCreatedTheSegmentWith) {
  ASSERT_EQ(r.namespaces().size(), 3u);
  EXPECT_EQ(r.namespaces()[1].name, "moonwell");
  EXPECT_EQ(r.namespaces()[1].fields[3].name, "health_factor");
  EXPECT_EQ(r.namespaces()[2].stale_after, 1s);
  EXPECT_EQ(*r.namespace_id("marks"), 2);
}

TEST_F(ReaderTest, ListsAnAccountsPositionsAndScansByNamespaceAndGlob) {
  w->upsert(*w->make_update("spot", "alice", "SOL", {{"qty", "1"}}));
  w->upsert(*w->make_update("spot", "alice", "BTC", {{"qty", "2"}}));
  w->upsert(*w->make_update("marks", "alice", "SOL", {{"bid", "3"}}));
  w->upsert(*w->make_update("spot", "bob", "SOL", {{"qty", "4"}}));
  EXPECT_EQ(r.positions_of("alice").size(), 3u);
  ScanFilter f;
  f.ns = *r.namespace_id("spot");
  std::size_t n = 0;
  r.scan(f, [&](const Position&) { ++n; });
  EXPECT_EQ(n, 3u);
  f = {};
  f.glob = "*:*:SOL";
  n = 0;
  r.scan(f, [&](const Position& p) {
    EXPECT_EQ(p.instrument_view(), "SOL");
    ++n;
  });
  EXPECT_EQ(n, 3u);
}

TEST_F(ReaderTest, ChangeSequenceMovesAndWaitersWakeOnAReadOnlyMapping) {
  const auto seen = r.change_sequence();
  EXPECT_FALSE(r.wait_for_change(seen, 20ms));  // nothing changed: times out
  std::thread producer([&] {
    std::this_thread::sleep_for(30ms);
    w->upsert(*w->make_update("spot", "a", "SOL", {{"qty", "1"}}));
    w->tick();  // wakes futex waiters (rate limited by wake_interval)
  });
  EXPECT_TRUE(r.wait_for_change(seen, 5s));
  producer.join();
  EXPECT_GT(r.change_sequence(), seen);
}

TEST_F(ReaderTest, WriterLivenessIsVisible) {
  w->heartbeat();
  EXPECT_LT(r.writer().heartbeat_age_ns, 100'000'000);
  w->tick();
  const WriterInfo info = r.writer();
  EXPECT_EQ(info.pid, ::getpid());
  EXPECT_TRUE(info.alive);
  EXPECT_GT(info.heartbeat_interval_ns, 0);
  w->close();
  EXPECT_FALSE(r.writer().alive);
  EXPECT_EQ(r.stats().state, "closed");
}

TEST_F(ReaderTest, FollowsAWriterThatRecreatedTheSegment) {
  w->upsert(*w->make_update("spot", "a", "SOL", {{"qty", "1"}}));
  const auto gen = r.generation();
  w.reset();
  WriterConfig c = test::small_config(seg.name(), 64);  // different capacity
  c.recreate_on_mismatch = true;
  auto w2 = Writer::open(c);
  Position p;
  EXPECT_EQ(r.get("spot", "a", "SOL", p), ReadStatus::retired);
  EXPECT_EQ(r.follow(), FollowResult::reattached);
  EXPECT_NE(r.generation(), gen);
  EXPECT_EQ(r.stats().capacity, 64u);
  EXPECT_EQ(r.get("spot", "a", "SOL", p), ReadStatus::not_found);  // a fresh segment
  w2->upsert(*w2->make_update("spot", "a", "SOL", {{"qty", "5"}}));
  EXPECT_EQ(r.get("spot", "a", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(r.follow(), FollowResult::same);
}

TEST_F(ReaderTest, AReaderThatWritesToItsMappingDiesWithSigsegv) {
  const pid_t child = ::fork();
  if (child == 0) {
    std::signal(SIGSEGV, SIG_DFL);  // a sanitizer's handler would turn the fault into an abort
    auto* p = static_cast<volatile char*>(const_cast<void*>(r.mapping_base()));
    p[100] = 1;  // PROT_READ: the kernel refuses
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the write went through";
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
}

TEST_F(ReaderTest, IndexRebuildsAreInvisibleToReaders) {
  // Churn far more keys than capacity so tombstones force rebuilds; every present key is found.
  for (int i = 0; i < 5000; ++i) {
    w->upsert(*w->make_update("spot", "k" + std::to_string(i), "SOL", {{"qty", std::to_string(i)}}));
    Position p;
    ASSERT_EQ(r.get("spot", "k" + std::to_string(i), "SOL", p), ReadStatus::ok) << i;
    EXPECT_TRUE(p.values[0] == static_cast<int128>(i) * 1'000'000'000'000'000'000);
    if (i % 7 == 0) w->erase(*w->make_key("spot", "k" + std::to_string(i), "SOL"));
  }
  EXPECT_GT(r.stats().index_rebuilds, 0u);
  EXPECT_LE(r.stats().live, 32u);
}
