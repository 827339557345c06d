// The reader table (shm/reader_table.hpp): every Reader counts its get() answers in its own
// record; records of readers that left or died are reaped by the writer into sums that only
// grow; a Reader without the table reads on, uncounted, and says why once.
#include "poscache/reader_stats.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "poscache/writer.hpp"
#include "shm/reader_table.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace std::chrono_literals;
using test::must;

namespace {

constexpr std::size_t kOk = 0, kStale = 1, kNotFound = 2, kBadKey = 5;

const ReaderInfo* find_pid(const ReaderTableInfo& t, std::int64_t pid) {
  for (const auto& r : t.readers)
    if (r.pid == pid) return &r;
  return nullptr;
}

class ReaderStatsTest : public ::testing::Test {
 protected:
  test::ScratchSegment seg{"rstats"};
  WriterConfig cfg = [this] {
    WriterConfig c = test::small_config(seg.name(), 64);
    c.namespaces[2].stale_after = 20ms;  // marks
    return c;
  }();
  std::unique_ptr<Writer> w = Writer::open(cfg);
  Reader quiet = [this] {  // looks at the table without a record of its own
    ReaderOptions o;
    o.statistics = false;
    return Reader::open(seg.name(), o);
  }();
  void SetUp() override {
    w->upsert(must(w->make_update("spot", "w1", "SOL", {{"qty", "1"}})));
    w->upsert(must(w->make_update("marks", "w1", "SOL", {{"bid", "1"}})));
  }
  ReaderTableInfo table() {
    std::string why;
    auto t = reader_table(quiet, &why);
    if (!t) throw std::runtime_error("no reader table: " + why);
    return *t;
  }
};

}  // namespace

