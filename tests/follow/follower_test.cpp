// A follower (writer/follow/follower.hpp): a segment kept from another writer's Redis through
// its positions and its change stream, equal to Redis after churn of every kind, loading again
// when the stream cannot take it further, never a false miss for its readers meanwhile.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <atomic>
#include <random>
#include <thread>

#include "poscache/mirror_status.hpp"
#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "redis/redis_util.hpp"
#include "test_util.hpp"

namespace poscache::test {
namespace {

using namespace std::chrono_literals;

WriterConfig writer_config(const ScratchSegment& seg, const RedisServer& srv,
                           std::uint64_t capacity) {
  WriterConfig c = small_config(seg.name(), capacity);
  c.redis = srv.config();
  c.log = [](LogLevel, std::string_view) {};
  return c;
}

WriterConfig follower_config(const ScratchSegment& seg, const RedisServer& srv,
                             std::uint64_t capacity = 4096) {
  WriterConfig c = writer_config(seg, srv, capacity);
  c.follow = true;
  return c;
}

// The follower's loop in a thread of its own, as the daemon's apply loop runs it.
// (A standby that took the lease is a writer: the loop goes on ticking it.) The Writer is the
// loop thread's: the test reads the follower through its segment (status()), and uses the
// Writer itself only while the loop is paused (pause() waits until the loop says so, which
// orders the loop's last writes before the test's, for ThreadSanitizer too) or halted.
struct FollowLoop {
  std::unique_ptr<Writer> w;
  std::atomic<bool> stop{false}, paused{false}, idle{false};
  std::atomic<std::int64_t> promoted_at{0};  // steady_clock ns when following() turned false
  std::thread t;
  explicit FollowLoop(std::unique_ptr<Writer> writer) : w(std::move(writer)) {
    t = std::thread([this] {
      while (!stop.load()) {
        idle.store(false);  // before the look at `paused`: pause() cannot miss a step under way
        if (paused.load()) {
          idle.store(true);
          std::this_thread::sleep_for(1ms);
          continue;
        }
        if (w->following()) {
          w->follow(5ms);
          if (!w->following())
            promoted_at = std::chrono::steady_clock::now().time_since_epoch().count();
        } else {
          std::this_thread::sleep_for(1ms);
        }
        w->tick();
      }
    });
  }
  void pause() {
    paused = true;
    while (!idle.load()) std::this_thread::sleep_for(1ms);
  }
  void resume() { paused = false; }
  // Stops the loop: the writer is this thread's from here on.
  void halt() {
    if (stop.exchange(true)) return;
    t.join();
  }
  ~FollowLoop() { halt(); }
};

// What a follower publishes in its segment, as poscache-inspect reads it.
MirrorStatus status(const std::string& segment) {
  return mirror_status(Reader::open(segment));
}

// Waits until the follower's segment equals Redis (or 20 s pass); returns the last difference.
std::string wait_equal(RedisServer& srv, const std::string& follower_segment) {
  auto c = srv.client();
  std::string diff;
  for (int i = 0; i < 400; ++i) {
    const Db want = read_positions(c), got = segment_as_db(follower_segment);
    if (got == want) return "";
    std::size_t missing = 0, extra = 0, differ = 0;
    for (const auto& [k, h] : want) {
      auto it = got.find(k);
      if (it == got.end())
        ++missing;
      else if (it->second != h)
        ++differ;
    }
    for (const auto& [k, h] : got) extra += want.count(k) == 0 ? 1 : 0;
    diff = std::to_string(missing) + " missing, " + std::to_string(extra) + " extra, " +
           std::to_string(differ) + " different of " + std::to_string(want.size());
    std::this_thread::sleep_for(50ms);
  }
  return diff;
}

// Changes of every kind in a small writer (evictions: Redis keeps more than its segment).
void churn(Writer& w, std::uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  const char* nss[] = {"spot", "moonwell"};
  const char* field[] = {"qty", "debt_amount"};
  for (int round = 0; round < rounds; ++round) {
    for (int i = 0; i < 200; ++i) {
      const std::size_t n = rng() % 2;
      const std::string account = "acct" + std::to_string(rng() % 12);
      const std::string instrument = "I" + std::to_string(rng() % 8);
      const std::uint64_t op = rng() % 100;
      if (op < 90) {
        w.upsert(must(w.make_update(nss[n], account, instrument,
                                    {{field[n], std::to_string(rng() % 100000)}})));
      } else if (op < 97) {
        w.erase(*w.make_key(nss[n], account, instrument));
      } else if (op < 98) {
        w.invalidate_account(account);
      } else if (op < 99) {
        w.invalidate_matching(std::string(nss[n]) + ":*:" + instrument);
      } else {
        w.invalidate_account(account, *w.namespace_id(nss[n]));
      }
    }
    if (round % 3 == 0) {
      EXPECT_TRUE(w.sync_redis(10s));
    }
  }
  EXPECT_TRUE(w.sync_redis(10s));
}

TEST(Follower, KeepsACopyEqualToRedisThroughChurnOfEveryKind) {
  RedisServer srv;
  ScratchSegment a("fol_writer"), b("fol_copy");
  auto w = Writer::open(writer_config(a, srv, 96));
  churn(*w, 1, 5);  // before the follower starts: its first load
  std::vector<std::int64_t> lags;
  std::mutex m;
  WriterConfig fc = follower_config(b, srv);
  fc.on_follow = [&](std::int64_t lag) {
    std::lock_guard g(m);
    lags.push_back(lag);
  };
  FollowLoop f(Writer::open(fc));
  EXPECT_EQ(status(b.name()).follow_reloads, 1u);
  churn(*w, 2, 40);  // while it follows the stream
  EXPECT_EQ(wait_equal(srv, b.name()), "");
  Reader r = Reader::open(b.name());
  const MirrorStatus st = mirror_status(r);
  EXPECT_EQ(st.follow_state, "following");
  EXPECT_GT(st.follow_entries, 50u);  // entries: one per transaction of the writer
  EXPECT_EQ(st.follow_reloads, 1u);   // the stream took it all the way: no second load
  std::lock_guard g(m);
  EXPECT_GT(lags.size(), 500u);
  // The follower's own changes are refused: its positions come from Redis only.
  f.pause();
  EXPECT_THROW(f.w->upsert(must(f.w->make_update("spot", "x", "SOL", {{"qty", "1"}}))), Error);
  EXPECT_THROW(f.w->invalidate_all(), Error);
}

// The stream trimmed past the follower (it stopped reading while the writer made more changes
// than change_stream_retention), then deleted (Redis lost it): each time the follower loads the
// prefix again and ends equal to Redis. A reader of the follower's segment meanwhile never
// misses a position that exists throughout.
TEST(Follower, LoadsAgainWhenTheStreamCannotTakeItFurtherWithoutAFalseMiss) {
  RedisServer srv;
  ScratchSegment a("fol_trim_w"), b("fol_trim_copy");
  WriterConfig wc = writer_config(a, srv, 4096);
  wc.redis->change_stream_retention = 1s;
  auto w = Writer::open(wc);
  for (int i = 0; i < 50; ++i)  // pinned: never changed again
    w->upsert(must(w->make_update("spot", "pinned", "P" + std::to_string(i), {{"qty", "7"}})));
  ASSERT_TRUE(w->sync_redis(10s));
  FollowLoop f(Writer::open(follower_config(b, srv)));  // it reads 16 entries at a time
  std::atomic<bool> done{false};
  std::atomic<long> reads{0}, misses{0};
  std::thread reader([&] {
    Reader r = Reader::open(b.name());
    Position p;
    while (!done.load()) {
      for (int i = 0; i < 50; ++i) {
        const auto st = r.get("spot", "pinned", "P" + std::to_string(i), p);
        if (st != ReadStatus::ok && st != ReadStatus::stale) ++misses;
        ++reads;
      }
    }
  });
  auto changes = [&](int n, int salt) {
    for (int i = 0; i < n; ++i) {
      w->upsert(
          must(w->make_update("spot", "acct" + std::to_string(i % 40), "I" + std::to_string(i % 50),
                              {{"qty", std::to_string(i * salt)}})));
      if (i % 500 == 0) {
        w->erase(*w->make_key("spot", "acct" + std::to_string(i % 40), "I3"));
        EXPECT_TRUE(w->sync_redis(10s));
      }
    }
    EXPECT_TRUE(w->sync_redis(10s));
  };
  for (int i = 0; i < 20; ++i)  // removed while the follower is behind: only a load can tell
    w->upsert(must(
        w->make_update("moonwell", "doomed", "D" + std::to_string(i), {{"debt_amount", "1"}})));
  changes(2000, 1);
  EXPECT_EQ(wait_equal(srv, b.name()), "");
  EXPECT_EQ(status(b.name()).follow_reloads, 1u);

  f.pause();  // behind by more than the stream keeps
  w->invalidate_account("doomed");
  changes(6000, 3);
  std::this_thread::sleep_for(1200ms);  // older than the retention: trimmed at the next entry
  for (int i = 0; i < 40; ++i) {        // 40 entries after the trim: more than one batch of 16
    w->upsert(must(w->make_update("spot", "after", "A" + std::to_string(i), {{"qty", "1"}})));
    ASSERT_TRUE(w->sync_redis(10s));
  }
  // The first step finds the stream trimmed past it and loads at once (it does not apply what
  // follows the gap first).
  f.w->follow(0ms);
  EXPECT_EQ(status(b.name()).follow_reloads, 2u);
  f.resume();
  EXPECT_EQ(wait_equal(srv, b.name()), "");
  EXPECT_EQ(status(b.name()).follow_reloads, 2u);

  {  // the stream gone with Redis's data (here: deleted), the positions still there
    auto c = srv.client();
    f.pause();
    std::this_thread::sleep_for(20ms);
    cmd(c, {"DEL", "poscache:v1:@changes"});
  }
  changes(300, 5);  // a new stream, shorter than what the follower had read
  f.resume();
  EXPECT_EQ(wait_equal(srv, b.name()), "");
  EXPECT_EQ(status(b.name()).follow_reloads, 3u);
  done = true;
  reader.join();
  EXPECT_GT(reads.load(), 1000);
  EXPECT_EQ(misses.load(), 0) << "a reader of the follower missed a position that never changed";
}

TEST(Follower, AFollowerNeedsRedisAndATrimmedOrMissingStreamIsNotAnError) {
  ScratchSegment b("fol_bad");
  WriterConfig c = small_config(b.name());
  c.follow = true;
  try {
    Writer::open(c);
    FAIL() << "a follower without Redis opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a follower needs Redis"), std::string::npos) << e.what();
  }
  // No writer has written yet: the follower starts empty and waits for the stream.
  RedisServer srv;
  FollowLoop f(Writer::open(follower_config(b, srv)));
  EXPECT_EQ(Reader::open(b.name()).stats().live, 0u);
  ScratchSegment a("fol_late_w");
  auto w = Writer::open(writer_config(a, srv, 64));
  w->upsert(must(w->make_update("spot", "late", "SOL", {{"qty", "1.5"}})));
  ASSERT_TRUE(w->sync_redis(10s));
  EXPECT_EQ(wait_equal(srv, b.name()), "");
}

