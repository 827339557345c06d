#include "poscache/reader.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "poscache/mirror_status.hpp"
#include "poscache/writer.hpp"
#include "shm/layout.hpp"
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

// The layout's promise: readers read the header, the slots, the index and the account index,
// never the writer's area or the journal (shm/layout.hpp). This reader's own mapping of those
// regions is made inaccessible; every read API then runs, and a touch of them would be a SIGSEGV
// here.
TEST_F(ReaderTest, ReadsNoWriterOnlyRegion) {
  w->upsert(*w->make_update("spot", "alice", "SOL", {{"qty", "1"}}));
  w->erase(*w->make_key("spot", "bob", "SOL"));
  w->tick();
  const auto& h = *static_cast<const shm::SegmentHeader*>(r.mapping_base());
  auto* base = static_cast<std::byte*>(const_cast<void*>(r.mapping_base()));
  const std::size_t from = h.writer_offset;  // page aligned: the writer area, then the journal
  ASSERT_EQ(from % shm::kPageSize, 0u);
  // (A segment under 2 MiB is mapped with 4 KiB pages, so the protection change splits nothing.)
  ASSERT_EQ(::mprotect(base + from, r.mapping_size() - from, PROT_NONE), 0);
  Position p;
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::not_found);
  EXPECT_EQ(r.positions_of("alice").size(), 1u);
  std::vector<Position> snap;
  EXPECT_EQ(r.snapshot("alice", snap), ReadStatus::ok);
  std::vector<Change> changes;
  EXPECT_EQ(r.changes(0, changes).status, ChangeStatus::ok);
  EXPECT_EQ(changes.size(), 1u);  // the insert (the erase found nothing)
  EXPECT_TRUE(r.wait_for_changes(0, std::chrono::milliseconds(1)));
  std::size_t n = 0;
  r.scan({}, [&](const Position&) { ++n; });
  EXPECT_EQ(n, 1u);
  const SegmentStats st = r.stats();
  EXPECT_EQ(st.live, 1u);
  const MirrorStatus m = mirror_status(r);
  EXPECT_EQ(m.state, "off");
  EXPECT_EQ(m.journal_pending, 0u);
  EXPECT_TRUE(r.writer().alive);
  EXPECT_EQ(::mprotect(base + from, r.mapping_size() - from, PROT_READ), 0);
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
  w->upsert(*w->make_update("spot", "a", "SOL", {{"qty", "1"}}));
  EXPECT_GT(r.change_sequence(), seen);
  EXPECT_TRUE(r.wait_for_change(seen, 0ms));  // already changed: returns at once
}