TEST_F(ReaderStatsTest, EachReaderCountsItsAnswersAndReapedCountsStayInTheTotals) {
  EXPECT_FALSE(quiet.counting());
  EXPECT_EQ(quiet.not_counting_because(), "statistics are off (ReaderOptions)");
  EXPECT_TRUE(table().readers.empty());
  // A reader process that dies without releasing its record (kill -9 stands in as _exit).
  const pid_t child = test::fork_child([&]() -> int {
    Reader r = Reader::open(seg.name());
    Position p;
    for (int i = 0; i < 5; ++i) (void)r.get("spot", "w1", "SOL", p);
    (void)r.get("spot", "w1", "ETH", p);
    (void)r.get("spot", "w1", "BTC", p);
    ::_exit(r.counting() ? 0 : 3);  // no destructor: the record stays claimed
  });
  ASSERT_EQ(test::wait_child(child), 0);
  // This process's reader.
  auto r = std::make_unique<Reader>(Reader::open(seg.name()));
  ASSERT_TRUE(r->counting()) << r->not_counting_because();
  Position p;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r->get("spot", "w1", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(r->get("spot", "", "SOL", p), ReadStatus::bad_key);    // an empty key part
  EXPECT_EQ(r->get("nope", "w1", "SOL", p), ReadStatus::bad_key);  // an unknown namespace name
  std::this_thread::sleep_for(60ms);  // the mark turns stale (20 ms; the coarse clock lags <= 4)
  EXPECT_EQ(r->get("marks", "w1", "SOL", p), ReadStatus::stale);

  ReaderTableInfo t = table();
  ASSERT_EQ(t.readers.size(), 2u);
  const ReaderInfo* dead = find_pid(t, child);
  const ReaderInfo* me = find_pid(t, ::getpid());
  ASSERT_TRUE(dead && me);
  EXPECT_EQ(dead->state, "gone");
  EXPECT_EQ(dead->counts[kOk], 5u);
  EXPECT_EQ(dead->counts[kNotFound], 2u);
  EXPECT_EQ(me->state, "reading");
  EXPECT_EQ(me->counts[kOk], 3u);
  EXPECT_EQ(me->counts[kBadKey], 2u);
  EXPECT_EQ(me->counts[kStale], 1u);
  EXPECT_EQ(me->gets(), 6u);
  EXPECT_FALSE(me->name.empty());
  EXPECT_GT(me->attached_at_ns, 0);
  const ReadCounts before = t.total;
  EXPECT_EQ(before[kOk], 8u);

  // The writer reaps the dead reader's record (its first tick reaps at once): its counts move to
  // the retired sums; the live reader keeps its record.
  w->tick();
  t = table();
  ASSERT_EQ(t.readers.size(), 1u);
  EXPECT_EQ(t.readers[0].pid, ::getpid());
  EXPECT_EQ(t.retired[kOk], 5u);
  EXPECT_EQ(t.retired[kNotFound], 2u);
  EXPECT_EQ(t.total, before);

  // A reader that goes releases its record ("left"); the next reap takes it.
  r.reset();
  t = table();
  ASSERT_EQ(t.readers.size(), 1u);
  EXPECT_EQ(t.readers[0].state, "left");
  EXPECT_EQ(t.total, before);
  std::this_thread::sleep_for(1100ms);  // the writer reaps about once a second
  w->tick();
  t = table();
  EXPECT_TRUE(t.readers.empty());
  EXPECT_EQ(t.total, before);
  EXPECT_EQ(t.retired, before);
  // A record freed by the reaper is claimed again with zero counts.
  Reader again = Reader::open(seg.name());
  ASSERT_TRUE(again.counting());
  EXPECT_EQ(find_pid(table(), ::getpid())->gets(), 0u);
}

// Hits, stale serves and misses are counted per namespace (get(), get() by id, get_many), a read
// naming no namespace of the segment in a row of its own; a reaped reader's rows stay in the sums.
TEST_F(ReaderStatsTest, HitsAndMissesAreCountedPerNamespace) {
  const pid_t child = test::fork_child([&]() -> int {
    Reader r = Reader::open(seg.name());
    Position p;
    for (int i = 0; i < 4; ++i) (void)r.get("marks", "w1", "SOL", p);  // hits
    (void)r.get("moonwell", "w1", "USDC", p);                          // a miss
    ::_exit(r.counting() ? 0 : 3);
  });
  ASSERT_EQ(test::wait_child(child), 0);
  Reader r = Reader::open(seg.name());
  Position p;
  const NamespaceId spot = *r.namespace_id("spot");
  EXPECT_EQ(r.get(spot, "w1", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(r.get("spot", "w1", "ETH", p), ReadStatus::not_found);
  EXPECT_EQ(r.get("spot", "w1", "BTC", p), ReadStatus::not_found);
  EXPECT_EQ(r.get("spot", "", "BTC", p), ReadStatus::bad_key);  // a known namespace: its row
  EXPECT_EQ(r.get("perps", "w1", "SOL", p), ReadStatus::bad_key);
  EXPECT_EQ(r.get(NamespaceId{9}, "w1", "SOL", p), ReadStatus::bad_key);  // an id past the last
  const std::vector<Reader::Key> keys = {
      {*r.namespace_id("moonwell"), "w1", "USDC"}, {spot, "w1", "SOL"}, {spot, "w2", "SOL"}};
  std::vector<Position> out(keys.size());
  std::vector<ReadStatus> st(keys.size());
  r.get_many(keys, out, st);

  const auto check = [&](const ReaderTableInfo& t) {
    ASSERT_EQ(t.namespaces.size(), 4u);  // spot, moonwell, marks, then the unnamed row
    EXPECT_EQ(t.namespaces[0].name, "spot");
    EXPECT_EQ(t.namespaces[0].counts[kOk], 2u);
    EXPECT_EQ(t.namespaces[0].counts[kNotFound], 3u);
    EXPECT_EQ(t.namespaces[0].counts[kBadKey], 1u);
    EXPECT_EQ(t.namespaces[1].name, "moonwell");
    EXPECT_EQ(t.namespaces[1].counts[kNotFound], 2u);
    EXPECT_EQ(t.namespaces[1].counts[kOk], 0u);
    EXPECT_EQ(t.namespaces[2].name, "marks");
    EXPECT_EQ(t.namespaces[2].counts[kOk] + t.namespaces[2].counts[kStale], 4u);  // 20 ms quotes
    EXPECT_EQ(t.namespaces[3].name, "");
    EXPECT_EQ(t.namespaces[3].counts[kBadKey], 2u);
    ReadCounts sum{};  // the rows add up to the totals
    for (const NamespaceReads& n : t.namespaces)
      for (std::size_t c = 0; c < sum.size(); ++c) sum[c] += n.counts[c];
    EXPECT_EQ(sum, t.total);
  };
  check(table());
  w->tick();  // the child's record is reaped into the retired rows
  const ReaderTableInfo t = table();
  EXPECT_EQ(t.readers.size(), 1u);
  check(t);
}

TEST_F(ReaderStatsTest, AReaderWithoutARecordReadsOnUncountedAndSaysWhyOnce) {
  // A full table: the 1025th Reader cannot claim a record.
  {
    std::vector<Reader> many;
    for (std::uint32_t i = 0; i < shm::kReaderRecords; ++i)
      many.push_back(Reader::open(seg.name()));
    EXPECT_TRUE(many.back().counting());
    const std::string said = test::in_child([&] {
      // stderr into the pipe's end we return through: capture what the library prints.
      char path[] = "/tmp/poscache_stderr_XXXXXX";
      const int fd = ::mkstemp(path);
      ::dup2(fd, 2);
      Reader extra = Reader::open(seg.name());
      Reader extra2 = Reader::open(seg.name());
      Position p;
      const bool reads = extra.get("spot", "w1", "SOL", p) == ReadStatus::ok;
      std::string out = std::string(extra.counting() ? "counting" : "uncounted") + "|" +
                        extra.not_counting_because() + "|" + (reads ? "reads" : "no read") + "|";
      ::lseek(fd, 0, SEEK_SET);
      char buf[1024] = {};
      out += std::string(buf, static_cast<std::size_t>(::read(fd, buf, sizeof buf - 1)));
      ::unlink(path);
      return out;
    });
    EXPECT_NE(said.find("uncounted|"), std::string::npos) << said;
    EXPECT_NE(said.find("all 1024 records are in use|reads|"), std::string::npos) << said;
    // Said once for the process, not once per Reader.
    const std::string line = "poscache: reads of segment '" + seg.name() + "' are not counted";
    ASSERT_NE(said.find(line), std::string::npos) << said;
    EXPECT_EQ(said.find(line, said.find(line) + 1), std::string::npos) << said;
  }
  // No table at all (removed, or a writer that could not create it).
  ::unlink(shm::reader_table_path(seg.name()).c_str());
  Reader r = Reader::open(seg.name());
  EXPECT_FALSE(r.counting());
  EXPECT_NE(r.not_counting_because().find("No such file or directory"), std::string::npos)
      << r.not_counting_because();
  Position p;
  EXPECT_EQ(r.get("spot", "w1", "SOL", p), ReadStatus::ok);
  std::string why;
  EXPECT_FALSE(reader_table(quiet, &why));
  EXPECT_NE(why.find(".readers: No such file"), std::string::npos) << why;
}

// A user who may read the segment but not write the table (here: others, given read on the
// segment by hand, while the table stays 0660) reads on, uncounted, and is told why.
TEST_F(ReaderStatsTest, AReaderWithoutPermissionOnTheTableReadsOnUncounted) {
  if (::geteuid() != 0) POSCACHE_SKIP_OR_FAIL("needs root to read as another user");
  ASSERT_EQ(::chmod(("/dev/shm/" + seg.name()).c_str(), 0644), 0);
  const std::string out = test::in_child([&]() -> std::string {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return "setuid failed";
    try {
      Reader r = Reader::open(seg.name());
      Position p;
      const bool reads = r.get("spot", "w1", "SOL", p) == ReadStatus::ok;
      return std::string(r.counting() ? "counting" : "uncounted") + "|" + (reads ? "reads" : "-") +
             "|" + r.not_counting_because();
    } catch (const std::exception& e) {
      return std::string("threw: ") + e.what();
    }
  });
  EXPECT_EQ(out.rfind("uncounted|reads|", 0), 0u) << out;
  EXPECT_NE(out.find(".readers: Permission denied"), std::string::npos) << out;
}

TEST_F(ReaderStatsTest, TheTableIsWritableByWhoeverMayReadTheSegmentAndNewPerGeneration) {
  struct stat st {};
  ASSERT_EQ(::stat(shm::reader_table_path(seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);  // the segment's 0640, with group write
  Reader old = Reader::open(seg.name());
  ASSERT_TRUE(old.counting());
  // A new generation gets a new file: the old generation's reader counts on into its own.
  w.reset();
  cfg.fresh = true;
  w = Writer::open(cfg);
  ASSERT_EQ(old.follow(), FollowResult::reattached);
  EXPECT_TRUE(old.counting());
  Reader fresh_quiet = [&] {
    ReaderOptions o;
    o.statistics = false;
    return Reader::open(seg.name(), o);
  }();
  const auto t = reader_table(fresh_quiet);
  ASSERT_TRUE(t);
  ASSERT_EQ(t->readers.size(), 1u);  // the follower's new record, nothing of the old table
  EXPECT_EQ(t->readers[0].gets(), 0u);
}
