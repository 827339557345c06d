// The trade ids mirrored to Redis (writer/trade_log.hpp, writer/redis/sync_trades.cpp): while
// fills land on a few hot positions as fast as the apply thread goes, another connection takes
// atomic snapshots of Redis (MULTI: every position's version and the trade set) and checks, for
// every fill the apply thread has finished, that its id is in the set exactly when its effect
// is in its position's hash: never an effect without its id (a resend would be applied twice),
// never an id before its effect (a resend would be refused while the fill is lost).
#include <gtest/gtest.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "poscache/writer.hpp"
#include "redis/redis_util.hpp"
#include "test_util.hpp"
#include "writer/ingest/executor.hpp"
#include "writer/ingest/json_codec.hpp"
#include "writer/ingest/trade_window.hpp"

namespace poscache::ingest {
namespace trade_mirror {  // named: the test files share one unity translation unit

struct Done {
  std::uint64_t id_hash = 0;
  std::uint64_t version = 0;
  int key = 0;
};

constexpr int kKeys = 3;
std::string account_of(int key) {
  return "w" + std::to_string(key);
}

// Takes atomic snapshots of Redis (MULTI: every position's version, the trade set) until
// stopped, and judges every write finished before each snapshot's judgement began.
class Checker {
 public:
  Checker(test::RedisServer& srv, const std::vector<Done>& done, const std::atomic<int>& finished)
      : thread_([this, &srv, &done, &finished] { run(srv, done, finished); }) {}
  ~Checker() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Waits (up to 10 s) for two more snapshots, ticking the writer meanwhile.
  void wait_snapshots(Writer& w) {
    const std::uint64_t seen = snapshots_.load();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (snapshots_.load() <= seen + 1 && std::chrono::steady_clock::now() < deadline) {
      w.tick();
      std::this_thread::yield();
    }
  }
  std::atomic<std::uint64_t> snapshots_{0};
  std::uint64_t missing = 0, early = 0, checked = 0;
  std::string first_problem;

