// A follower (writer/follow/follower.hpp): a segment kept from another writer's Redis through
// its positions and its change stream, equal to Redis after churn of every kind, loading again
// when the stream cannot take it further, never a false miss for its readers meanwhile.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "poscache/mirror_status.hpp"
#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "redis/redis_server.hpp"
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
struct FollowLoop {
  std::unique_ptr<Writer> w;
  std::atomic<bool> stop{false}, paused{false};
  std::thread t;
  explicit FollowLoop(std::unique_ptr<Writer> writer) : w(std::move(writer)) {
    t = std::thread([this] {
      while (!stop.load()) {
        if (paused.load()) {
          std::this_thread::sleep_for(1ms);
          continue;
        }
        w->follow(5ms);
        w->tick();
      }
    });
  }
  ~FollowLoop() {
    stop = true;
    t.join();
  }
};

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
  EXPECT_EQ(f.w->stats().follow_reloads, 1u);
  churn(*w, 2, 40);  // while it follows the stream
  EXPECT_EQ(wait_equal(srv, b.name()), "");
  Reader r = Reader::open(b.name());
  const MirrorStatus st = mirror_status(r);
  EXPECT_EQ(st.follow_state, "following");
  EXPECT_GT(st.follow_entries, 1000u);
  EXPECT_EQ(st.follow_reloads, 1u);  // the stream took it all the way: no second load
  std::lock_guard g(m);
  EXPECT_GT(lags.size(), 500u);
  // The follower's own changes are refused: its positions come from Redis only.
  EXPECT_THROW(f.w->upsert(must(f.w->make_update("spot", "x", "SOL", {{"qty", "1"}}))), Error);
  EXPECT_THROW(f.w->invalidate_all(), Error);
}

// The stream trimmed past the follower (it stopped reading while the writer made more changes
// than change_stream_length), then deleted (Redis lost it): each time the follower loads the
// prefix again and ends equal to Redis. A reader of the follower's segment meanwhile never
// misses a position that exists throughout.
TEST(Follower, LoadsAgainWhenTheStreamCannotTakeItFurtherWithoutAFalseMiss) {
  RedisServer srv;
  ScratchSegment a("fol_trim_w"), b("fol_trim_copy");
  WriterConfig wc = writer_config(a, srv, 4096);
  wc.redis->change_stream_length = 1000;
  auto w = Writer::open(wc);
  for (int i = 0; i < 50; ++i)  // pinned: never changed again
    w->upsert(must(w->make_update("spot", "pinned", "P" + std::to_string(i), {{"qty", "7"}})));
  ASSERT_TRUE(w->sync_redis(10s));
  FollowLoop f(Writer::open(follower_config(b, srv)));
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
  EXPECT_EQ(f.w->stats().follow_reloads, 1u);

  f.paused = true;                    // behind by more than the stream keeps
  std::this_thread::sleep_for(20ms);  // its loop idle: this thread steps it below
  w->invalidate_account("doomed");
  changes(6000, 3);
  // The first step finds the stream trimmed past it and loads at once (it does not apply what
  // follows the gap first).
  f.w->follow(0ms);
  EXPECT_EQ(f.w->stats().follow_reloads, 2u);
  f.paused = false;
  EXPECT_EQ(wait_equal(srv, b.name()), "");
  EXPECT_EQ(f.w->stats().follow_reloads, 2u);

  {  // the stream gone with Redis's data (here: deleted), the positions still there
    auto c = srv.client();
    f.paused = true;
    std::this_thread::sleep_for(20ms);
    cmd(c, {"DEL", "poscache:v1:@changes"});
  }
  changes(300, 5);  // a new stream, shorter than what the follower had read
  f.paused = false;
  EXPECT_EQ(wait_equal(srv, b.name()), "");
  EXPECT_EQ(f.w->stats().follow_reloads, 3u);
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
  EXPECT_EQ(f.w->stats().live, 0u);
  ScratchSegment a("fol_late_w");
  auto w = Writer::open(writer_config(a, srv, 64));
  w->upsert(must(w->make_update("spot", "late", "SOL", {{"qty", "1.5"}})));
  ASSERT_TRUE(w->sync_redis(10s));
  EXPECT_EQ(wait_equal(srv, b.name()), "");
}

}  // namespace
}  // namespace poscache::test