// A standby. The writer, in a child process on another host name, upserts 64 positions per
// round with qty = the round and reports each round Redis acknowledged (sync_redis); it is
// killed with -9. Of two standbys exactly one takes the lease once it expires, holding every
// acknowledged round; the other goes on following the new writer, whose changes it receives.
TEST(Follower, AStandbyTakesOverFromAWriterKilledWithMinus9AndOnlyOneOfTwoDoes) {
  RedisServer srv;
  ScratchSegment a("fol_sb_w"), b("fol_sb_1"), c2("fol_sb_2");
  const auto ttl = 900ms;
  auto* acked = static_cast<std::atomic<std::int64_t>*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(acked, MAP_FAILED);
  new (acked) std::atomic<std::int64_t>(-1);
  WriterConfig wc = writer_config(a, srv, 1 << 16);
  wc.redis->lease_ttl = ttl;
  wc.redis->host_name = "trade-1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      auto w = Writer::open(wc);
      for (std::int64_t round = 0;; ++round) {
        for (int k = 0; k < 64; ++k) {
          w->upsert(must(w->make_update("spot", "acct", "I" + std::to_string(k),
                                        {{"qty", std::to_string(round)}})));
        }
        // and a key of its own: only its own entry in the stream brings it
        w->upsert(must(w->make_update("spot", "rounds", "R" + std::to_string(round),
                                      {{"qty", std::to_string(round)}})));
        w->tick();
        if (w->sync_redis(5s)) acked->store(round);
      }
    } catch (...) {
    }
    ::_exit(1);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{pid};
  for (int i = 0; i < 1000 && acked->load() < 50; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GE(acked->load(), 50) << "the writer did not get going";
  auto standby = [&](const ScratchSegment& seg) {
    WriterConfig sc = follower_config(seg, srv, 1 << 16);
    sc.standby = true;
    sc.redis->lease_ttl = ttl;
    sc.redis->host_name = "standby-host";
    return std::make_unique<FollowLoop>(Writer::open(sc));
  };
  auto s1 = standby(b);
  auto s2 = standby(c2);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(status(b.name()).follow_state, "following");
  EXPECT_EQ(status(c2.name()).follow_state, "following");
  // Both behind when the writer dies, and still behind when its lease has expired: a standby
  // applies all the stream holds before it takes the lease.
  s1->pause();
  s2->pause();
  std::this_thread::sleep_for(1500ms);  // thousands of entries: more than one batch
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  const std::int64_t last_acked = acked->load();
  const auto killed = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(ttl + 300ms);  // resumed with the lease free and thousands to apply
  s1->resume();
  s2->resume();
  for (int i = 0; i < 1000 && s1->promoted_at.load() == 0 && s2->promoted_at.load() == 0; ++i)
    std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(4 * ttl);  // time enough for the other to do it too, wrongly
  const bool one = s1->promoted_at.load() != 0, two = s2->promoted_at.load() != 0;
  ASSERT_TRUE(one != two) << "promoted: first " << one << ", second " << two;
  FollowLoop& writer = one ? *s1 : *s2;
  FollowLoop& other = one ? *s2 : *s1;
  const double took =
      static_cast<double>(writer.promoted_at.load() - killed.time_since_epoch().count()) / 1e6;
  std::printf("standby: promoted %.0f ms after the kill (lease ttl %lld ms)\n", took,
              static_cast<long long>(ttl.count()));
  EXPECT_EQ(other.promoted_at.load(), 0);
  EXPECT_EQ(status(other.w->segment_name()).follow_state, "following");
  writer.halt();
  Writer& w = *writer.w;
  // Every round Redis acknowledged is here (a later one too, maybe: written, not yet confirmed).
  for (int k = 0; k < 64; ++k) {
    const auto p = w.find(*w.make_key("spot", "acct", "I" + std::to_string(k)));
    ASSERT_TRUE(p.has_value());
    EXPECT_GE(static_cast<std::int64_t>(p->values[0] / 1'000'000'000'000'000'000), last_acked);
  }
  std::int64_t missing = 0;
  for (std::int64_t r = 0; r <= last_acked; ++r)
    missing += w.find(*w.make_key("spot", "rounds", "R" + std::to_string(r))) ? 0 : 1;
  EXPECT_EQ(missing, 0) << "of " << last_acked + 1 << " rounds acknowledged";
  // The new writer writes, to Redis and its stream; the other standby follows it.
  auto redis = srv.client();
  const auto held = cmd(redis, {"HGET", "poscache:v1:@writer", "epoch"});
  EXPECT_EQ(std::to_string(w.stats().redis_lease_epoch), std::string(held->str, held->len));
  w.upsert(must(w.make_update("spot", "acct", "NEW", {{"qty", "5"}})));
  w.invalidate_matching("spot:acct:I1*");
  ASSERT_TRUE(w.sync_redis(10s));
  EXPECT_EQ(wait_equal(srv, other.w->segment_name()), "");
  ::munmap(acked, 4096);
}

}  // namespace
}  // namespace poscache::test
