// poscache-inspect as scripts use it: output and exit codes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/clock.hpp"
#include "shm/index.hpp"
#include "shm/layout.hpp"
#include "test_util.hpp"

using namespace poscache;

namespace {

using test::CliRun;
CliRun inspect(const std::string& args) {
  return test::run_cli(std::string(POSCACHE_INSPECT_BIN) + " " + args);
}

// Maps segment `name` read-write behind the writer's back, to break it for verify.
void edit_segment(const std::string& name, const std::function<void(std::byte* base)>& edit) {
  const test::RwMapping m(name);
  edit(m.base());
}

}  // namespace

class InspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    w->upsert(*w->make_update("spot", "alice", "SOL",
                              {{"qty", "12.5"}, {"avg_price", "141.000000000000000001"}}));
    w->upsert(*w->make_update("spot", "bob", "BTC", {{"qty", "-0.25"}}));
    w->upsert(*w->make_update(
        "moonwell", "alice", "USDC",
        {{"collateral_amount", "1500000000000000000000"}, {"last_update_block", "123"}}));
    w->tick();
  }
  static WriterConfig config(const std::string& name) {
    WriterConfig c = test::small_config(name, 64);
    // This test's writer runs no loop: it beats only when told. With 1 s beats a reader calls it
    // dead after 10 s, so a check a moment after heartbeat() is never late, even under ASan.
    c.heartbeat_interval = std::chrono::seconds(1);
    return c;
  }
  test::ScratchSegment seg{"insp"};
  std::unique_ptr<Writer> w = Writer::open(config(seg.name()));
  std::string s() const { return "-s " + seg.name() + " "; }
};

TEST_F(InspectTest, GetPrintsExactDecimalsAndExitsZero) {
  const CliRun r = inspect(s() + "--json get spot alice SOL");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["fields"]["avg_price"], "141.000000000000000001");
  EXPECT_EQ(j["fields"]["qty"], "12.500000000000000000");
  EXPECT_EQ(j["status"], "ok");
  EXPECT_FALSE(j["fields"].contains("fees"));  // never set
  const CliRun t = inspect(s() + "get spot alice SOL");
  EXPECT_NE(t.out.find("spot:alice:SOL"), std::string::npos) << t.out;
}

TEST_F(InspectTest, ExitCodesTellScriptsWhatHappened) {
  EXPECT_EQ(inspect(s() + "get spot nobody SOL").code, 1);
  EXPECT_EQ(inspect(s() + "get futures a b").code, 2);
  EXPECT_EQ(inspect("-s poscache_test_missing_segment stats").code, 3);
  EXPECT_EQ(inspect(s() + "frobnicate").code, 2);
  w->heartbeat();  // this test's writer runs no loop: beat right before asking
  EXPECT_EQ(inspect(s() + "health").code, 0);
  w->close();
  EXPECT_EQ(inspect(s() + "health").code, 1);
}

TEST_F(InspectTest, StatsAndLsForScripts) {
  const CliRun r = inspect(s() + "--json stats");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["live"], 3);
  EXPECT_EQ(j["counters"]["inserts"], 3);
  EXPECT_TRUE(j["writer"].contains("alive"));
  EXPECT_EQ(j["namespaces"][1]["name"], "moonwell");
  const CliRun ls = inspect(s() + "--json ls --account alice");
  ASSERT_EQ(ls.code, 0);
  EXPECT_EQ(std::count(ls.out.begin(), ls.out.end(), '\n'), 2);
  const CliRun glob = inspect(s() + "ls --glob 'spot:*:B*'");
  EXPECT_NE(glob.out.find("spot:bob:BTC"), std::string::npos) << glob.out;
  EXPECT_EQ(glob.out.find("alice"), std::string::npos) << glob.out;
  const CliRun dump = inspect(s() + "--json dump");
  EXPECT_EQ(std::count(dump.out.begin(), dump.out.end(), '\n'), 3);
  const CliRun watch = inspect(s() + "--json watch --count 2 --interval-ms 10");
  EXPECT_EQ(watch.code, 0);
  EXPECT_EQ(std::count(watch.out.begin(), watch.out.end(), '\n'), 2);
}