 private:
  void run(test::RedisServer& srv, const std::vector<Done>& done,
           const std::atomic<int>& finished) {
    auto c = srv.client();
    while (!stop_.load()) {
      test::cmd(c, {"MULTI"});
      for (int k = 0; k < kKeys; ++k)
        test::cmd(c, {"HGET", test::key_of("spot", account_of(k), "SOL"), "version"});
      test::cmd(c, {"ZRANGE", "poscache:v1:spot:@trades", "0", "-1", "WITHSCORES"});
      const detail::Reply r = test::cmd(c, {"EXEC"});
      // Writes finished after the snapshot may be in it too; only those finished before the
      // count is read are judged (their records were stored before it: release/acquire).
      const int n = finished.load(std::memory_order_acquire);
      std::uint64_t version[kKeys] = {};
      for (int k = 0; k < kKeys; ++k) {
        const redisReply* v = r->element[k];
        if (v->type == REDIS_REPLY_STRING) std::from_chars(v->str, v->str + v->len, version[k]);
      }
      // member "<version>:<id hash>", 16 hex digits each (writer/redis/sync_trades.cpp)
      std::unordered_map<std::uint64_t, std::uint64_t> in_set;  // id hash -> version
      const redisReply* z = r->element[kKeys];
      for (std::size_t i = 0; i + 1 < z->elements; i += 2) {
        const char* m = z->element[i]->str;
        std::uint64_t h = 0, v = 0;
        std::from_chars(m, m + 16, v, 16);
        std::from_chars(m + 17, m + 33, h, 16);
        in_set[h] = v;
      }
      for (int i = 0; i < n; ++i) {
        const Done& d = done[i];
        const auto it = in_set.find(d.id_hash);
        const bool effect = d.version <= version[d.key];
        const bool id = it != in_set.end();
        const bool bad_score = id && it->second != d.version;
        if (effect && !id) ++missing;
        if ((!effect && id) || bad_score) ++early;
        if ((effect != id || bad_score) && first_problem.empty())
          first_problem = "T-" + std::to_string(i) + " version " + std::to_string(d.version) +
                          ", its position's in redis " + std::to_string(version[d.key]) +
                          (effect && !id   ? ": an effect without its id"
                           : !effect && id ? ": an id without its effect"
                                           : ": member's version " + std::to_string(it->second));
        ++checked;
      }
      ++snapshots_;
    }
  }
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A writer mirroring to a real Redis, with a window whose trade ids it mirrors (attached at once,
// or by attach() after the test prepared Redis or the window). The writer closes first: its sync
// thread reads the window. Its log is kept.
struct Mirrored {
  explicit Mirrored(const std::string& tag, std::uint64_t window_capacity = 1 << 17,
                    bool attach_now = true)
      : seg(tag),
        w(Writer::open(config(seg, srv, log))),
        window(seg.name(), w->stats().generation, window_capacity,
               [](const PositionKey&) { return 0; }) {
    if (attach_now) attach();
  }
  ~Mirrored() { w->close(); }
  void attach() { EXPECT_TRUE(w->mirror_trades(window.log())); }
  struct Log {
    std::mutex mu;
    std::string text;
  };
  static WriterConfig config(const test::ScratchSegment& s, const test::RedisServer& r, Log& log) {
    WriterConfig c = test::small_config(s.name(), 4096);
    c.redis = r.config();
    c.log = [&log](LogLevel, std::string_view m) {
      std::lock_guard g(log.mu);
      log.text.append(m).append("\n");
    };
    return c;
  }
  std::string logged() {
    std::lock_guard g(log.mu);
    return log.text;
  }
  // A fill of `qty` SOL for account w1 with trade id `id`, through the executor.
  CommandResult fill(CommandExecutor& exec, const std::string& id, int qty = 1) {
    JsonDecoder d(w->namespaces());
    auto line = d.decode(R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL",)"
                         R"("side":"buy","qty":")" +
                         std::to_string(qty) + R"(","price":"100","trade_id":")" + id + "\"}");
    return exec.execute(std::get<DecodedLine>(line).command);
  }
  Log log;
  test::RedisServer srv;
  test::ScratchSegment seg;
  std::unique_ptr<Writer> w;
  TradeWindow window;
};

TEST(TradeMirrorTest, RedisHoldsEachTradeIdExactlyWithItsFillsEffect) {
  Mirrored m("tmirror");
  test::RedisServer& srv = m.srv;
  auto& w = m.w;
  TradeWindow& window = m.window;
  CommandExecutor exec(*w, &window);
  JsonDecoder decoder(w->namespaces());
  constexpr int kFills = 40'000;
  std::vector<Command> fills;
  for (int i = 0; i < kFills; ++i) {
    const std::string line = R"({"op":"fill","ns":"spot","account":")" + account_of(i % kKeys) +
                             R"(","instrument":"SOL","side":")" + (i % 3 == 2 ? "sell" : "buy") +
                             R"(","qty":"1","price":")" + std::to_string(100 + i % 17) +
                             R"(","trade_id":"T-)" + std::to_string(i) + "\"}";
    auto d = decoder.decode(line);
    ASSERT_TRUE(std::holds_alternative<DecodedLine>(d)) << line;
    fills.push_back(std::get<DecodedLine>(d).command);
  }
  std::vector<Done> done(kFills);
  std::atomic<int> finished{0};
  Checker check(srv, done, finished);
  for (int i = 0; i < kFills; ++i) {
    const CommandResult r = exec.execute(fills[i]);
    ASSERT_EQ(r.status, CommandStatus::applied) << r.error;
    done[i] = {detail::trade_id_hash("T-" + std::to_string(i)), r.version, i % kKeys};
    finished.store(i + 1, std::memory_order_release);
    if (i % 8 == 0) w->tick();                     // hand-offs go with the tick, as in the daemon
    if (i % 500 == 499) check.wait_snapshots(*w);  // however loaded the host
  }
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(30)));
  check.stop();
  EXPECT_EQ(check.missing, 0u) << check.first_problem;
  EXPECT_EQ(check.early, 0u) << check.first_problem;
  EXPECT_GE(check.snapshots_.load(), 80u);
  EXPECT_GT(check.checked, 100'000u);
  auto c = srv.client();  // in the end: every id
  EXPECT_EQ(test::cmd(c, {"ZCARD", "poscache:v1:spot:@trades"})->integer, kFills);
}

// The apply thread stopped between a write and its trade record (TW2 and TW3: a preempted thread,
// played here by a pause every 25th write): the sync thread, having read the content, waits for
// the record before it writes the content (TS2), or leaves the position for its next round.
// (Seen failing without that wait: an effect without its id.)
TEST(TradeMirrorTest, AWriterPausedBetweenAWriteAndItsTradeRecordIsWaitedFor) {
  Mirrored m("tmirrorp");
  test::RedisServer& srv = m.srv;
  auto& w = m.w;
  TradeWindow& window = m.window;
  constexpr int kWrites = 3'000;
  std::vector<Done> done(kWrites);
  std::atomic<int> finished{0};
  Checker check(srv, done, finished);
  const NamespaceId spot = *w->namespace_id("spot");
  for (int i = 0; i < kWrites; ++i) {
    PositionKey key;
    key.set(spot, account_of(i % kKeys), "SOL");
    const std::string id = "T-" + std::to_string(i);
    const auto cur = w->find(spot, key.account_view(), "SOL");
    window.begin(TradeWindow::id(spot, id), key, cur ? cur->version : 0);  // TW1
    const ApplyResult r = w->upsert(test::must(
        w->make_update("spot", key.account_view(), "SOL", {{"qty", std::to_string(i)}})));  // TW2
    if (i % 25 == 0) std::this_thread::sleep_for(std::chrono::microseconds(700));
    window.commit(r.version);  // TW3
    done[i] = {detail::trade_id_hash(id), r.version, i % kKeys};
    finished.store(i + 1, std::memory_order_release);
    w->tick();
    if (i % 100 == 99) check.wait_snapshots(*w);
  }
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(30)));
  check.stop();
  EXPECT_EQ(check.missing, 0u) << check.first_problem;
  EXPECT_EQ(check.early, 0u) << check.first_problem;
  auto c = srv.client();
  EXPECT_EQ(test::cmd(c, {"ZCARD", "poscache:v1:spot:@trades"})->integer, kWrites);
}