// The wake itself, across processes: a reader process waits with a 60 s timeout; the writer's
// change and tick() must wake it long before that. (wait_for_change re-checks the sequence when
// its futex wait ends, so with the wake removed the waiter would still return true, but only at
// the timeout: the elapsed time is what proves the FUTEX_WAKE.)
TEST_F(ReaderTest, AWaiterInAnotherProcessIsWokenByTheWriterNotByItsTimeout) {
  int ready[2], result[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(result), 0);
  const std::string name = seg.name();
  const pid_t child = test::fork_child([&] {
    Reader mine = Reader::open(name);
    const auto seen = mine.change_sequence();
    const char go = 1;
    if (::write(ready[1], &go, 1) != 1) return 2;
    const auto t0 = std::chrono::steady_clock::now();
    const bool changed = mine.wait_for_change(seen, 60s);
    const std::int64_t waited_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    const std::int64_t report[2] = {changed ? 1 : 0, waited_ms};
    return ::write(result[1], report, sizeof report) == sizeof report ? 0 : 3;
  });
  char go = 0;
  ASSERT_EQ(::read(ready[0], &go, 1), 1);
  std::this_thread::sleep_for(100ms);  // let it go to sleep in FUTEX_WAIT (not needed to pass)
  w->upsert(*w->make_update("spot", "a", "SOL", {{"qty", "1"}}));
  w->tick();  // wakes futex waiters (at most every wake_interval; this is the first)
  std::int64_t report[2] = {0, -1};
  ASSERT_EQ(::read(result[0], report, sizeof report), static_cast<ssize_t>(sizeof report));
  EXPECT_EQ(test::wait_child(child), 0);
  EXPECT_EQ(report[0], 1);
  EXPECT_LT(report[1], 20'000) << "the waiter returned only after " << report[1]
                               << " ms: it was not woken";
  for (int fd : {ready[0], ready[1], result[0], result[1]}) ::close(fd);
}

namespace {
// The slot of `account` (namespace 0) in a read-write mapping of the segment, or null.
shm::Slot* slot_of(const test::RwMapping& m, std::string_view account) {
  auto* h = reinterpret_cast<shm::SegmentHeader*>(m.base());
  auto* slots = reinterpret_cast<shm::Slot*>(m.base() + h->slots_offset);
  for (std::uint64_t i = 0; i < h->capacity; ++i) {
    const auto* pl = reinterpret_cast<const shm::SlotPayload*>(slots[i].payload);
    if (pl->ns == 0 && std::string_view(pl->account, pl->account_len) == account) return &slots[i];
  }
  return nullptr;
}
}  // namespace

// A slot that stays mid-write while the writer's heartbeat is fresh is writer_busy; once the
// heartbeat is older than ten intervals, it is writer_dead only if the writer is gone (a silent
// writer that lives is still busy). Hand-built: the slot's sequence is set odd, and the
// heartbeat moved back, through a read-write mapping. The writer is this process: alive whatever
// its header says, and its lock file is never opened (that would drop its lock); once it has
// closed, nobody holds the lock and the slot left odd is writer_dead.
TEST(ReaderBusyTest, AnOddSlotIsWriterBusyWhileTheHeartbeatIsFreshAndWriterDeadAfter) {
  test::ScratchSegment seg("busy");
  WriterConfig c = test::small_config(seg.name(), 16);
  c.heartbeat_interval = 1s;  // silent after 10 s without a beat: far beyond this test's reads
  auto w = Writer::open(c);
  w->upsert(*w->make_update("spot", "alice", "SOL", {{"qty", "1"}}));
  w->upsert(*w->make_update("spot", "bob", "SOL", {{"qty", "2"}}));
  w->heartbeat();
  Reader r = Reader::open(seg.name());
  const test::RwMapping m(seg.name());
  auto* h = reinterpret_cast<shm::SegmentHeader*>(m.base());
  shm::Slot* alice = slot_of(m, "alice");
  ASSERT_NE(alice, nullptr);
  const std::uint64_t even = shm::load_acquire(&alice->seq);
  shm::store_release(&alice->seq, even + 1);  // SW1 of a write that never finishes
  Position p;
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_busy);
  EXPECT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::ok);  // only that slot
  shm::store_release(&h->heartbeat_ns,
                     shm::load_acquire(&h->heartbeat_ns) - 20'000'000'000);  // 20 s without a beat
  // Silent, but its process lives (stopped, descheduled): busy, not dead.
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_busy);
  const std::int64_t live_pid = h->writer_pid;
  const pid_t gone = test::fork_child([] { return 0; });  // a pid no process has once reaped
  test::wait_child(gone);
  shm::store_release(&h->writer_pid, static_cast<std::int64_t>(gone));
  // The header names a dead process, but this process holds the writer's lock (a successor
  // re-attaching looks so): alive.
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_busy);
  shm::store_release(&h->writer_pid, live_pid);
  w->close();  // the lock is free: nobody will ever finish alice's write
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_dead);
  {  // get_many answers as get() does, beside a good key in the same batch
    const Reader::Key keys[] = {{0, "alice", "SOL"}, {0, "bob", "SOL"}};
    Position out[2];
    ReadStatus st[2];
    r.get_many(keys, out, st);
    EXPECT_EQ(st[0], ReadStatus::writer_dead);
    EXPECT_EQ(st[1], ReadStatus::ok);
  }
  shm::store_release(&alice->seq, even);
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::ok);
}