// watch shows the latest changes from the change ring: what happened between two refreshes,
// each with its kind and key (or pattern), most recent first.
TEST_F(InspectTest, VerifyFindsAChangeRingCellThatDoesNotHoldItsPosition) {
  EXPECT_EQ(inspect(s() + "verify").code, 0);
  edit_segment(seg.name(), [](std::byte* base) {
    const auto* h = reinterpret_cast<const shm::SegmentHeader*>(base);
    auto* ring =
        reinterpret_cast<shm::ChangeCell*>(base + shm::geometry_for(h->capacity).ring_offset);
    ring[1].seq = 7;  // position 1 (below the head: 3 inserts) claims to be position 6
  });
  const CliRun v = inspect(s() + "verify");
  EXPECT_EQ(v.code, 1);
  EXPECT_NE(v.out.find("change ring: 1 cells below the head do not hold their position (the "
                       "first: position 1 holds sequence 7)"),
            std::string::npos)
      << v.out;
}

TEST_F(InspectTest, WatchShowsTheChangesFromTheRing) {
  FILE* p = ::popen((std::string(POSCACHE_INSPECT_BIN) + " " + s() +
                     "--json watch --count 2 --interval-ms 300 --top 5 2>&1")
                        .c_str(),
                    "r");
  ASSERT_NE(p, nullptr);
  char line[65536];
  ASSERT_NE(std::fgets(line, sizeof line, p), nullptr);  // the first refresh: it follows from here
  w->upsert(*w->make_update("spot", "alice", "SOL", {{"qty", "13"}}));
  w->erase(*w->make_key("spot", "bob", "BTC"));
  w->invalidate_matching("moonwell:*:*");
  std::string last;
  while (std::fgets(line, sizeof line, p) != nullptr) last = line;
  EXPECT_EQ(::pclose(p), 0);
  const auto j = nlohmann::json::parse(last);
  EXPECT_EQ(j["changes_read"], 3);
  ASSERT_EQ(j["latest_changes"].size(), 3u) << last;
  EXPECT_EQ(j["latest_changes"][0]["kind"], "invalidated_glob");
  EXPECT_EQ(j["latest_changes"][0]["pattern"], "moonwell:*:*");
  EXPECT_EQ(j["latest_changes"][1]["kind"], "erased");
  EXPECT_EQ(j["latest_changes"][1]["account"], "bob");
  EXPECT_EQ(j["latest_changes"][2]["kind"], "updated");
  EXPECT_EQ(j["latest_changes"][2]["namespace"], "spot");
  EXPECT_EQ(j["latest_changes"][2]["instrument"], "SOL");
}

TEST_F(InspectTest, ReadersListsEachReadersCountsAndTheInspectorCountsNothing) {
  using poscache::Position, poscache::ReadStatus, poscache::Reader;
  Reader r = Reader::open(seg.name());  // a reader process: this test's
  Position p;
  for (int i = 0; i < 4; ++i) ASSERT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::ok);
  ASSERT_EQ(r.get("spot", "carol", "SOL", p), ReadStatus::not_found);
  CliRun out = inspect(s() + "--json readers");
  ASSERT_EQ(out.code, 0) << out.out;
  const auto j = nlohmann::json::parse(out.out);
  ASSERT_EQ(j["readers"].size(), 1u) << out.out;  // the inspector's own reads are not counted
  EXPECT_EQ(j["readers"][0]["pid"], ::getpid());
  EXPECT_EQ(j["readers"][0]["state"], "reading");
  EXPECT_EQ(j["readers"][0]["gets"], 5);
  EXPECT_EQ(j["readers"][0]["counts"]["ok"], 4);
  EXPECT_EQ(j["readers"][0]["counts"]["not_found"], 1);
  EXPECT_EQ(j["total"]["ok"], 4);
  EXPECT_EQ(j["capacity"], 1024);
  out = inspect(s() + "readers");
  EXPECT_NE(out.out.find(std::to_string(::getpid())), std::string::npos) << out.out;
  EXPECT_NE(out.out.find("1 of 1024 records in use"), std::string::npos) << out.out;
  ::unlink(("/dev/shm/" + seg.name() + ".readers").c_str());
  out = inspect(s() + "readers");
  EXPECT_EQ(out.code, 3);
  EXPECT_NE(out.out.find("no reader statistics: /dev/shm/" + seg.name() + ".readers: No such"),
            std::string::npos)
      << out.out;
}

TEST_F(InspectTest, VerifyFindsABucketThatLostItsSlot) {
  EXPECT_EQ(inspect(s() + "verify").code, 0);
  // Break the index: empty the bucket of every live slot.
  edit_segment(seg.name(), [](std::byte* base) {
    auto* h = reinterpret_cast<shm::SegmentHeader*>(base);
    auto* idx = reinterpret_cast<shm::Bucket*>(
        base + h->index_offset[shm::load_acquire(&h->index_epoch) & 1]);
    for (std::uint64_t i = 0; i < h->index_buckets; ++i) shm::store_release(&idx[i], 0);
  });
  const CliRun r = inspect(s() + "verify");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("not reachable through the index"), std::string::npos) << r.out;
}