// The set keeps the newest `trade_window` ids by version, exactly: versions pass 2^60, where a
// double score cannot tell 256 of them apart (a new user's warm start re-applied 14 of the
// newest 1 024 while older ones stayed), so members sort by their version.
TEST(TradeMirrorTest, TheSetKeepsExactlyTheNewestTradeWindowIds) {
  Mirrored m("tmirror_trim", 1024);
  CommandExecutor exec(*m.w, &m.window);
  std::vector<std::string> members;
  for (int i = 0; i < 3000; ++i) {
    const CommandResult r = m.fill(exec, "T-" + std::to_string(i));
    ASSERT_EQ(r.status, CommandStatus::applied) << r.error;
    char member[34];
    std::snprintf(member, sizeof member, "%016llx:%016llx",
                  static_cast<unsigned long long>(r.version),
                  static_cast<unsigned long long>(detail::trade_id_hash("T-" + std::to_string(i))));
    members.push_back(member);
    if (i % 64 == 0) m.w->tick();
  }
  ASSERT_TRUE(m.w->sync_redis(std::chrono::seconds(30)));
  auto c = m.srv.client();
  const detail::Reply z = test::cmd(c, {"ZRANGE", "poscache:v1:spot:@trades", "0", "-1"});
  ASSERT_EQ(z->elements, 1024u);
  for (std::size_t i = 0; i < 1024; ++i)
    ASSERT_EQ(std::string(z->element[i]->str, z->element[i]->len), members[3000 - 1024 + i]) << i;
}

// A trades key of another type (a hand edit): a ZADD there would fail inside the MULTI while
// the position's write went through, its effect in Redis without its id. The position is held
// back (not written), the error names the key, and once the key is deleted both go out.
TEST(TradeMirrorTest, APositionIsHeldBackWhileItsTradesKeyIsOfAnotherType) {
  Mirrored m("tmirror_type", 1 << 17, /*attach_now=*/false);
  auto c = m.srv.client();
  test::cmd(c, {"SET", "poscache:v1:spot:@trades", "oops"});
  m.attach();
  CommandExecutor exec(*m.w, &m.window);
  ASSERT_EQ(m.fill(exec, "NEW-1", 7).status, CommandStatus::applied);
  EXPECT_FALSE(m.w->sync_redis(std::chrono::milliseconds(1500)));  // not acknowledged
  const std::string key = test::key_of("spot", "w1", "SOL");
  EXPECT_EQ(test::cmd(c, {"EXISTS", key})->integer, 0) << "the effect went without its id\n"
                                                       << m.logged();
  EXPECT_NE(m.logged().find("poscache:v1:spot:@trades is a string, not the sorted set"),
            std::string::npos)
      << m.logged();
  test::cmd(c, {"DEL", "poscache:v1:spot:@trades"});
  ASSERT_TRUE(m.w->sync_redis(std::chrono::seconds(10))) << m.logged();
  EXPECT_EQ(test::cmd(c, {"EXISTS", key})->integer, 1);
  EXPECT_EQ(test::cmd(c, {"ZCARD", "poscache:v1:spot:@trades"})->integer, 1);
}

// A window nearly full of ids taken from Redis (a promotion, a warm start) is read whole by the
// sync thread: no "overwritten before they reached Redis" (a new user saw a false one on every
// start with more than trade_window - 64 ids).
TEST(TradeMirrorTest, AFullWindowLoadedFromRedisIsNotTakenForLostIds) {
  Mirrored m("tmirror_full", 1024, /*attach_now=*/false);
  std::vector<TradeWindow::Known> known;
  for (std::uint64_t i = 0; i < 1024; ++i)
    known.push_back({0, detail::trade_id_hash("OLD-" + std::to_string(i)), 100 + i});
  ASSERT_EQ(m.window.load(known), 1024u);
  m.attach();
  CommandExecutor exec(*m.w, &m.window);
  ASSERT_EQ(m.fill(exec, "NEW-1").status, CommandStatus::applied);
  ASSERT_TRUE(m.w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(m.logged().find("overwritten"), std::string::npos) << m.logged();
}

}  // namespace trade_mirror
}  // namespace poscache::ingest