// A writer stopped (SIGSTOP) in the middle of a write is silent but alive: for a whole second,
// long past the heartbeat budget, every read of its slot answers writer_busy, never
// writer_dead. Killed (SIGKILL), it answers writer_dead at once, while the process is still an
// unreaped zombie that kill(pid, 0) finds: the kernel dropped its lock. A Reader with a longer
// budget has not asked yet: busy. The write is hand-built in the writer process (its slot's
// sequence set odd, SW1 of a write that never ends) while it keeps beating until stopped.
TEST(ReaderBusyTest, AStoppedWriterIsBusyAndAKilledOneIsDead) {
  test::ScratchSegment seg("stop");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t writer = test::fork_child([&] {
    ::close(ready[0]);
    WriterConfig c = test::small_config(seg.name(), 16);
    c.heartbeat_interval = 1ms;
    auto w = Writer::open(c);
    w->upsert(*w->make_update("spot", "alice", "SOL", {{"qty", "1"}}));
    w->upsert(*w->make_update("spot", "bob", "SOL", {{"qty", "2"}}));
    const test::RwMapping m(seg.name());
    shm::Slot* alice = slot_of(m, "alice");
    if (alice == nullptr) return 1;
    shm::store_release(&alice->seq, shm::load_acquire(&alice->seq) + 1);
    if (::write(ready[1], "r", 1) != 1) return 2;
    for (;;) {
      w->tick();
      ::usleep(100);
    }
  });
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the writer did not start";
  ::close(ready[0]);
  ReaderOptions quick;
  quick.writer_silent_after = 50ms;
  ReaderOptions patient;
  patient.writer_silent_after = 1h;
  Reader r = Reader::open(seg.name(), quick);
  Reader slow = Reader::open(seg.name(), patient);
  Position p;
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_busy);

  ASSERT_EQ(::kill(writer, SIGSTOP), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(writer, &st, WUNTRACED), writer);
  ASSERT_TRUE(WIFSTOPPED(st));
  std::uint64_t busy = 0, dead = 0, other = 0, asked = 0;
  const auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    const ReadStatus s = r.get("spot", "alice", "SOL", p);
    (s == ReadStatus::writer_busy ? busy : s == ReadStatus::writer_dead ? dead : other)++;
    if (r.writer().heartbeat_age_ns > 50'000'000) ++asked;  // past the budget: the lock asked
    EXPECT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::ok);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(dead, 0u) << busy << " busy, " << dead << " dead, " << other << " other";
  EXPECT_EQ(other, 0u);
  EXPECT_GT(asked, 100u) << "the reads never went past the heartbeat budget";
  std::printf("stopped writer: %llu reads of its slot, all writer_busy (%llu past the budget)\n",
              static_cast<unsigned long long>(busy), static_cast<unsigned long long>(asked));

  ASSERT_EQ(::kill(writer, SIGKILL), 0);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(writer), &info, WEXITED | WNOWAIT), 0);
  ASSERT_EQ(::kill(writer, 0), 0) << "the writer should still be an unreaped zombie";
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_dead);
  EXPECT_EQ(slow.get("spot", "alice", "SOL", p), ReadStatus::writer_busy);  // within its budget
  EXPECT_EQ(r.get("spot", "bob", "SOL", p), ReadStatus::ok);
  EXPECT_EQ(test::wait_child(writer), 128 + SIGKILL);
  EXPECT_EQ(r.get("spot", "alice", "SOL", p), ReadStatus::writer_dead);
}

// The heartbeat budget from the environment, for programs that cannot pass ReaderOptions (C,
// Python without the argument): a bad value is refused naming the variable.
TEST(ReaderBusyTest, TheBudgetFromTheEnvironmentIsCheckedAndNamed) {
  test::ScratchSegment seg("budget");
  auto w = Writer::open(test::small_config(seg.name(), 16));
  ::setenv("POSCACHE_READER_SILENT_AFTER_MS", "soon", 1);
  try {
    (void)Reader::open(seg.name());
    ADD_FAILURE() << "a bad budget was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("POSCACHE_READER_SILENT_AFTER_MS='soon'"),
              std::string::npos)
        << e.what();
  }
  ::setenv("POSCACHE_READER_SILENT_AFTER_MS", "250", 1);
  EXPECT_NO_THROW((void)Reader::open(seg.name()));
  ::unsetenv("POSCACHE_READER_SILENT_AFTER_MS");
  ReaderOptions negative;
  negative.writer_silent_after = -1ms;
  EXPECT_THROW((void)Reader::open(seg.name(), negative), Error);
}

