// The change stream {prefix}:@changes (writer/redis/redis_format.hpp): every change Redis
// received is an entry, in the order Redis applied it, so that a consumer that replays the
// stream from the start holds exactly the keys (and versions) Redis holds.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "poscache/mirror_status.hpp"
#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "redis/redis_util.hpp"
#include "shm/values/key_text.hpp"
#include "test_util.hpp"

namespace poscache::test {
namespace {

using Fields = std::map<std::string, std::string>;

struct Entry {
  std::string id;
  Fields f;
};

std::vector<Entry> read_stream(detail::RedisClient& c, const std::string& prefix = "poscache:v1") {
  std::vector<Entry> out;
  auto r = cmd(c, {"XRANGE", prefix + ":@changes", "-", "+"});
  for (std::size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    Entry x;
    x.id.assign(e->element[0]->str, e->element[0]->len);
    const redisReply* kv = e->element[1];
    for (std::size_t j = 0; j + 1 < kv->elements; j += 2) {
      x.f[std::string(kv->element[j]->str, kv->element[j]->len)] =
          std::string(kv->element[j + 1]->str, kv->element[j + 1]->len);
    }
    out.push_back(std::move(x));
  }
  return out;
}

// Every position key under the prefix with the version its hash holds.
std::map<std::string, std::uint64_t> redis_versions(detail::RedisClient& c) {
  std::map<std::string, std::uint64_t> out;
  std::string cursor = "0";
  do {
    auto r =
        cmd(c, {"SCAN", cursor, "MATCH", "poscache:v1:*:{*}:*", "COUNT", "1000", "TYPE", "hash"});
    cursor.assign(r->element[0]->str, r->element[0]->len);
    for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
      const std::string key(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
      auto v = cmd(c, {"HGET", key, "version"});
      out[key] = std::stoull(std::string(v->str, v->len));
    }
  } while (cursor != "0");
  return out;
}

// A consumer's replay: a transaction's entry lists its positions' changes ("ns:account:instrument"
// -> "+version" for an upsert, "-version" for a removal): an upsert sets a key's version (a newer
// one only), a removal removes a key unless it holds a newer version; a pattern entry removes
// every key it covers that is older.
// Keys are "ns:account:instrument".
struct Replay {
  std::map<std::string, std::uint64_t> keys;
  std::string scratch;
  std::string problem;  // the first entry that is malformed, or a version that went backwards

  void apply(const Entry& e) {
    const Fields& f = e.f;
    auto get = [&](const char* name) -> std::string {
      auto it = f.find(name);
      if (it == f.end()) {
        if (problem.empty()) problem = "entry " + e.id + " has no field " + name;
        return {};
      }
      return it->second;
    };
    const std::string kind = get("kind");
    if (kind == "changes") {
      for (const auto& [key, change] : f) {
        if (key == "kind") continue;
        const std::uint64_t version = std::stoull(change.substr(1));
        auto it = keys.find(key);
        if (change[0] == '+') {
          if (it != keys.end() && it->second >= version && problem.empty())
            problem = "entry " + e.id + ": upsert " + key + " version " + std::to_string(version) +
                      " after version " + std::to_string(it->second);
          keys[key] = std::max(version, it == keys.end() ? 0 : it->second);
        } else if (change[0] != '-') {
          if (problem.empty()) problem = "entry " + e.id + ": " + key + " -> " + change;
        } else if (it != keys.end() && it->second <= version) {
          keys.erase(it);
        }
      }
      return;
    }
    const std::uint64_t version = std::stoull(get("version"));
    if (kind != "pattern") {
      if (problem.empty()) problem = "entry " + e.id + ": unknown kind " + kind;
      return;
    }
    const std::string scope = get("scope"), ns = get("ns"), pattern = get("pattern");
    for (auto it = keys.begin(); it != keys.end();) {
      const std::string& k = it->first;
      const std::size_t a = k.find(':'), b = k.find(':', a + 1);
      const std::string kns = k.substr(0, a), acct = k.substr(a + 1, b - a - 1),
                        instr = k.substr(b + 1);
      bool covered = false;
      if (scope == "account") covered = acct == pattern && (ns.empty() || ns == kns);
      if (scope == "namespace") covered = ns == kns;
      if (scope == "glob")
        covered = detail::key_matches(pattern.c_str(), scratch, kns, acct, instr);
      if (scope == "all") covered = true;
      if (covered && it->second < version)
        it = keys.erase(it);
      else
        ++it;
    }
  }
};

std::map<std::string, std::uint64_t> as_replay_keys(
    const std::map<std::string, std::uint64_t>& db) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [key, v] : db) {  // poscache:v1:ns:{account}:instrument
    const std::string rest = key.substr(std::string("poscache:v1:").size());
    const std::size_t a = rest.find(":{"), b = rest.find("}:");
    out[rest.substr(0, a) + ":" + rest.substr(a + 2, b - a - 2) + ":" + rest.substr(b + 2)] = v;
  }
  return out;
}