// The account index: a list cut short (a slot a snapshot would never list) and a count that
// disagrees with its list are found; a stripe that moves between the two looks (a writer
// changing the account) makes verify withhold judgement on that account, not report it.
TEST_F(InspectTest, VerifyFindsAnAccountListCutShort) {
  EXPECT_EQ(inspect(s() + "verify").code, 0);
  std::uint32_t saved = 0, head = 0;
  edit_segment(seg.name(), [&](std::byte* base) {
    const auto* h = reinterpret_cast<const shm::SegmentHeader*>(base);
    const shm::Geometry g = shm::geometry_for(h->capacity);
    auto* entries = reinterpret_cast<shm::AccountEntry*>(base + g.accounts_offset);
    auto* links = reinterpret_cast<std::uint32_t*>(base + g.links_offset);
    for (std::uint64_t i = 0; i < g.index_buckets; ++i) {
      if (entries[i].key != 0 && entries[i].count >= 2) {
        head = entries[i].head;
        saved = links[head];
        links[head] = shm::kNil;  // the list ends after its first slot
        return;
      }
    }
    FAIL() << "no account with two positions";
  });
  const CliRun r = inspect(s() + "verify");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("in no account's list"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("its list holds 1"), std::string::npos) << r.out;
  edit_segment(seg.name(), [&](std::byte* base) {
    const auto* h = reinterpret_cast<const shm::SegmentHeader*>(base);
    auto* links =
        reinterpret_cast<std::uint32_t*>(base + shm::geometry_for(h->capacity).links_offset);
    links[head] = saved;
  });
  EXPECT_EQ(inspect(s() + "verify").code, 0);
}

TEST_F(InspectTest, VerifyFindsACorruptJournalHeader) {
  EXPECT_EQ(inspect(s() + "verify").code, 0);
  edit_segment(seg.name(), [](std::byte* base) {  // tail ahead of head
    const auto* h = reinterpret_cast<const shm::SegmentHeader*>(base);
    auto* j =
        reinterpret_cast<shm::JournalHeader*>(base + shm::geometry_for(h->capacity).journal_offset);
    shm::store_release(&j->tail, shm::load_acquire(&j->head) + 5);
  });
  const CliRun r = inspect(s() + "verify");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("journal: head"), std::string::npos) << r.out;
}

TEST_F(InspectTest, AForeignOrInitializingSegmentIsExitThree) {
  // A file under the name that is not a segment.
  test::ScratchSegment junk("insp_junk");
  {
    const int fd = ::shm_open(("/" + junk.name()).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 1 << 16), 0);  // zeros: what an interrupted creation leaves
    ::close(fd);
  }
  CliRun r = inspect("-s " + junk.name() + " stats");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("segment header is still empty"), std::string::npos) << r.out;
  {
    const test::RwMapping m(junk.name());
    std::memset(m.base(), 0x5A, m.size());  // someone else's bytes
  }
  r = inspect("-s " + junk.name() + " stats");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("not a poscache segment"), std::string::npos) << r.out;
  // A segment from another layout version.
  edit_segment(seg.name(), [](std::byte* base) {
    reinterpret_cast<shm::SegmentHeader*>(base)->layout_version += 1;
  });
  r = inspect(s() + "health");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("layout version mismatch"), std::string::npos) << r.out;
  edit_segment(seg.name(), [](std::byte* base) {
    reinterpret_cast<shm::SegmentHeader*>(base)->layout_version -= 1;
  });
  // A segment whose writer is still creating it.
  edit_segment(seg.name(), [](std::byte* base) {
    shm::store_release(&reinterpret_cast<shm::SegmentHeader*>(base)->state,
                       static_cast<std::uint32_t>(shm::SegmentState::initializing));
  });
  r = inspect(s() + "get spot alice SOL");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("initializing"), std::string::npos) << r.out;
  edit_segment(seg.name(), [](std::byte* base) {
    shm::store_release(&reinterpret_cast<shm::SegmentHeader*>(base)->state,
                       static_cast<std::uint32_t>(shm::SegmentState::ready));
  });
  EXPECT_EQ(inspect(s() + "get spot alice SOL").code, 0);
}