// get_many: for every key, the same status and the same copy as get(): hits, misses, stale
// positions, and every kind of bad key, in batches that do not divide by its group of 16.
TEST(ReaderGetManyTest, EveryKeyGetsWhatGetWouldAnswer) {
  test::ScratchSegment seg("many");
  WriterConfig c = test::small_config(seg.name(), 512);
  c.namespaces[2].stale_after = 20ms;  // marks
  auto w = Writer::open(c);
  std::vector<std::string> accounts;
  for (int i = 0; i < 300; ++i) accounts.push_back("acct" + std::to_string(i));
  for (int i = 0; i < 300; i += 2) {
    w->upsert(*w->make_update("spot", accounts[i], "SOL", {{"qty", std::to_string(i)}}));
    w->upsert(*w->make_update("marks", accounts[i], "SOL", {{"bid", std::to_string(i)}}));
  }
  std::this_thread::sleep_for(60ms);  // marks stale; then fresh spot positions over some
  for (int i = 0; i < 300; i += 4)
    w->upsert(*w->make_update("spot", accounts[i], "SOL", {{"qty", std::to_string(i + 1)}}));
  const Reader r = Reader::open(seg.name());
  std::vector<Reader::Key> keys;
  const std::string long_key(65, 'a');
  for (int i = 0; i < 300; ++i) {
    keys.push_back({0, accounts[i], "SOL"});
    keys.push_back({2, accounts[i], "SOL"});
    if (i % 37 == 0) {
      keys.push_back({0, "", "SOL"});           // empty part
      keys.push_back({0, long_key, "SOL"});     // too long
      keys.push_back({7, accounts[i], "SOL"});  // no such namespace id
      keys.push_back({0, accounts[i], "BTC"});  // absent
    }
  }
  for (const std::size_t batch :
       {std::size_t{1}, std::size_t{5}, std::size_t{16}, std::size_t{17}, keys.size()}) {
    std::vector<Position> many(keys.size());
    std::vector<ReadStatus> st(keys.size());
    for (std::size_t b = 0; b < keys.size(); b += batch) {
      const std::size_t n = std::min(batch, keys.size() - b);
      r.get_many(std::span(keys).subspan(b, n), std::span(many).subspan(b, n),
                 std::span(st).subspan(b, n));
    }
    std::size_t ok = 0, stale = 0, missing = 0, bad = 0;
    for (std::size_t k = 0; k < keys.size(); ++k) {
      Position one;
      const ReadStatus expect = r.get(keys[k].ns, keys[k].account, keys[k].instrument, one);
      ASSERT_EQ(st[k], expect) << "batch " << batch << " key " << k;
      if (has_value(expect)) {
        EXPECT_EQ(many[k].version, one.version);
        EXPECT_EQ(many[k].account_view(), one.account_view());
        EXPECT_EQ(many[k].values[0], one.values[0]);
        EXPECT_EQ(many[k].stale, one.stale);
      }
      ok += expect == ReadStatus::ok;
      stale += expect == ReadStatus::stale;
      missing += expect == ReadStatus::not_found;
      bad += expect == ReadStatus::bad_key;
    }
    EXPECT_EQ(ok, 150u);     // the spot positions
    EXPECT_EQ(stale, 150u);  // the marks
    EXPECT_EQ(missing, 300u + 9u);
    EXPECT_EQ(bad, 27u);
  }
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

// Between marking its segment retired and creating the new one, a writer still has the old
// one under the name: follow() then answers unavailable (try again), never same.
TEST_F(ReaderTest, FollowOnARetiredSegmentStillUnderTheNameIsUnavailableNotSame) {
  const auto gen = r.generation();
  {
    const test::RwMapping m(seg.name());
    shm::store_release(&reinterpret_cast<shm::SegmentHeader*>(m.base())->state,
                       static_cast<std::uint32_t>(shm::SegmentState::retired));
  }
  Position p;
  EXPECT_EQ(r.get("spot", "a", "SOL", p), ReadStatus::retired);
  EXPECT_EQ(r.follow(), FollowResult::unavailable);
  w.reset();
  WriterConfig c = test::small_config(seg.name(), 32);
  c.fresh = true;
  auto w2 = Writer::open(c);
  EXPECT_EQ(r.follow(), FollowResult::reattached);
  EXPECT_NE(r.generation(), gen);
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
    w->upsert(
        *w->make_update("spot", "k" + std::to_string(i), "SOL", {{"qty", std::to_string(i)}}));
    Position p;
    ASSERT_EQ(r.get("spot", "k" + std::to_string(i), "SOL", p), ReadStatus::ok) << i;
    EXPECT_TRUE(p.values[0] == static_cast<int128>(i) * 1'000'000'000'000'000'000);
    if (i % 7 == 0) w->erase(*w->make_key("spot", "k" + std::to_string(i), "SOL"));
  }
  EXPECT_GT(r.stats().index_rebuilds, 0u);
  EXPECT_LE(r.stats().live, 32u);
}