WriterConfig stream_config(const ScratchSegment& seg, const RedisServer& srv,
                           std::uint64_t capacity) {
  WriterConfig c = small_config(seg.name(), capacity);
  c.redis = srv.config();
  c.log = [](LogLevel, std::string_view) {};
  return c;
}

// Random changes of 8 accounts x 6 instruments x 3 namespaces in a small table: upserts
// (with evictions, so spills), erases and every kind of invalidation, flushed now and then.
// Returns the number of invalidations.
int churn(Writer& writer, std::uint64_t seed) {
  Writer* w = &writer;
  std::mt19937_64 rng(seed);
  const std::vector<std::string> accounts = {"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"};
  const std::vector<std::string> instruments = {"SOL", "ETH", "BTC", "USDC", "JUP", "BONK"};
  const std::vector<std::string> nss = {"spot", "moonwell", "marks"};
  const char* field[] = {"qty", "debt_amount", "bid"};
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  int invalidations = 0;
  for (int round = 0; round < 40; ++round) {
    for (int i = 0; i < 200; ++i) {
      const std::size_t n = rng() % nss.size();
      const std::uint64_t op = rng() % 100;
      if (op < 90) {
        w->upsert(must(w->make_update(nss[n], pick(accounts), pick(instruments),
                                      {{field[n], std::to_string(rng() % 1000)}})));
      } else if (op < 97) {
        w->erase(*w->make_key(nss[n], pick(accounts), pick(instruments)));
      } else {
        ++invalidations;
        switch (rng() % 4) {
          case 0:
            w->invalidate_account(pick(accounts));
            break;
          case 1:
            w->invalidate_account(pick(accounts), *w->namespace_id(nss[n]));
            break;
          case 2:
            w->invalidate_matching(nss[n] + ":*:" + pick(instruments));
            break;
          default:
            w->invalidate_namespace(*w->namespace_id(nss[n]));
            break;
        }
      }
    }
    if (round % 4 == 0) {
      EXPECT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    }
  }
  return invalidations;
}