// Health is 4 when Redis is up but an unsynced change has waited longer than --max-sync-lag.
// Hand-built: the sync state in the header says up, one change dirty since 10 s ago.
TEST_F(InspectTest, HealthIsFourWhenAChangeWaitsForRedisLongerThanMaxSyncLag) {
  w->heartbeat();
  edit_segment(seg.name(), [](std::byte* base) {
    auto* h = reinterpret_cast<shm::SegmentHeader*>(base);
    shm::store_release(&h->redis_state, static_cast<std::uint32_t>(shm::RedisState::up));
    shm::store_release(&h->redis_dirty, 1);
    shm::store_release(&h->redis_oldest_unsynced_ns, shm::realtime_ns() - 10'000'000'000);
  });
  CliRun r = inspect(s() + "health --max-sync-lag 5");
  EXPECT_EQ(r.code, 4) << r.out;
  EXPECT_NE(r.out.find("DEGRADED"), std::string::npos) << r.out;
  r = inspect(s() + "health --max-sync-lag 60");
  EXPECT_EQ(r.code, 0) << r.out;
  r = inspect(s() + "health");  // the default, 5 s
  EXPECT_EQ(r.code, 4) << r.out;
}

TEST_F(InspectTest, LsShowsAtMostLimitPositionsAndSaysHowManyItLeftOut) {
  for (int i = 0; i < 7; ++i)
    w->upsert(*w->make_update("spot", "carol", "T" + std::to_string(i), {{"qty", "1"}}));
  CliRun r = inspect(s() + "--json ls --account carol --limit 3");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  r = inspect(s() + "ls --account carol --limit 3");
  EXPECT_NE(r.out.find("(3 of 7 shown; --limit 0 for all)"), std::string::npos) << r.out;
  r = inspect(s() + "--json ls --account carol --limit 0");
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 7) << r.out;
  r = inspect(s() + "--json ls --limit 0");
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 10) << r.out;
}

// A key that cannot exist is exit 2 with a message naming the part and why, not "not_found".
TEST_F(InspectTest, GetChecksTheKeyAndNamesThePartThatIsWrong) {
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"get spot 'wal:let' SOL", "account 'wal:let' has ':' at position 3"},
      {"get spot 'a{b' SOL", "account 'a{b' has '{'"},
      {"get spot 'a*' SOL", "account 'a*' has '*'"},
      {"get spot 'a b' SOL", "account 'a b' has ' '"},
      {"get spot alice 'S}OL'", "instrument 'S}OL' has '}'"},
      {"get spot '' SOL", "account is empty"},
      {"get spot " + std::string(65, 'a') + " SOL",
       "account '" + std::string(65, 'a') + "' is 65 characters: the limit is 64"},
      {"get spot alice " + std::string(65, 'I'), "instrument '"},
  };
  for (const Case& c : cases) {
    const CliRun r = inspect(s() + c.args);
    EXPECT_EQ(r.code, 2) << c.args << ": " << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.args << ": " << r.out;
  }
  const CliRun j = inspect(s() + "--json get spot 'wal:let' SOL");
  EXPECT_EQ(j.code, 2);
  EXPECT_NE(j.out.find("\"status\":\"bad_key\""), std::string::npos) << j.out;
  EXPECT_EQ(inspect(s() + "get spot alice SOL").code, 0);
}

// Two buckets that point at the same live slot: the index is corrupt, though every key is still
// found (hand-built: a copy of a live slot's bucket in an empty bucket).
TEST_F(InspectTest, VerifyFindsTwoBucketsPointingAtOneSlot) {
  EXPECT_EQ(inspect(s() + "verify").code, 0);
  edit_segment(seg.name(), [](std::byte* base) {
    auto* h = reinterpret_cast<shm::SegmentHeader*>(base);
    auto* idx = reinterpret_cast<shm::Bucket*>(
        base + h->index_offset[shm::load_acquire(&h->index_epoch) & 1]);
    std::uint64_t live = 0, empty = h->index_buckets;
    for (std::uint64_t i = 0; i < h->index_buckets; ++i) {
      const std::uint64_t b = shm::load_acquire(&idx[i]);
      if (b != shm::kEmptyBucket && shm::bucket_ref(b) != shm::kTombstoneRef && live == 0) live = b;
      if (b == shm::kEmptyBucket && empty == h->index_buckets) empty = i;
    }
    ASSERT_NE(live, 0u);
    ASSERT_LT(empty, h->index_buckets);
    shm::store_release(&idx[empty], live);
  });
  const CliRun r = inspect(s() + "verify");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("(one slot, two buckets)"), std::string::npos) << r.out;
}