// No false miss across index rebuilds, with readers in other processes: a writer keeps 16
// positions present throughout while it inserts and erases others as fast as it can, so
// tombstones force a rebuild every few dozen erases; reader processes look the present ones up
// the whole time. A reader that started its probe in an index the writer has since cleared for
// the next rebuild must notice the epoch moved and retry (shm/index.hpp, XL3), never report a miss.
TEST(ReaderRebuildTest, PresentKeysAreFoundByReaderProcessesWhileTheWriterRebuildsTheIndex) {
  test::ScratchSegment seg("rebuild");
  auto w = Writer::open(test::small_config(seg.name(), 64));
  constexpr int kPresent = 16;
  // The others first, so the present keys hold the last slots: a rebuild re-inserts slots in
  // order, so theirs are missing from the index being rebuilt for as long as it takes.
  std::uint64_t churn = 0;
  for (; churn < 48; ++churn)
    w->upsert(*w->make_update("spot", "tmp" + std::to_string(churn), "ETH", {{"qty", "2"}}));
  for (int i = 0; i < kPresent; ++i)
    w->upsert(*w->make_update("spot", "keep" + std::to_string(i), "SOL", {{"qty", "1"}}));
  constexpr int kReaders = 6;
  int result[2];
  ASSERT_EQ(::pipe(result), 0);
  std::vector<pid_t> readers;
  const std::string name = seg.name();
  for (int k = 0; k < kReaders; ++k) {
    readers.push_back(test::fork_child([&, k] {
      Reader r = Reader::open(name);
      std::vector<std::string> accounts;
      for (int i = 0; i < kPresent; ++i) accounts.push_back("keep" + std::to_string(i));
      std::uint64_t lookups = 0, misses = 0, other = 0;
      Position p;
      // At least 3 s, and until the writer has rebuilt the index 1500 times (a slow build, a
      // sanitizer's, takes longer to get there), within 200 s.
      const auto start = std::chrono::steady_clock::now();
      for (std::uint64_t round = 0;; ++round) {
        if (round % 64 == 0) {
          const auto t = std::chrono::steady_clock::now();
          if (t - start > 200s || (t - start > 3s && r.stats().index_rebuilds >= 1500)) break;
        }
        for (int i = 0; i < kPresent; ++i, ++lookups) {
          const ReadStatus st =
              r.get(NamespaceId{0}, accounts[static_cast<std::size_t>(i + k) % kPresent], "SOL", p);
          misses += st == ReadStatus::not_found;
          other +=
              st != ReadStatus::not_found && st != ReadStatus::ok && st != ReadStatus::writer_busy;
        }
      }
      const std::uint64_t report[3] = {lookups, misses, other};
      return ::write(result[1], report, sizeof report) == sizeof report ? 0 : 3;
    }));
  }
  ::close(result[1]);
  // Churn until every reader has reported.
  std::vector<std::uint64_t> totals(3, 0);
  int reported = 0;
  ::fcntl(result[0], F_SETFL, O_NONBLOCK);
  while (reported < kReaders) {
    // The present keys are changed first, so the inserts that follow evict only others; the
    // evictions and erases leave tombstones in mid-run buckets, which force the rebuilds.
    for (int i = 0; i < kPresent; ++i)
      w->upsert(*w->make_update("spot", "keep" + std::to_string(i), "SOL", {{"qty", "1"}}));
    for (int i = 0; i < 48; ++i, ++churn) {
      w->upsert(*w->make_update("spot", "tmp" + std::to_string(churn), "ETH", {{"qty", "2"}}));
      if (churn % 5 == 0) w->erase(*w->make_key("spot", "tmp" + std::to_string(churn - 2), "ETH"));
    }
    w->tick();
    std::uint64_t report[3];
    if (::read(result[0], report, sizeof report) == static_cast<ssize_t>(sizeof report)) {
      for (int j = 0; j < 3; ++j) totals[static_cast<std::size_t>(j)] += report[j];
      ++reported;
    }
  }
  for (pid_t pid : readers) EXPECT_EQ(test::wait_child(pid), 0);
  ::close(result[0]);
  const std::uint64_t rebuilds = Reader::open(seg.name()).stats().index_rebuilds;
  std::printf(
      "rebuild: %llu lookups of present keys by %d reader processes during %llu index rebuilds, "
      "%llu false misses\n",
      static_cast<unsigned long long>(totals[0]), kReaders,
      static_cast<unsigned long long>(rebuilds), static_cast<unsigned long long>(totals[1]));
  EXPECT_EQ(totals[1], 0u) << "a key present throughout was reported missing";
  EXPECT_EQ(totals[2], 0u);
  EXPECT_GT(totals[0], 100'000u);
  EXPECT_GT(rebuilds, 1000u) << "too few rebuilds overlapped the reads to prove anything";
}

// The writer never waits for a reader: reader processes are frozen (SIGSTOP) in the middle of
// their read loops, possibly inside a copy of the very slots the writer then rewrites 100 000
// times each; the writer finishes regardless (a writer that waited would hang here until the
// test's timeout), and the readers, thawed, go on reading consistent copies.
TEST(ReaderFrozenTest, TheWriterFinishesWhileReaderProcessesAreFrozenMidRead) {
  test::ScratchSegment seg("frozen");
  auto w = Writer::open(test::small_config(seg.name(), 64));
  constexpr int kKeys = 8;
  auto key = [](int i) { return "k" + std::to_string(i); };
  for (int i = 0; i < kKeys; ++i)
    w->upsert(*w->make_update("spot", key(i), "SOL", {{"qty", "0"}, {"fees", "0"}}));
  int started[2];
  ASSERT_EQ(::pipe(started), 0);
  const std::string name = seg.name();
  std::vector<pid_t> readers;
  for (int k = 0; k < 2; ++k) {
    readers.push_back(test::fork_child([&] {
      Reader r = Reader::open(name);
      Position p;
      // qty and fees are always written together with the same value: a copy with them
      // different is torn.
      for (std::uint64_t n = 0;; ++n) {
        const ReadStatus st = r.get(NamespaceId{0}, key(static_cast<int>(n % kKeys)), "SOL", p);
        if (st != ReadStatus::ok && st != ReadStatus::writer_busy) return 10;
        if (st == ReadStatus::ok && p.values[0] != p.values[6]) return 11;
        if (n == 100'000 && ::write(started[1], "x", 1) != 1) return 12;
        if (p.values[0] == static_cast<int128>(-1) * 1'000'000'000'000'000'000)
          return 0;  // the last value
      }
    }));
  }
  char c = 0;
  for (int k = 0; k < 2; ++k) ASSERT_EQ(::read(started[0], &c, 1), 1);
  for (pid_t pid : readers) ::kill(pid, SIGSTOP);
  for (pid_t pid : readers) {
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, WUNTRACED), pid);
    ASSERT_TRUE(WIFSTOPPED(st));
  }
  for (int round = 1; round <= 100'000; ++round) {
    const std::string v = std::to_string(round);
    for (int i = 0; i < kKeys; ++i)
      w->upsert(*w->make_update("spot", key(i), "SOL", {{"qty", v}, {"fees", v}}));
  }
  for (int i = 0; i < kKeys; ++i)
    w->upsert(*w->make_update("spot", key(i), "SOL", {{"qty", "-1"}, {"fees", "-1"}}));
  EXPECT_EQ(Reader::open(seg.name()).stats().updates, 100'001u * kKeys);
  for (pid_t pid : readers) ::kill(pid, SIGCONT);
  for (pid_t pid : readers) EXPECT_EQ(test::wait_child(pid), 0);
  ::close(started[0]);
  ::close(started[1]);
}