TEST(ChangeStream, EachKindOfChangeIsOneEntryNamingItsKeyVersionOrPattern) {
  RedisServer srv;
  ScratchSegment seg("cs_kinds");
  auto w = Writer::open(stream_config(seg, srv, 4));
  const auto a = w->upsert(must(w->make_update("spot", "alice", "SOL", {{"qty", "1"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  const auto b = w->upsert(must(w->make_update("spot", "alice", "SOL", {{"qty", "2"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  const auto e = w->erase(*w->make_key("spot", "alice", "SOL"));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  w->upsert(must(w->make_update("moonwell", "bob", "USDC", {{"debt_amount", "5"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  w->invalidate_account("bob", *w->namespace_id("moonwell"));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  w->invalidate_account("carol");  // nothing to remove: the entry still says it happened
  w->invalidate_matching("spot:*:ETH");
  w->invalidate_namespace(*w->namespace_id("marks"));
  w->invalidate_all();
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));

  auto c = srv.client();
  const auto s = read_stream(c);
  ASSERT_EQ(s.size(), 9u);
  // A transaction's entry: its positions, "ns:account:instrument" -> "+version" or "-version".
  EXPECT_EQ(s[0].f,
            (Fields{{"kind", "changes"}, {"spot:alice:SOL", "+" + std::to_string(a.version)}}));
  EXPECT_EQ(s[1].f,
            (Fields{{"kind", "changes"}, {"spot:alice:SOL", "+" + std::to_string(b.version)}}));
  ASSERT_EQ(e.status, ApplyStatus::erased);
  ASSERT_EQ(s[2].f.size(), 2u);
  const std::string removal = s[2].f.at("spot:alice:SOL");
  // A removal has a version of its own, after the version it removed.
  ASSERT_EQ(removal[0], '-');
  EXPECT_GT(std::stoull(removal.substr(1)), b.version);
  EXPECT_EQ(s[3].f.at("kind"), "changes");
  EXPECT_EQ(s[3].f.count("moonwell:bob:USDC"), 1u);
  auto pattern = [](const Entry& x) {
    Fields f = x.f;
    f.erase("version");
    return f;
  };
  EXPECT_EQ(
      pattern(s[4]),
      (Fields{{"kind", "pattern"}, {"scope", "account"}, {"ns", "moonwell"}, {"pattern", "bob"}}));
  EXPECT_EQ(pattern(s[5]),
            (Fields{{"kind", "pattern"}, {"scope", "account"}, {"ns", ""}, {"pattern", "carol"}}));
  EXPECT_EQ(
      pattern(s[6]),
      (Fields{{"kind", "pattern"}, {"scope", "glob"}, {"ns", ""}, {"pattern", "spot:*:ETH"}}));
  EXPECT_EQ(
      pattern(s[7]),
      (Fields{{"kind", "pattern"}, {"scope", "namespace"}, {"ns", "marks"}, {"pattern", ""}}));
  EXPECT_EQ(pattern(s[8]),
            (Fields{{"kind", "pattern"}, {"scope", "all"}, {"ns", ""}, {"pattern", ""}}));
  for (std::size_t i = 5; i < 9; ++i)  // in the order they were applied
    EXPECT_LT(std::stoull(s[i - 1].f.at("version")), std::stoull(s[i].f.at("version")));
  // Many changes in one transaction: one entry, each position once.
  for (int i = 0; i < 300; ++i)
    w->upsert(
        must(w->make_update("moonwell", "dave", "T" + std::to_string(i), {{"debt_amount", "1"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  const auto more = read_stream(c);
  std::size_t listed = 0;
  for (std::size_t i = 9; i < more.size(); ++i) listed += more[i].f.size() - 1;
  EXPECT_EQ(listed, 300u);
  EXPECT_LE(more.size() - 9, 2u) << "300 changes synced at once: one or two transactions";
}

// Random churn with evictions (spills), erases and every kind of invalidation, several flushes
// in between: a consumer replaying the stream from its start ends with exactly Redis's keys and
// versions, and never sees one key's versions go backwards.
TEST(ChangeStream, ReplayingTheStreamGivesExactlyWhatRedisHolds) {
  RedisServer srv;
  ScratchSegment seg("cs_replay");
  auto w = Writer::open(stream_config(seg, srv, 64));
  const int invalidations = churn(*w, 7);
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  ASSERT_GT(invalidations, 100);
  auto c = srv.client();
  Replay replay;
  const auto entries = read_stream(c);
  for (const Entry& e : entries) replay.apply(e);
  EXPECT_EQ(replay.problem, "");
  const auto db = redis_versions(c);
  EXPECT_GT(db.size(), 20u);
  const auto want = as_replay_keys(db);
  std::vector<std::string> wrong;  // keys whose version differs, or that one side lacks
  for (const auto& [k, v] : want) {
    auto it = replay.keys.find(k);
    if (it == replay.keys.end() || it->second != v) wrong.push_back("redis has " + k);
  }
  for (const auto& [k, v] : replay.keys) {
    if (!want.contains(k)) wrong.push_back("only the replay has " + k);
  }
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " keys differ, the first: " << wrong.front();
  std::printf("stream: %zu entries, %zu keys in Redis, %d invalidations\n", entries.size(),
              db.size(), invalidations);
}

// The Python example of docs/redis-format.md (tests/redis/tail_changes.py, redis-py): a service
// tailing the stream from its start keeps a copy equal to what Redis holds, field for field.
TEST(ChangeStream, APythonServiceTailingTheStreamKeepsAnExactCopy) {
  RedisServer srv;
  ScratchSegment seg("cs_py");
  auto w = Writer::open(stream_config(seg, srv, 64));
  // The service tails while the writer works (it fetches each hash when its entry arrives, so
  // a position removed later is in its copy until the removal's entry says otherwise); it stops
  // once nothing arrived for 1.5 s.
  test::CliRun run{};
  std::thread tail([&] {
    run = test::run_cli("/usr/bin/python3 " + std::string(POSCACHE_SOURCE_DIR) +
                        "/tests/redis/tail_changes.py " + std::to_string(srv.port()) +
                        " poscache:v1 1500");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // python and redis-py loaded
  churn(*w, 11);
  w->upsert(must(w->make_update("moonwell", "late", "USDC",
                                {{"collateral_amount", "1234000000000000000001"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  tail.join();
  ASSERT_EQ(run.code, 0) << run.out;
  const std::string last = run.out.substr(run.out.rfind('\n', run.out.size() - 2) + 1);
  Db got;
  const nlohmann::json j = nlohmann::json::parse(last);
  for (const auto& [key, fields] : j.items()) {
    for (const auto& [name, value] : fields.items()) got[key][name] = value.get<std::string>();
  }
  auto c = srv.client();
  const Db want = read_positions(c);
  EXPECT_GT(want.size(), 20u);
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want);
  EXPECT_EQ(got.at("poscache:v1:moonwell:{late}:USDC").at("collateral_amount"),
            "1234000000000000000001");
}

// A stream entry Redis refuses (here: the key is not a stream) leaves its positions unsynced:
// written again, with their entry, once Redis takes it; the error is shown meanwhile. (Positions
// in Redis without their entry would never reach a follower.)
TEST(ChangeStream, AnEntryRedisRefusesIsWrittenAgainWithItsPositions) {
  RedisServer srv;
  ScratchSegment seg("cs_refused");
  auto w = Writer::open(stream_config(seg, srv, 64));
  auto c = srv.client();
  cmd(c, {"SET", "poscache:v1:@changes", "not a stream"});
  w->upsert(must(w->make_update("spot", "alice", "SOL", {{"qty", "1"}})));
  EXPECT_FALSE(w->sync_redis(std::chrono::milliseconds(500)));
  const MirrorStatus m = mirror_status(Reader::open(seg.name()));
  EXPECT_NE(m.last_error.find("WRONGTYPE"), std::string::npos) << m.last_error;
  cmd(c, {"DEL", "poscache:v1:@changes"});
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  const auto s = read_stream(c);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].f.count("spot:alice:SOL"), 1u);
}

// Entries older than change_stream_retention go (XADD MINID ~ trims whole nodes of up to 100
// entries: those entirely older than the retention).
TEST(ChangeStream, TheStreamKeepsItsRetentionAndCanBeTurnedOff) {
  RedisServer srv;
  {
    ScratchSegment seg("cs_trim");
    WriterConfig cfg = stream_config(seg, srv, 4096);
    cfg.redis->change_stream_retention = std::chrono::seconds(1);
    auto w = Writer::open(cfg);
    auto entries = [&](int n, int salt) {  // n transactions, one entry each
      for (int i = 0; i < n; ++i) {
        w->upsert(must(w->make_update("spot", "acct" + std::to_string(i % 50), "I",
                                      {{"qty", std::to_string(i + salt)}})));
        EXPECT_TRUE(w->sync_redis(std::chrono::seconds(10)));
      }
    };
    entries(150, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    entries(150, 1000);
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    entries(5, 2000);  // every earlier entry is older than the retention now
    auto c = srv.client();
    const long long len = cmd(c, {"XLEN", "poscache:v1:@changes"})->integer;
    EXPECT_GE(len, 5);
    EXPECT_LE(len, 105) << "entries older than the retention were kept (beyond one node)";
    EXPECT_EQ(cmd(c, {"XINFO", "STREAM", "poscache:v1:@changes"})->element[11]->integer, 305)
        << "entries-added";
  }
  {
    auto c = srv.client();
    cmd(c, {"FLUSHALL"});
  }
  {
    ScratchSegment seg("cs_off");
    WriterConfig cfg = stream_config(seg, srv, 64);
    cfg.redis->change_stream_retention = {};
    auto w = Writer::open(cfg);
    w->upsert(must(w->make_update("spot", "alice", "SOL", {{"qty", "1"}})));
    w->invalidate_all();
    ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    auto c = srv.client();
    EXPECT_EQ(cmd(c, {"EXISTS", "poscache:v1:@changes"})->integer, 0);
  }
  WriterConfig bad;
  bad.redis.emplace();
  bad.redis->change_stream_retention = std::chrono::milliseconds(10);
  const auto v = validate(*bad.redis);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().find("change_stream_retention 10 ms"), std::string::npos) << v.error();
}

}  // namespace
}  // namespace poscache::test
