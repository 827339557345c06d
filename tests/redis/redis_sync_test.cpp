// The Redis side of the writer against a real redis-server: format, coalescing, TTL, removals,
// warm start, the version guard, outages and writer restarts.
#include "writer/redis/redis_sync.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "poscache/decimal.hpp"
#include "poscache/mirror_status.hpp"
#include "poscache/reader.hpp"
#include "redis/redis_util.hpp"
#include "shm/clock.hpp"
#include "shm/layout.hpp"
#include "test_util.hpp"

namespace poscache::test {
namespace {

WriterConfig redis_config(const ScratchSegment& seg, const RedisServer& srv,
                          std::uint64_t capacity = 1024) {
  WriterConfig c = small_config(seg.name(), capacity);
  c.redis = srv.config();
  c.log = [](LogLevel, std::string_view) {};
  return c;
}

using test::must;

TEST(RedisSync, EveryFieldReachesRedisAsExactDecimalText) {
  RedisServer srv;
  ScratchSegment seg("rs_fmt");
  auto w = Writer::open(redis_config(seg, srv));
  w->upsert(must(w->make_update("spot", "wallet1", "SOL",
                                {{"qty", "-12345678901234567890.123456789012345678"},
                                 {"avg_price", "0.000000000000000001"},
                                 {"realized_pnl", "99999999999999999999.999999999999999999"}},
                                7)));
  w->upsert(must(w->make_update("moonwell", "0xAbC-1", "USDC",
                                {{"collateral_amount", "99999999999999999999999999999999999999"},
                                 {"debt_amount", "-1"},
                                 {"liquidation_threshold", "0.825000000000000000"},
                                 {"last_update_block", "19876543"},
                                 {"blocks_unhealthy", "0"}})));
  w->upsert(must(w->make_update("marks", "venue.a", "BTC/USD", {{"bid", "64123.5"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto c = srv.client();
  const Db got = read_positions(c);
  const Db want = segment_as_db(seg.name());
  ASSERT_EQ(want.size(), 3u);
  EXPECT_EQ(got, want);
  // Spot-check the text itself, to the last digit.
  const Hash& spot = got.at("poscache:v1:spot:{wallet1}:SOL");
  EXPECT_EQ(spot.at("qty"), "-12345678901234567890.123456789012345678");
  EXPECT_EQ(spot.at("avg_price"), "0.000000000000000001");
  EXPECT_EQ(spot.at("source_seq"), "7");
  EXPECT_EQ(got.at("poscache:v1:moonwell:{0xAbC-1}:USDC").at("collateral_amount"),
            "99999999999999999999999999999999999999");
  EXPECT_EQ(got.at("poscache:v1:moonwell:{0xAbC-1}:USDC").at("last_update_block"), "19876543");
  // The account sets list each account's positions; the schema is published.
  auto z = cmd(c, {"ZRANGE", "poscache:v1:@account:{wallet1}", "0", "-1", "WITHSCORES"});
  ASSERT_EQ(z->elements, 2u);
  EXPECT_EQ(std::string(z->element[0]->str), "spot:SOL");
  EXPECT_EQ(std::string(z->element[1]->str), "inf");
  auto schema = cmd(c, {"HGET", "poscache:v1:@schema", "moonwell"});
  ASSERT_EQ(schema->type, REDIS_REPLY_STRING);
  EXPECT_NE(std::string(schema->str)
                .find("\"name\":\"collateral_amount\",\"type\":\"decimal\",\"scale\":0"),
            std::string::npos);
  // The header shows the sync state to readers.
  const MirrorStatus st = mirror_status(Reader::open(seg.name()));
  EXPECT_EQ(st.state, "up");
  EXPECT_EQ(st.dirty, 0u);
  EXPECT_GE(st.synced_version, w->find(*w->make_key("marks", "venue.a", "BTC/USD"))->version);
}

// The @schema hash describes every namespace, every key of its JSON as docs/redis-format.md
// documents it; int64 and timestamp fields are integers in the position hashes.
TEST(RedisSync, TheSchemaHashDescribesEveryNamespaceAndTimestampsAreIntegerNanoseconds) {
  RedisServer srv;
  ScratchSegment seg("rs_schema");
  WriterConfig cfg = redis_config(seg, srv);
  NamespaceSpec broker{"alpaca",
                       {{"qty", FieldType::decimal, 9},
                        {"avg_price", FieldType::decimal, 6},
                        {"orders", FieldType::int64, 0},
                        {"as_of", FieldType::timestamp, 0}},
                       {},
                       {}};
  broker.stale_after = std::chrono::milliseconds(1500);
  broker.expire_after = std::chrono::hours(2);
  cfg.namespaces.push_back(broker);
  auto w = Writer::open(cfg);
  w->upsert(must(w->make_update("alpaca", "acct-7", "AAPL",
                                {{"qty", "10.5"},
                                 {"avg_price", "187.25"},
                                 {"orders", "-3"},
                                 {"as_of", "1767225600123456789"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto c = srv.client();
  auto all = cmd(c, {"HGETALL", "poscache:v1:@schema"});
  ASSERT_EQ(all->elements, 2 * cfg.namespaces.size());
  std::map<std::string, nlohmann::json> schema;
  for (std::size_t i = 0; i < all->elements; i += 2) {
    schema[all->element[i]->str] = nlohmann::json::parse(std::string(all->element[i + 1]->str));
  }
  for (const NamespaceSpec& n : cfg.namespaces) {
    ASSERT_EQ(schema.count(n.name), 1u) << n.name;
    const nlohmann::json& j = schema[n.name];
    std::set<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.insert(k);
    EXPECT_EQ(keys, (std::set<std::string>{"fields", "stale_after_ms", "expire_after_ms"}))
        << j.dump();
    EXPECT_EQ(j["stale_after_ms"],
              std::chrono::duration_cast<std::chrono::milliseconds>(n.stale_after).count())
        << n.name;
    EXPECT_EQ(j["expire_after_ms"],
              std::chrono::duration_cast<std::chrono::milliseconds>(n.expire_after).count())
        << n.name;
    ASSERT_EQ(j["fields"].size(), n.fields.size()) << n.name;
    for (std::size_t f = 0; f < n.fields.size(); ++f) {
      const nlohmann::json& jf = j["fields"][f];
      EXPECT_EQ(jf.size(), 3u) << jf.dump();
      EXPECT_EQ(jf["name"], n.fields[f].name);
      EXPECT_EQ(jf["type"], std::string(to_string(n.fields[f].type)));
      if (n.fields[f].type == FieldType::text)  // a text field has a length, not a scale
        EXPECT_EQ(jf["length"], n.fields[f].length);
      else
        EXPECT_EQ(jf["scale"], n.fields[f].scale);
    }
  }
  EXPECT_EQ(schema["alpaca"]["stale_after_ms"], 1500);
  EXPECT_EQ(schema["alpaca"]["expire_after_ms"], 7'200'000);
  const Hash h = read_positions(c).at("poscache:v1:alpaca:{acct-7}:AAPL");
  EXPECT_EQ(h.at("qty"), "10.500000000");
  EXPECT_EQ(h.at("avg_price"), "187.250000");
  EXPECT_EQ(h.at("orders"), "-3");
  EXPECT_EQ(h.at("as_of"), "1767225600123456789");
  const Position p = *w->find(*w->make_key("alpaca", "acct-7", "AAPL"));
  EXPECT_EQ(h.at("created_at"), std::to_string(p.created_at_ns));
  EXPECT_EQ(h.at("updated_at"), std::to_string(p.updated_at_ns));
  EXPECT_EQ(h.at("version"), std::to_string(p.version));
}

// close() writes what is not yet in Redis before it returns (within close_timeout): with a
// flush interval far longer than the test, nothing would reach Redis otherwise.
TEST(RedisSync, CloseWritesEveryUnsyncedChangeBeforeItReturns) {
  RedisServer srv;
  ScratchSegment seg("rs_close");
  WriterConfig cfg = redis_config(seg, srv);
  cfg.redis->flush_interval = std::chrono::seconds(60);
  cfg.redis->batch_size = 100'000;  // never a full batch: only close() can flush
  cfg.redis->close_timeout = std::chrono::seconds(30);
  auto w = Writer::open(cfg);
  for (int i = 0; i < 300; ++i) {
    w->upsert(must(w->make_update("spot", "a" + std::to_string(i % 30),
                                  "I" + std::to_string(i / 30), {{"qty", std::to_string(i)}})));
  }
  w->erase(*w->make_key("spot", "a0", "I0"));
  w->invalidate_account("a1");
  auto c = srv.client();
  EXPECT_LT(read_positions(c).size(), 289u)
      << "the sync wrote before close(): the test proves nothing";
  w->close();
  const Db got = read_positions(c);
  const Db want = segment_as_db(seg.name());
  EXPECT_EQ(want.size(), 289u);
  EXPECT_EQ(got, want);
}

// A client no one here wrote (redis-py, Debian's python3-redis) reads every position through the
// account index and gets every field, every decimal to the last digit.
TEST(RedisSync, APythonClientReadsTheDocumentedFormatBackExactly) {
  RedisServer srv;
  ScratchSegment seg("rs_py");
  auto w = Writer::open(redis_config(seg, srv));
  std::mt19937_64 rng(3);
  std::vector<std::string> accounts;
  for (int a = 0; a < 20; ++a) {
    accounts.push_back("acct-" + std::to_string(a));
    for (const char* ins : {"SOL", "ETH/USD", "0xA0b8.c"}) {
      const std::string big =
          std::to_string(rng() % 100'000'000'000ull) + std::to_string(rng() % 1'000'000'000ull);
      w->upsert(must(w->make_update("spot", accounts.back(), ins,
                                    {{"qty", "-" + big + ".000000000000000007"},
                                     {"avg_price", "0.1"},
                                     {"unrealized_pnl", big}},
                                    static_cast<std::uint64_t>(a + 1))));
      w->upsert(must(w->make_update("moonwell", accounts.back(), ins,
                                    {{"collateral_amount", big + "123456789012345678"},
                                     {"health_factor", "1.000000000000000001"},
                                     {"blocks_unhealthy", std::to_string(a)}})));
      w->upsert(must(w->make_update("marks", accounts.back(), ins, {{"bid", "123.456"}})));
    }
  }
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  std::string command = "/usr/bin/python3 " + std::string(POSCACHE_SOURCE_DIR) +
                        "/tests/redis/readback.py " + std::to_string(srv.port()) + " poscache:v1";
  for (const auto& a : accounts) command += " " + a;
  const test::CliRun rb = test::run_cli(command);
  ASSERT_EQ(rb.code, 0) << rb.out;
  const std::string& out = rb.out;
  const auto j = nlohmann::json::parse(out);
  Db got;
  for (const auto& [key, fields] : j.items()) {
    for (const auto& [name, value] : fields.items()) got[key][name] = value.get<std::string>();
  }
  const Db want = segment_as_db(seg.name());
  ASSERT_EQ(want.size(), 180u);
  EXPECT_EQ(got, want);
}

TEST(RedisSync, AnUnsetFieldIsRemovedFromTheHash) {
  RedisServer srv;
  ScratchSegment seg("rs_unset");
  auto w = Writer::open(redis_config(seg, srv));
  w->upsert(must(w->make_update("spot", "a", "X", {{"qty", "1"}, {"avg_price", "2"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  w->upsert(must(w->make_update("spot", "a", "X", {{"qty", "3"}}, 0, UpdateMode::replace)));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto c = srv.client();
  const Db got = read_positions(c);
  EXPECT_EQ(got.at("poscache:v1:spot:{a}:X").count("avg_price"), 0u);
  EXPECT_EQ(got.at("poscache:v1:spot:{a}:X").at("qty"), "3.000000000000000000");
  EXPECT_EQ(got, segment_as_db(seg.name()));
}

TEST(RedisSync, ManyUpdatesOfOnePositionBetweenFlushesAreWrittenOnce) {
  RedisServer srv;
  ScratchSegment seg("rs_coal");
  WriterConfig cfg = redis_config(seg, srv);
  cfg.redis->flush_interval = std::chrono::seconds(60);  // only sync_redis() hands off
  auto w = Writer::open(cfg);
  auto c = srv.client();
  cmd(c, {"CONFIG", "RESETSTAT"});
  for (int i = 1; i <= 1000; ++i) {
    w->upsert(must(w->make_update("spot", "hot", "SOL", {{"qty", std::to_string(i)}})));
    w->tick();
  }
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto info = cmd(c, {"INFO", "commandstats"});
  const std::string text(info->str, info->len);
  // One transaction, one HSET of the position (the lease's renewal is an HSET too, when due).
  const auto at = text.find("cmdstat_exec:calls=");
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_EQ(std::stoi(text.substr(at + 19)), 1) << text;
  EXPECT_NE(text.find("cmdstat_hset:calls=1,"), std::string::npos) << text;
  EXPECT_EQ(read_positions(c).at("poscache:v1:spot:{hot}:SOL").at("qty"),
            "1000.000000000000000000");
}

TEST(RedisSync, RedisExpiresAPositionWhenItsNamespaceDoes) {
  RedisServer srv;
  ScratchSegment seg("rs_ttl");
  auto w = Writer::open(redis_config(seg, srv));
  w->upsert(must(w->make_update("marks", "v", "ETH-USD", {{"bid", "3000.1"}})));
  w->upsert(must(w->make_update("spot", "v", "ETH", {{"qty", "1"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  const Position p = *w->find(*w->make_key("marks", "v", "ETH-USD"));
  const std::int64_t expire_ms =
      (p.updated_at_ns + preset_quote("marks").expire_after.count()) / 1'000'000;
  auto c = srv.client();
  auto t = cmd(c, {"PEXPIRETIME", "poscache:v1:marks:{v}:ETH-USD"});
  EXPECT_EQ(t->integer, expire_ms);
  EXPECT_EQ(cmd(c, {"PEXPIRETIME", "poscache:v1:spot:{v}:ETH"})->integer, -1);  // no expiry
  auto score = cmd(c, {"ZSCORE", "poscache:v1:@account:{v}", "marks:ETH-USD"});
  EXPECT_EQ(std::string(score->str), std::to_string(expire_ms));
  // A namespace with a short expire_after: gone from Redis on its own.
  ScratchSegment seg2("rs_ttl2");
  WriterConfig cfg = redis_config(seg2, srv);
  cfg.redis->prefix = "short";
  cfg.namespaces = {preset_quote("q")};
  cfg.namespaces[0].stale_after = std::chrono::milliseconds(100);
  cfg.namespaces[0].expire_after = std::chrono::seconds(2);
  auto w2 = Writer::open(cfg);
  w2->upsert(must(w2->make_update("q", "v", "X", {{"bid", "1"}})));
  ASSERT_TRUE(w2->sync_redis(std::chrono::seconds(10)));
  const std::int64_t deadline_ms =
      (w2->find(*w2->make_key("q", "v", "X"))->updated_at_ns + 2'000'000'000) / 1'000'000;
  // Compared with the deadline, not with a sleep: the sync may be late on a loaded machine.
  if (shm::realtime_ns() / 1'000'000 < deadline_ms - 100) {
    EXPECT_EQ(cmd(c, {"PEXPIRETIME", "short:q:{v}:X"})->integer, deadline_ms);
  }
  EXPECT_TRUE(test::eventually([&] {
    return cmd(c, {"EXISTS", "short:q:{v}:X"})->integer == 0;
  })) << "the hash outlived its namespace's expire_after";
  EXPECT_TRUE(test::eventually([&] {
    return cmd(c, {"EXISTS", "short:@account:{v}"})->integer == 0;
  }));
  EXPECT_GE(shm::realtime_ns() / 1'000'000, deadline_ms - 1) << "gone before its deadline";
}

TEST(RedisSync, EraseAndEveryInvalidationReachRedisIncludingPositionsOnlyRedisHolds) {
  RedisServer srv;
  ScratchSegment seg("rs_inv");
  auto w = Writer::open(redis_config(seg, srv, 16));  // small: the first positions get evicted
  const std::vector<std::string> accounts = {"alice", "bob", "carol", "dave"};
  for (const auto& a : accounts) {
    for (const char* i : {"SOL", "ETH", "BTC"}) {
      w->upsert(must(w->make_update("spot", a, i, {{"qty", "1"}})));
      w->upsert(must(w->make_update("moonwell", a, i, {{"debt_amount", "5"}})));
    }
  }
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto c = srv.client();
  ASSERT_EQ(read_positions(c).size(), 24u);  // 16 in the segment, 8 evicted but kept in Redis
  EXPECT_EQ(w->stats().live, 16u);

  // erase: one in the segment, one only in Redis (alice's first positions were evicted)
  ASSERT_FALSE(w->find(*w->make_key("spot", "alice", "SOL")));
  EXPECT_EQ(w->erase(*w->make_key("spot", "alice", "SOL")).status, ApplyStatus::not_found);
  EXPECT_EQ(w->erase(*w->make_key("moonwell", "dave", "BTC")).status, ApplyStatus::erased);
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  Db db = read_positions(c);
  EXPECT_EQ(db.count(key_of("spot", "alice", "SOL")), 0u);
  EXPECT_EQ(db.count(key_of("moonwell", "dave", "BTC")), 0u);
  EXPECT_EQ(db.size(), 22u);

  w->invalidate_account("alice");  // every namespace, in Redis only
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  db = read_positions(c);
  for (const auto& [k, h] : db) EXPECT_EQ(k.find("{alice}"), std::string::npos) << k;
  EXPECT_EQ(db.size(), 17u);
  EXPECT_EQ(cmd(c, {"EXISTS", "poscache:v1:@account:{alice}"})->integer, 0);

  w->invalidate_account("bob", *w->namespace_id("spot"));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  db = read_positions(c);
  EXPECT_EQ(db.count(key_of("spot", "bob", "ETH")), 0u);
  EXPECT_EQ(db.count(key_of("moonwell", "bob", "ETH")), 1u);

  w->invalidate_matching("moonwell:*:ETH");
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  db = read_positions(c);
  for (const auto& [k, h] : db)
    EXPECT_FALSE(k.find("moonwell") != std::string::npos && k.ends_with(":ETH")) << k;

  w->invalidate_namespace(*w->namespace_id("moonwell"));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  db = read_positions(c);
  for (const auto& [k, h] : db) EXPECT_EQ(k.find(":moonwell:"), std::string::npos) << k;
  EXPECT_EQ(db, segment_as_db(seg.name()));

  // A position written after an invalidation survives it even if Redis sees them together.
  w->invalidate_all();
  w->upsert(must(w->make_update("spot", "erin", "SOL", {{"qty", "9"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  db = read_positions(c);
  ASSERT_EQ(db.size(), 1u);
  EXPECT_EQ(db.begin()->first, key_of("spot", "erin", "SOL"));
  EXPECT_EQ(db, segment_as_db(seg.name()));
}

// Account removals that reach the sync thread together are written as one pipelined run
// (every account set read, then every guarded delete): each keeps its own namespace filter and
// its own version, so a position written after its removal survives it.
TEST(RedisSync, ARunOfAccountRemovalsKeepsEachOnesFilterAndVersion) {
  RedisServer srv;
  ScratchSegment seg("rs_accrun");
  WriterConfig cfg = redis_config(seg, srv, 4096);
  cfg.redis->flush_interval = std::chrono::seconds(60);  // everything below goes in one hand-off
  auto w = Writer::open(cfg);
  for (int a = 0; a < 40; ++a) {
    for (const char* i : {"SOL", "ETH"}) {
      w->upsert(must(w->make_update("spot", "a" + std::to_string(a), i, {{"qty", "1"}})));
      w->upsert(
          must(w->make_update("moonwell", "a" + std::to_string(a), i, {{"debt_amount", "5"}})));
    }
  }
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto c = srv.client();
  ASSERT_EQ(read_positions(c).size(), 160u);
  for (int a = 0; a < 30; ++a) {
    if (a % 3 == 0) {
      w->invalidate_account("a" + std::to_string(a), *w->namespace_id("spot"));  // spot only
    } else {
      w->invalidate_account("a" + std::to_string(a));
    }
  }
  w->invalidate_account("nobody");  // an account Redis never saw
  w->upsert(must(w->make_update("spot", "a1", "SOL", {{"qty", "7"}})));  // after its removal: stays
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  const Db got = read_positions(c);
  EXPECT_EQ(got, segment_as_db(seg.name()));
  // 10 untouched accounts (40), 10 spot-only removals (their 20 moonwell stay), a1:SOL again
  EXPECT_EQ(got.size(), 40u + 20u + 1u);
  EXPECT_EQ(got.at(key_of("spot", "a1", "SOL")).at("qty"), "7.000000000000000000");
  EXPECT_EQ(got.count(key_of("moonwell", "a3", "ETH")), 1u);
  EXPECT_EQ(got.count(key_of("spot", "a3", "ETH")), 0u);
  EXPECT_EQ(w->stats().journal_pending, 0u);
}

// sync = none (RedisConfig::unsynced_namespaces): a namespace of short-lived quotes stays in the
// segment only. Its upserts, erases, evictions and namespace or account-in-namespace
// invalidations never reach Redis or its journal; the other namespaces are mirrored as always;
// a warm start leaves its positions in Redis (from an earlier configuration) unloaded.
TEST(RedisSync, AnUnsyncedNamespaceStaysInTheSegmentOnly) {
  RedisServer srv;
  ScratchSegment seg("rs_unsynced");
  WriterConfig cfg = redis_config(seg, srv, 16);
  cfg.redis->unsynced_namespaces = {"marks"};
  auto c = srv.client();
  {
    auto w = Writer::open(cfg);
    for (int i = 0; i < 24; ++i) {  // 24 marks in a table of 16: evictions of unsynced marks
      w->upsert(must(w->make_update("marks", "m" + std::to_string(i), "SOL", {{"bid", "1"}})));
    }
    w->upsert(must(w->make_update("spot", "w1", "SOL", {{"qty", "1"}})));
    w->erase(*w->make_key("marks", "m23", "SOL"));
    w->invalidate_account("m22", *w->namespace_id("marks"));
    w->invalidate_namespace(*w->namespace_id("marks"));
    w->upsert(must(w->make_update("marks", "m1", "SOL", {{"bid", "2"}})));
    EXPECT_EQ(w->stats().journal_pending, 0u);  // nothing of marks was journaled for Redis
    ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    const Db got = read_positions(c);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got.count(key_of("spot", "w1", "SOL")), 1u);
    EXPECT_EQ(Reader::open(seg.name()).stats().namespace_live[2], 1u);  // m1 in the segment
    // A hash of marks an earlier configuration wrote (or another host): not loaded below.
    cmd(c, {"HSET", "poscache:v1:marks:{old}:SOL", "bid", "5.000000000000000000", "version", "3",
            "source_seq", "0", "created_at", "1", "updated_at", "1"});
    w->close();
  }
  seg.cleanup();
  test::LogLines log;
  cfg.log = log.sink();
  auto w = Writer::open(cfg);
  EXPECT_EQ(w->stats().warm_loaded, 1u);  // spot's w1
  EXPECT_EQ(w->stats().warm_skipped, 1u);
  EXPECT_TRUE(log.any_of([](const std::string& l) {
    return l.find("namespace 'marks' is not synced (sync = none)") != std::string::npos;
  })) << log.joined();
  Position p;
  EXPECT_EQ(Reader::open(seg.name()).get("marks", "old", "SOL", p), ReadStatus::not_found);
  // A name that is not a namespace is refused, naming it.
  WriterConfig bad = cfg;
  bad.redis->unsynced_namespaces = {"quotes"};
  try {
    Writer::open(bad);
    ADD_FAILURE() << "opened";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("unsynced namespace 'quotes' is not a configured namespace"),
        std::string::npos)
        << e.what();
  }
}

// The per-key scripts (RedisGuard::scripts, for a Redis Cluster): a version written by anyone
// else that is newer than this writer's is never overwritten nor removed. (The fence's answer
// to another writer is the lease: RedisLease.*.)
TEST(RedisSync, WithScriptsAnOlderVersionNeverOverwritesANewerOne) {
  RedisServer srv;
  ScratchSegment seg("rs_guard");
  WriterConfig cfg = redis_config(seg, srv);
  cfg.redis->guard = RedisGuard::scripts;
  auto w = Writer::open(cfg);
  auto c = srv.client();
  // Another host wrote a newer version of this position than anything this writer will hand out.
  cmd(c, {"HSET", "poscache:v1:spot:{w}:SOL", "qty", "42.000000000000000000", "version",
          "18000000000000000000", "source_seq", "0", "created_at", "1", "updated_at", "1"});
  w->upsert(must(w->make_update("spot", "w", "SOL", {{"qty", "1"}})));
  w->erase(*w->make_key("spot", "w", "BTC"));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(read_positions(c).at("poscache:v1:spot:{w}:SOL").at("qty"), "42.000000000000000000");
  w->erase(*w->make_key("spot", "w", "SOL"));  // an older removal does not remove it either
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(read_positions(c).count("poscache:v1:spot:{w}:SOL"), 1u);
  // The version comparison is on the decimal text: 10 digits beat 9 digits.
  cmd(c, {"HSET", "poscache:v1:spot:{w}:ETH", "qty", "1", "version", "999999999"});
  w->upsert(must(w->make_update("spot", "w", "ETH", {{"qty", "2"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(read_positions(c).at("poscache:v1:spot:{w}:ETH").at("qty"), "2.000000000000000000");
}

TEST(RedisSync, WarmStartRestoresEveryPositionExactly) {
  RedisServer srv;
  ScratchSegment seg("rs_warm");
  Db before;
  {
    auto w = Writer::open(redis_config(seg, srv, 4096));
    std::mt19937_64 rng(7);
    for (int i = 0; i < 2000; ++i) {
      const std::string a = "acct" + std::to_string(rng() % 300),
                        ins = "I" + std::to_string(rng() % 50);
      const std::string v =
          std::to_string(static_cast<std::int64_t>(rng() % 2'000'000'000) - 1'000'000'000) + "." +
          std::to_string(rng() % 1'000'000'000'000'000'000ull);
      switch (i % 3) {
        case 0:
          w->upsert(must(w->make_update("spot", a, ins, {{"qty", v}, {"realized_pnl", v}}, i + 1)));
          break;
        case 1:
          // With text: an asset address of 42 bytes (three value slots), and UTF-8.
          w->upsert(must(w->make_update(
              "moonwell", a, ins,
              {{"collateral_amount", std::to_string(rng())},
               {"last_update_block", std::to_string(i)},
               {"collateral_asset", "0x" + std::to_string(rng()) + std::to_string(rng())},
               {"debt_asset", "USDC€" + std::to_string(i)}})));
          break;
        default:
          w->upsert(must(w->make_update("marks", a, ins, {{"bid", v}, {"ask", v}})));
          break;
      }
    }
    ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    before = segment_as_db(seg.name());
    w->close();
  }
  seg.cleanup();  // the host lost its shared memory (reboot): a fresh segment
  auto w = Writer::open(redis_config(seg, srv, 4096));
  EXPECT_EQ(w->stats().warm_loaded, before.size());
  EXPECT_EQ(w->stats().warm_beyond_capacity, 0u);
  EXPECT_EQ(segment_as_db(seg.name()), before);
  // New changes out-version the loaded ones.
  const std::uint64_t old_version = std::stoull(before.begin()->second.at("version"));
  EXPECT_GT(w->stats().next_version, old_version);

  w->close();  // one writer per prefix (the lease); close() hands it on at once
  // A smaller segment keeps the most recently updated and reports the rest.
  ScratchSegment small("rs_warm_small");
  WriterConfig cfg = redis_config(small, srv, 100);
  auto w2 = Writer::open(cfg);
  EXPECT_EQ(w2->stats().live, 100u);
  EXPECT_EQ(w2->stats().warm_loaded, 100u);
  EXPECT_EQ(w2->stats().warm_beyond_capacity, before.size() - 100);
  std::vector<std::int64_t> updated;
  for (const auto& [k, h] : before) updated.push_back(std::stoll(h.at("updated_at")));
  std::sort(updated.rbegin(), updated.rend());
  const std::int64_t cutoff = updated[99];
  for (const auto& [k, h] : segment_as_db(small.name())) {
    EXPECT_GE(std::stoll(h.at("updated_at")), cutoff) << k;
    EXPECT_EQ(h, before.at(k));
  }
  w2->close();
  // Cold start: empty, and Redis untouched.
  ScratchSegment cold("rs_cold");
  WriterConfig cc = redis_config(cold, srv, 100);
  cc.redis->warm_start = false;
  auto w3 = Writer::open(cc);
  EXPECT_EQ(w3->stats().live, 0u);
  auto c = srv.client();
  EXPECT_EQ(read_positions(c).size(), before.size());
}

// Exactly once for upserts that carry the producer's sequence (issue 25, part 3, the part that
// rides on the positions themselves): source_seq travels with each position to Redis and back,
// so a writer warm-started on a fresh segment still refuses a resend as stale, and the next
// sequence applies.
TEST(RedisSync, UpsertsCarryingASeqAreStillStaleAfterAWarmStartOnAFreshSegment) {
  RedisServer srv;
  ScratchSegment seg("rs_seq_warm");
  {
    auto w = Writer::open(redis_config(seg, srv, 256));
    for (std::uint64_t seq = 1; seq <= 10; ++seq)
      w->upsert(must(w->make_update("spot", "gw", "SOL", {{"qty", std::to_string(seq)}}, seq)));
    ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    w->close();
  }
  seg.cleanup();  // the host lost its shared memory: the next writer loads Redis
  auto w = Writer::open(redis_config(seg, srv, 256));
  ASSERT_EQ(w->stats().warm_loaded, 1u);
  for (std::uint64_t seq = 1; seq <= 10; ++seq) {  // the producer resends what it sent
    const ApplyResult r =
        w->upsert(must(w->make_update("spot", "gw", "SOL", {{"qty", "999"}}, seq)));
    EXPECT_EQ(r.status, ApplyStatus::stale_source) << seq;
  }
  EXPECT_EQ(w->upsert(must(w->make_update("spot", "gw", "SOL", {{"qty", "11"}}, 11))).status,
            ApplyStatus::updated);
  auto p = w->find(0, "gw", "SOL");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->source_seq, 11u);
  EXPECT_EQ(format_decimal(p->values[0], 18), "11.000000000000000000");
}

// Bad input from Redis (another writer's bug, a hand edit): each bad hash is skipped, counted
// and logged naming the key and the field; everything else loads; nothing crashes.
TEST(RedisSync, WarmStartSkipsMalformedPositionsNamingKeyAndField) {
  RedisServer srv;
  auto c = srv.client();
  auto good = [&](const std::string& account) {
    cmd(c,
        {"HSET", key_of("spot", account, "SOL"), "qty", "1.500000000000000000", "version", "7",
         "source_seq", "0", "created_at", "1", "updated_at", std::to_string(shm::realtime_ns())});
  };
  good("ok1");
  good("ok2");
  const std::string now = std::to_string(shm::realtime_ns());
  cmd(c, {"HSET", key_of("spot", "bad1", "SOL"), "qty", "1.2.3", "version", "7", "created_at", "1",
          "updated_at", now});
  cmd(c, {"HSET", key_of("spot", "bad2", "SOL"), "colour", "red", "version", "7", "created_at", "1",
          "updated_at", now});
  cmd(c, {"HSET", key_of("spot", "bad3", "SOL"), "qty", "1", "created_at", "1", "updated_at", now});
  cmd(c, {"HSET", key_of("spot", "bad4", "SOL"), "qty", "123456789012345678901", "version", "7",
          "created_at", "1", "updated_at", now});
  cmd(c, {"HSET", key_of("futures", "bad5", "BTC"), "qty", "1", "version", "7", "created_at", "1",
          "updated_at", now});
  cmd(c, {"SET", "poscache:v1:spot:{bad6}:SOL", "not a hash"});  // another type under the prefix
  ScratchSegment seg("rs_warm_bad");
  WriterConfig cfg = redis_config(seg, srv);
  test::LogLines lines;
  cfg.log = lines.sink();
  auto w = Writer::open(cfg);
  EXPECT_EQ(w->stats().warm_loaded, 2u);
  EXPECT_EQ(w->stats().warm_skipped, 5u);
  EXPECT_EQ(w->stats().live, 2u);
  std::string all;
  for (const auto& l : lines.lines()) all += l + "\n";
  EXPECT_NE(all.find("spot:{bad1}:SOL: field 'qty'"), std::string::npos) << all;
  EXPECT_NE(all.find("spot:{bad2}:SOL: field 'colour' is not in the schema"), std::string::npos)
      << all;
  EXPECT_NE(all.find("spot:{bad3}:SOL: missing version"), std::string::npos) << all;
  EXPECT_NE(all.find("spot:{bad4}:SOL: field 'qty'"), std::string::npos) << all;
  EXPECT_NE(all.find("namespace 'futures' is not configured here"), std::string::npos) << all;
  // The bad hashes are left as they were: the writer only reports them.
  EXPECT_EQ(cmd(c, {"HGET", key_of("spot", "bad1", "SOL"), "qty"})->str, std::string("1.2.3"));
}

// A model of what Redis must hold: the last state of every key the test touched.
struct Model {
  Db db;
  void put(const std::string& key, const Hash& h) { db[key] = h; }
  void erase(const std::string& key) { db.erase(key); }
};

// Redis that lost what it was given, mid-churn: FLUSHALL, or a restart without persistence.
// The writer notices (the lease's epoch counter is gone), refills Redis from the segment in the
// background while the churn goes on, and afterwards Redis holds exactly the segment.
void churn_through_a_loss(const std::function<void(RedisServer&)>& lose) {
  RedisServer srv;  // no persistence: a restart comes back empty
  ScratchSegment seg("rs_loss");
  WriterConfig cfg = redis_config(seg, srv, 4096);
  cfg.redis->reconnect_min = std::chrono::milliseconds(10);
  cfg.redis->reconnect_max = std::chrono::milliseconds(50);
  auto w = Writer::open(cfg);
  std::mt19937_64 rng(5);
  auto churn = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const std::string a = "a" + std::to_string(rng() % 100),
                        ins = "I" + std::to_string(rng() % 30);
      w->upsert(must(w->make_update(
          "spot", a, ins, {{"qty", std::to_string(i) + "." + std::to_string(rng() % 1000)}})));
      if (i % 64 == 0) {
        w->tick();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  };
  churn(6000);  // 3000 positions, most of them written once and left alone
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  const std::uint64_t live_at_loss = w->stats().live;  // all of them the refill must write
  lose(srv);
  churn(2000);  // a few hundred of them change after the loss; the others only the refill brings
  ASSERT_TRUE(test::eventually(
      [&] {
        w->tick();
        const MirrorStatus st = mirror_status(Reader::open(seg.name()));
        return st.data_losses == 1 && !st.refilling && w->sync_redis(std::chrono::seconds(1));
      },
      std::chrono::seconds(30)));
  const MirrorStatus st = mirror_status(Reader::open(seg.name()));
  // (Positions inserted after the loss into slots the refill had passed go as any insert.)
  EXPECT_GE(st.repushed, live_at_loss);
  EXPECT_EQ(st.state, "up");
  auto c = srv.client();
  const Db got = read_positions(c);
  const Db want = segment_as_db(seg.name());
  EXPECT_GT(want.size(), 2000u);
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want);
  int shown = 0;
  for (const auto& [k, h] : want) {
    if (got.count(k) == 0 && shown++ < 5) ADD_FAILURE() << k << " is missing in Redis";
  }
  // Every position is in its account's set again.
  for (const auto& [k, h] : want) {
    const std::size_t open = k.find(":{"), close = k.find("}:");
    const std::string account = k.substr(open + 2, close - open - 2);
    const std::string member = "spot:" + k.substr(close + 2);
    EXPECT_EQ(cmd(c, {"ZSCORE", "poscache:v1:@account:{" + account + "}", member})->type,
              REDIS_REPLY_STRING)
        << k;
  }
}

TEST(RedisSync, AFlushallMidChurnIsNoticedAndRedisRefilledFromTheSegment) {
  churn_through_a_loss([](RedisServer& srv) {
    auto c = srv.client();
    cmd(c, {"FLUSHALL"});
  });
}

TEST(RedisSync, ARedisRestartedWithoutPersistenceIsRefilledFromTheSegment) {
  churn_through_a_loss([](RedisServer& srv) {
    srv.stop(SIGKILL);
    srv.start();
  });
}

TEST(RedisSync, AnEvictingMaxmemoryPolicyIsAWarningInHealth) {
  RedisServer srv({"--maxmemory-policy", "allkeys-lru"});
  ScratchSegment seg("rs_evicts");
  auto w = Writer::open(redis_config(seg, srv));
  EXPECT_TRUE(mirror_status(Reader::open(seg.name())).evicting_policy);
  auto c = srv.client();
  cmd(c, {"CONFIG", "SET", "maxmemory-policy", "noeviction"});
  cmd(c, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});  // the writer reconnects
  w->upsert(must(w->make_update("spot", "a", "X", {{"qty", "1"}})));
  EXPECT_TRUE(test::eventually([&] {
    w->tick();
    return !mirror_status(Reader::open(seg.name())).evicting_policy;
  }));
}

TEST(RedisSync, RedisKilledMidChurnAndRestartedEndsWithEveryChange) {
  RedisServer srv({"--appendonly", "yes", "--appendfsync", "always"});
  ScratchSegment seg("rs_outage");
  WriterConfig cfg = redis_config(seg, srv, 200);  // small: churn evicts positions mid-outage
  auto w = Writer::open(cfg);
  std::mt19937_64 rng(11);
  Model model;
  auto churn = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const std::string a = "a" + std::to_string(rng() % 40),
                        ins = "I" + std::to_string(rng() % 10);
      if (rng() % 50 == 0) {
        w->erase(*w->make_key("spot", a, ins));
        model.erase(key_of("spot", a, ins));
      } else {
        w->upsert(must(w->make_update(
            "spot", a, ins, {{"qty", std::to_string(i) + "." + std::to_string(rng() % 1000)}})));
        const Position p = *w->find(*w->make_key("spot", a, ins));
        model.put(key_of("spot", a, ins), expected_hash(preset_trading("spot"), p));
      }
      if (i % 64 == 0) w->tick();
    }
  };
  churn(3000);
  srv.stop(SIGKILL);
  churn(3000);  // Redis is down: evictions of unsynced positions, erases, all kept
  w->invalidate_account("a7");
  for (auto it = model.db.begin(); it != model.db.end();) {
    if (it->first.find("{a7}") != std::string::npos)
      it = model.db.erase(it);
    else
      ++it;
  }
  churn(1000);
  w->tick();
  EXPECT_TRUE(
      test::eventually([&] { return mirror_status(Reader::open(seg.name())).state == "down"; }));
  {
    const MirrorStatus st = mirror_status(Reader::open(seg.name()));
    EXPECT_EQ(st.state, "down");
    EXPECT_NE(st.last_error.find("onnect"), std::string::npos) << st.last_error;
    EXPECT_GT(st.dirty, 0u);
    EXPECT_GT(st.oldest_unsynced_age_ns, 0);
  }
  EXPECT_FALSE(w->sync_redis(std::chrono::milliseconds(100)));
  EXPECT_GT(w->stats().evictions, 0u);
  srv.start();
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(20)));
  auto c = srv.client();
  const Db got = read_positions(c);
  EXPECT_EQ(got.size(), model.db.size());
  EXPECT_TRUE(got == model.db);
  // And the segment's positions are exactly Redis's for the keys it holds.
  for (const auto& [k, h] : segment_as_db(seg.name())) EXPECT_EQ(got.at(k), h) << k;
  const MirrorStatus st = mirror_status(Reader::open(seg.name()));
  EXPECT_EQ(st.state, "up");
  EXPECT_EQ(st.dirty, 0u);
  EXPECT_EQ(st.oldest_unsynced_age_ns, 0);
}

TEST(RedisSync, AWriterKilledWithUnsyncedChangesLosesNoneOnRestart) {
  RedisServer srv;
  ScratchSegment seg("rs_kill");
  WriterConfig cfg = redis_config(seg, srv, 512);
  const std::string out = in_child([&] {
    WriterConfig c = cfg;
    c.redis->flush_interval = std::chrono::seconds(60);  // nothing handed off on its own
    auto w = Writer::open(c);
    for (int i = 0; i < 200; ++i)
      w->upsert(must(w->make_update("spot", "k" + std::to_string(i), "SOL", {{"qty", "1"}})));
    if (!w->sync_redis(std::chrono::seconds(10))) return std::string("first sync failed");
    for (int i = 0; i < 300; ++i) {
      w->upsert(must(w->make_update("spot", "k" + std::to_string(i), "SOL",
                                    {{"qty", std::to_string(i + 2)}})));
    }
    ::kill(::getpid(), SIGKILL);  // the 300 changes were never handed to the sync thread
    return std::string("not killed");
  });
  EXPECT_EQ(out, "");
  auto c = srv.client();
  ASSERT_EQ(read_positions(c).size(), 200u);
  auto w = Writer::open(cfg);  // re-attaches, finds the unsynced slots
  EXPECT_TRUE(w->stats().reattached);
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  const Db got = read_positions(c);
  EXPECT_EQ(got.size(), 300u);
  EXPECT_EQ(got, segment_as_db(seg.name()));
  EXPECT_EQ(got.at(key_of("spot", "k299", "SOL")).at("qty"), "301.000000000000000000");
}

// Removals leave nothing in the slots: they survive a kill -9 through the segment's journal.
// The child makes every kind (spills of evicted positions with unsynced updates, an erase, an
// account and a glob invalidation), none handed to its sync thread, and is killed.
TEST(RedisSync, RemovalsAKilledWriterHadNotWrittenReachRedisFromTheJournal) {
  RedisServer srv;
  ScratchSegment seg("rs_journal");
  WriterConfig cfg = redis_config(seg, srv, 64);
  auto key = [](int i) {
    return std::make_pair("acc" + std::to_string(i % 8), "I" + std::to_string(i));
  };
  const std::string out = in_child([&] {
    WriterConfig c = cfg;
    c.redis->flush_interval = std::chrono::seconds(60);  // nothing handed off on its own
    auto w = Writer::open(c);
    for (int i = 0; i < 64; ++i)
      w->upsert(must(w->make_update("spot", key(i).first, key(i).second, {{"qty", "1"}})));
    if (!w->sync_redis(std::chrono::seconds(10))) return std::string("first sync failed");
    for (int i = 0; i < 64; ++i)
      w->upsert(must(w->make_update("spot", key(i).first, key(i).second, {{"qty", "2"}})));
    // Ten new positions evict I0..I9, whose qty 2 Redis has never seen: spills.
    for (int j = 0; j < 10; ++j)
      w->upsert(must(w->make_update("spot", "new", "N" + std::to_string(j), {{"qty", "3"}})));
    if (w->stats().evictions != 10) return std::string("expected 10 evictions");
    w->erase(*w->make_key("spot", key(20).first, key(20).second));
    w->invalidate_account("acc3");
    w->invalidate_matching("spot:acc5:*");
    if (w->stats().journal_pending != 10 + 1 + 2)
      return "journal holds " + std::to_string(w->stats().journal_pending);
    ::kill(::getpid(), SIGKILL);
    return std::string("not killed");
  });
  ASSERT_EQ(out, "");
  auto c = srv.client();
  ASSERT_EQ(read_positions(c).size(), 64u);  // the first sync only
  test::LogLines logged;
  cfg.log = logged.sink();
  auto w = Writer::open(cfg);
  EXPECT_TRUE(w->stats().reattached);
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(w->stats().journal_pending, 0u);
  EXPECT_TRUE(logged.any_of([](const std::string& m) {
    return m.find("13 removals a previous writer left") != std::string::npos;
  })) << ::testing::PrintToString(logged.lines());
  const Db got = read_positions(c);
  // 64 + 10 new - I20 (erased) - 8 of acc3 - 8 of acc5, the evicted ones included.
  EXPECT_EQ(got.size(), 57u);
  for (int i = 0; i < 64; ++i) {
    const std::string k = key_of("spot", key(i).first, key(i).second);
    const bool removed = i == 20 || i % 8 == 3 || i % 8 == 5;
    ASSERT_EQ(got.count(k), removed ? 0u : 1u) << k;
    if (!removed) {
      EXPECT_EQ(got.at(k).at("qty"), "2.000000000000000000") << k;  // evicted ones too
    }
  }
  for (const auto& [k, h] : segment_as_db(seg.name())) EXPECT_EQ(got.at(k), h) << k;
}

// A writer killed right after invalidate_all leaves an empty segment, which the next writer
// warm-starts from Redis: it must write the journaled removal first, or the load would bring
// every position back.
TEST(RedisSync, AWarmStartWritesTheJournaledRemovalsFirst) {
  RedisServer srv;
  ScratchSegment seg("rs_jwarm");
  WriterConfig cfg = redis_config(seg, srv, 64);
  const std::string out = in_child([&] {
    WriterConfig c = cfg;
    c.redis->flush_interval = std::chrono::seconds(60);
    auto w = Writer::open(c);
    for (int i = 0; i < 20; ++i)
      w->upsert(must(w->make_update("spot", "a" + std::to_string(i), "SOL", {{"qty", "1"}})));
    if (!w->sync_redis(std::chrono::seconds(10))) return std::string("first sync failed");
    w->invalidate_all();
    ::kill(::getpid(), SIGKILL);
    return std::string("not killed");
  });
  ASSERT_EQ(out, "");
  auto c = srv.client();
  ASSERT_EQ(read_positions(c).size(), 20u);
  auto w = Writer::open(cfg);  // re-attaches an empty segment: a warm start
  EXPECT_EQ(w->stats().live, 0u);
  EXPECT_EQ(w->stats().warm_loaded, 0u);
  EXPECT_EQ(read_positions(c).size(), 0u);
}

// Writers killed with -9 at random moments of a churn of upserts, erases and invalidations,
// each successor re-attaching where the last one died; Redis up throughout, the default flush
// interval. No eviction (the table holds every key), so afterwards Redis must hold exactly the
// segment: a removal lost in a kill leaves a key behind in Redis, a lost update a stale field.
TEST(RedisSync, WritersKilledMidChurnLeaveRedisEqualToTheSegment) {
  RedisServer srv;
  ScratchSegment seg("rs_killloop");
  WriterConfig cfg = redis_config(seg, srv, 4096);
  std::mt19937_64 rng(29);
  int rounds = 0;
  std::uint64_t pending_seen = 0;  // removals a kill left in the journal, over all rounds
  for (; rounds < 8; ++rounds) {
    const std::uint64_t seed = rng();
    const pid_t child = ::fork();
    if (child == 0) {
      try {
        auto w = Writer::open(cfg);
        std::mt19937_64 r(seed);
        for (std::uint64_t i = 0;; ++i) {
          const std::string a = "a" + std::to_string(r() % 40),
                            ins = "I" + std::to_string(r() % 12);
          const std::uint64_t op = r() % 100;
          if (op < 80) {
            w->upsert(must(w->make_update(
                "spot", a, ins, {{"qty", std::to_string(i) + "." + std::to_string(r() % 1000)}})));
          } else if (op < 97) {
            w->erase(*w->make_key("spot", a, ins));
          } else if (op < 99) {
            w->invalidate_account(a);
          } else {
            w->invalidate_matching("spot:a" + std::to_string(r() % 4) + "*:I1*");
          }
          if (i % 16 == 0) {
            w->tick();
            // ~50 k changes/s: removals within what the sync writes, so the journal never
            // fills (a full journal is the other test's subject) and every removal is in it.
            std::this_thread::sleep_for(std::chrono::microseconds(300));
          }
        }
      } catch (...) {
      }
      ::_exit(1);
    }
    // A random moment of the churn, but one with removals waiting in the journal (what the
    // test is about) and at least 400 more changes than the round before (a slow child, under
    // ThreadSanitizer, made 40-60 changes in all in 8 rounds of ~100 ms); polled, not hoped for.
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + rng() % 70));
    const std::uint64_t changes_due = 400 * static_cast<std::uint64_t>(rounds + 1);
    test::eventually(
        [&] {
          try {
            Reader r = Reader::open(seg.name());
            const SegmentStats st = r.stats();
            return mirror_status(r).journal_pending > 0 && st.inserts + st.updates >= changes_due;
          } catch (const Error&) {
            return false;  // not created yet
          }
        },
        std::chrono::seconds(30));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the churning writer stopped on its own in round " << rounds << " (status " << status
        << ")";
    // The journal itself, as the kill left it (the header's copy may trail it by a sync round).
    const test::RwMapping m(seg.name());
    const shm::Geometry g = shm::geometry_for(cfg.capacity);
    const auto& jh = *reinterpret_cast<const shm::JournalHeader*>(
        static_cast<const std::byte*>(m.base()) + g.journal_offset);
    ASSERT_EQ(shm::load_acquire(&jh.overflows), 0u) << "round " << rounds;
    pending_seen += shm::journal_pending(jh);
  }
  auto w = Writer::open(cfg);
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(20)));
  EXPECT_EQ(w->stats().journal_pending, 0u);
  EXPECT_GT(pending_seen, 0u) << "no kill caught a removal in the journal: the test proved nothing";
  EXPECT_GT(w->stats().erases, 0u);
  EXPECT_GT(w->stats().invalidations, 0u);
  auto c = srv.client();
  const Db got = read_positions(c);
  const Db want = segment_as_db(seg.name());
  EXPECT_GT(want.size(), 100u);
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want);
  for (const auto& [k, h] : want) {
    if (got.count(k) == 0) {
      ADD_FAILURE() << k << " is missing in Redis";
    } else if (got.at(k) != h) {
      ADD_FAILURE() << k << " differs";
    }
  }
  for (const auto& [k, h] : got) {
    if (want.count(k) == 0)
      ADD_FAILURE() << k << " is in Redis but not in the segment (a lost removal)";
  }
}

// Maps a closed segment's journal read-write behind the writer's back, to hand-build entries.
void edit_journal(
    const std::string& segment, std::uint64_t capacity,
    const std::function<void(shm::JournalHeader&, shm::JournalEntry*, std::uint64_t)>& edit) {
  const test::RwMapping m(segment);
  auto* base = reinterpret_cast<char*>(m.base());
  const shm::Geometry g = shm::geometry_for(capacity);
  auto* jh = reinterpret_cast<shm::JournalHeader*>(base + g.journal_offset);
  auto* entries =
      reinterpret_cast<shm::JournalEntry*>(base + g.journal_offset + sizeof(shm::JournalHeader));
  edit(*jh, entries, g.journal_entries);
}

// A hand-built journaled event: an erase of spot:account:instrument, or a pattern removal.
detail::RemovalEvent erase_event(const std::string& account, const std::string& instrument,
                                 std::uint64_t version) {
  return detail::erase_of(KeyRef{0, account, instrument}, version);
}
detail::RemovalEvent pattern_event(detail::RemovalEvent::Kind kind, std::uint64_t version,
                                   std::string text = {},
                                   std::optional<std::uint16_t> ns = std::nullopt) {
  return detail::pattern_of(kind, version, ns, text);
}

// A removal is journaled before it is applied. Hand-built: the entry of an erase and of an
// account invalidation are in the journal, the positions still in the slots, as a kill between
// the two steps leaves them. The next writer finishes both, in the segment and in Redis.
TEST(RedisSync, ARemovalCutShortByAKillIsFinishedOnReattach) {
  RedisServer srv;
  ScratchSegment seg("rs_cut");
  WriterConfig cfg = redis_config(seg, srv, 64);
  std::uint64_t version = 0;
  {
    auto w = Writer::open(cfg);
    for (int i = 0; i < 16; ++i) {
      w->upsert(must(w->make_update("spot", "acc" + std::to_string(i % 4), "I" + std::to_string(i),
                                    {{"qty", "1"}})));
    }
    ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    version = w->upsert(must(w->make_update("spot", "late", "X", {{"qty", "1"}}))).version;
    ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    w->close();
  }
  edit_journal(
      seg.name(), 64, [&](shm::JournalHeader& jh, shm::JournalEntry* entries, std::uint64_t n) {
        const std::uint64_t head = shm::load_acquire(&jh.head);
        EXPECT_EQ(shm::load_acquire(&jh.tail), head);
        // version - 1: older than "late", newer than the first 16
        detail::to_entry(erase_event("acc1", "I5", version - 1), entries[head % n]);
        detail::to_entry(pattern_event(detail::RemovalEvent::Kind::account, version - 1, "acc2"),
                         entries[(head + 1) % n]);
        // older than the position it names: must leave it alone
        detail::to_entry(erase_event("late", "X", version - 1), entries[(head + 2) % n]);
        shm::store_release(&jh.head, head + 3);
      });
  auto w = Writer::open(cfg);
  EXPECT_EQ(w->stats().repairs, 5u);  // acc1:I5 and the four of acc2
  EXPECT_FALSE(w->find(*w->make_key("spot", "acc1", "I5")));
  EXPECT_FALSE(w->find(*w->make_key("spot", "acc2", "I2")));
  EXPECT_TRUE(w->find(*w->make_key("spot", "acc1", "I1")));
  EXPECT_TRUE(w->find(*w->make_key("spot", "late", "X")));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(w->stats().journal_pending, 0u);
  auto c = srv.client();
  const Db got = read_positions(c);
  EXPECT_EQ(got.size(), 12u);  // 16 + late - 1 - 4
  EXPECT_EQ(got, segment_as_db(seg.name()));
}

// Corrupt journal memory is skipped and reported, never replayed: an unknown kind must not turn
// into "remove everything" in Redis. A valid entry behind the corrupt ones still applies.
TEST(RedisSync, CorruptJournalEntriesAreSkippedAndReported) {
  RedisServer srv;
  ScratchSegment seg("rs_jcorrupt");
  WriterConfig cfg = redis_config(seg, srv, 64);
  std::uint64_t version = 0;
  {
    auto w = Writer::open(cfg);
    for (int i = 0; i < 16; ++i)
      w->upsert(must(w->make_update("spot", "acc" + std::to_string(i % 4), "I" + std::to_string(i),
                                    {{"qty", "1"}})));
    version = w->stats().next_version;
    ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    w->close();
  }
  std::uint64_t head = 0;
  edit_journal(
      seg.name(), 64, [&](shm::JournalHeader& jh, shm::JournalEntry* entries, std::uint64_t n) {
        head = shm::load_acquire(&jh.head);
        // an unknown kind
        detail::to_entry(pattern_event(detail::RemovalEvent::Kind::all, version - 1),
                         entries[head % n]);
        entries[head % n].kind = 99;
        // a version never handed out
        detail::to_entry(pattern_event(detail::RemovalEvent::Kind::all, version + 1'000'000),
                         entries[(head + 1) % n]);
        // a namespace id beyond the header's
        detail::to_entry(pattern_event(detail::RemovalEvent::Kind::ns, version - 1, {}, 31),
                         entries[(head + 2) % n]);
        detail::to_entry(erase_event("acc1", "I5", version - 1), entries[(head + 3) % n]);  // valid
        shm::store_release(&jh.head, head + 4);
      });
  test::LogLines logged;
  cfg.log = logged.sink();
  {
    auto w = Writer::open(cfg);
    EXPECT_EQ(w->stats().repairs, 3u + 1u);  // three skipped entries, one finished erase
    EXPECT_TRUE(logged.any_of([&](const std::string& m) {
      return m.find("skipped 3 corrupt journal entries (entry " + std::to_string(head) +
                    ": unknown kind 99)") != std::string::npos;
    })) << ::testing::PrintToString(logged.lines());
    ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    EXPECT_EQ(w->stats().journal_pending, 0u);
    auto c = srv.client();
    EXPECT_EQ(read_positions(c).size(), 15u);  // only acc1:I5 went
    EXPECT_EQ(read_positions(c), segment_as_db(seg.name()));
    w->close();
  }
  // A header whose head is behind its tail: the entries cannot be trusted, the journal restarts.
  edit_journal(seg.name(), 64, [](shm::JournalHeader& jh, shm::JournalEntry*, std::uint64_t) {
    shm::store_release(&jh.head, shm::load_acquire(&jh.tail) - 1);
  });
  logged.clear();
  auto w = Writer::open(cfg);
  EXPECT_TRUE(logged.any_of([](const std::string& m) {
    return m.find("the journal's header is corrupt") != std::string::npos;
  })) << ::testing::PrintToString(logged.lines());
  w->erase(*w->make_key("spot", "acc2", "I2"));  // and it works again
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(w->stats().journal_pending, 0u);
  EXPECT_EQ(w->stats().journal_overflows, 0u);
  auto c = srv.client();
  EXPECT_EQ(read_positions(c).size(), 14u);
}

// An outage longer than the journal: the removals beyond it are counted and logged, kept in
// memory, and still reach Redis when it is back.
TEST(RedisSync, AFullJournalIsCountedAndLoggedAndItsOverflowStillReachesRedis) {
  // Redis keeps every write on disk, so the positions are still there after the outage unless
  // the removals (the journaled ones and the overflow kept in memory) really reach it.
  RedisServer srv({"--appendonly", "yes", "--appendfsync", "always"});
  ScratchSegment seg("rs_jfull");
  WriterConfig cfg = redis_config(seg, srv, 64);  // journal: 1024 entries
  test::LogLines logged;
  cfg.log = logged.sink();
  auto w = Writer::open(cfg);
  constexpr int kN = 1500;
  for (int i = 0; i < kN; ++i) {  // 1500 positions through a 64-slot table: Redis holds them all
    w->upsert(must(w->make_update("spot", "acc" + std::to_string(i % 50), "I" + std::to_string(i),
                                  {{"qty", "1"}})));
    if (i % 32 == 0) {
      ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
    }
  }
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto c = srv.client();
  ASSERT_EQ(read_positions(c).size(), static_cast<std::size_t>(kN));
  ASSERT_EQ(w->stats().journal_pending, 0u);
  cmd(c, {"SET", "sentinel", "kept"});  // shows, after the restart, that Redis kept its data
  srv.stop(SIGKILL);
  for (int i = 0; i < kN; ++i)
    w->erase(*w->make_key("spot", "acc" + std::to_string(i % 50), "I" + std::to_string(i)));
  w->tick();
  EXPECT_EQ(w->stats().journal_pending, 1024u);
  EXPECT_EQ(w->stats().journal_overflows, static_cast<std::uint64_t>(kN - 1024));
  srv.start();
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(20)));
  EXPECT_EQ(w->stats().journal_pending, 0u);
  auto c2 = srv.client();
  ASSERT_EQ(std::string(cmd(c2, {"GET", "sentinel"})->str), "kept")
      << "Redis came back without its data";
  EXPECT_EQ(read_positions(c2).size(), 0u) << "removals the journal overflowed never reached Redis";
  EXPECT_TRUE(logged.any_of([](const std::string& m) {
    // (the sync thread may report while the erases are still running: the count is not fixed)
    return m.find("journal full (1024 entries): ") != std::string::npos &&
           m.find("removals are kept in memory only until Redis has them") != std::string::npos;
  })) << ::testing::PrintToString(logged.lines());
}

TEST(RedisSync, AWrongPasswordIsAClearErrorAndAHealthStateNotACrash) {
  RedisServer srv({"--requirepass", "right"});
  ScratchSegment seg("rs_auth");
  WriterConfig cfg = redis_config(seg, srv);
  cfg.redis->password = "wrong";
  cfg.redis->close_timeout = std::chrono::milliseconds(200);
  test::LogLines lines;
  cfg.log = lines.sink();
  try {  // a warm start cannot read Redis: refused at open, naming why
    Writer::open(cfg);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("authentication as 'default' refused"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("--cold-start"), std::string::npos) << e.what();
  }
  cfg.redis->warm_start = false;
  auto w = Writer::open(cfg);
  w->upsert(must(w->make_update("spot", "a", "B", {{"qty", "1"}})));
  w->tick();
  EXPECT_TRUE(
      test::eventually([&] { return mirror_status(Reader::open(seg.name())).state == "down"; }));
  const MirrorStatus st = mirror_status(Reader::open(seg.name()));
  EXPECT_EQ(st.state, "down");
  EXPECT_NE(st.last_error.find("refused"), std::string::npos) << st.last_error;
  // The first line that is not the segment's page report names the refusal.
  const std::vector<std::string> said_lines = lines.lines();
  const auto said = std::find_if(said_lines.begin(), said_lines.end(), [](const std::string& l) {
    return l.find("on 2 MiB pages") == std::string::npos;
  });
  ASSERT_NE(said, said_lines.end());
  EXPECT_NE(said->find("authentication"), std::string::npos) << *said;
  // Unreachable: the same, with the endpoint named.
  ScratchSegment seg2("rs_unreach");
  WriterConfig c2 = redis_config(seg2, srv);
  c2.redis->port = free_port();
  c2.redis->warm_start = false;
  c2.redis->close_timeout = std::chrono::milliseconds(200);
  auto w2 = Writer::open(c2);
  EXPECT_TRUE(
      test::eventually([&] { return mirror_status(Reader::open(seg2.name())).state == "down"; }));
  const MirrorStatus st2 = mirror_status(Reader::open(seg2.name()));
  EXPECT_EQ(st2.state, "down");
  EXPECT_NE(st2.last_error.find("127.0.0.1:" + std::to_string(c2.redis->port)), std::string::npos)
      << st2.last_error;
  w2->close();  // returns after close_timeout even though Redis never came
}

using test::CliRun;
CliRun inspect(const std::string& args) {
  return test::run_cli(std::string(POSCACHE_INSPECT_BIN) + " " + args);
}

TEST(RedisSync, TheInspectorShowsTheSyncStateAndHealthTurnsDegradedWhenRedisIsDown) {
  RedisServer srv;
  ScratchSegment seg("rs_insp");
  WriterConfig cfg = redis_config(seg, srv);
  // The writer beats only when told (no loop here): with 1 s beats it counts as dead only after
  // 10 s, so a check a moment after heartbeat() never finds it late, even under ASan.
  cfg.heartbeat_interval = std::chrono::seconds(1);
  auto w = Writer::open(cfg);
  w->upsert(must(w->make_update("spot", "a", "B", {{"qty", "1"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  w->heartbeat();
  CliRun r = inspect("-s " + seg.name() + " health");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("redis up"), std::string::npos) << r.out;
  r = inspect("-s " + seg.name() + " stats");
  EXPECT_NE(r.out.find("redis        up  dirty 0"), std::string::npos) << r.out;
  srv.stop(SIGKILL);
  w->upsert(must(w->make_update("spot", "a", "B", {{"qty", "2"}})));
  w->sync_redis(std::chrono::milliseconds(300));
  EXPECT_TRUE(
      test::eventually([&] { return mirror_status(Reader::open(seg.name())).state == "down"; }));
  w->heartbeat();
  r = inspect("-s " + seg.name() + " --json health");
  EXPECT_EQ(r.code, 4) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["redis"]["state"], "down");
  EXPECT_EQ(j["redis"]["dirty"], 1);
  EXPECT_NE(
      j["redis"]["last_error"].get<std::string>().find("127.0.0.1:" + std::to_string(srv.port())),
      std::string::npos)
      << r.out;
  w->erase(*w->make_key("spot", "a", "B"));  // a removal Redis cannot take: it waits in the journal
  r = inspect("-s " + seg.name() + " stats");
  EXPECT_NE(r.out.find("journal      1 removals not yet in Redis  0 overflowed"), std::string::npos)
      << r.out;
  EXPECT_EQ(nlohmann::json::parse(
                inspect("-s " + seg.name() + " --json stats").out)["redis"]["journal_pending"],
            1);
  srv.start();
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  w->heartbeat();
  EXPECT_EQ(inspect("-s " + seg.name() + " health").code, 0);
  EXPECT_EQ(mirror_status(Reader::open(seg.name())).journal_pending, 0u);
}

TEST(RedisSync, TheRightPasswordAndAUserConnect) {
  RedisServer srv({"--requirepass", "right"});
  auto admin = srv.client("right");
  cmd(admin, {"ACL", "SETUSER", "poscache", "on", ">pw", "~poscache:*", "+@all"});
  ScratchSegment seg("rs_acl");
  WriterConfig cfg = redis_config(seg, srv);
  cfg.redis->username = "poscache";
  cfg.redis->password = "pw";
  auto w = Writer::open(cfg);
  w->upsert(must(w->make_update("spot", "a", "B", {{"qty", "1"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(read_positions(admin).size(), 1u);
}

TEST(RedisSync, ScriptsFlushedOnTheServerAreLoadedAgain) {
  RedisServer srv;
  ScratchSegment seg("rs_noscript");
  auto w = Writer::open(redis_config(seg, srv));
  for (int i = 0; i < 100; ++i)
    w->upsert(must(w->make_update("spot", "a" + std::to_string(i), "B", {{"qty", "1"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto c = srv.client();
  cmd(c, {"SCRIPT", "FLUSH"});
  for (int i = 0; i < 1000; ++i)
    w->upsert(must(w->make_update("spot", "a" + std::to_string(i), "B", {{"qty", "2"}})));
  w->erase(*w->make_key("spot", "a5", "B"));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(read_positions(c), segment_as_db(seg.name()));
}

// Redis stops serving writes (CLIENT PAUSE WRITE, for up to a minute): updates go on, none of
// them waits for Redis (if one did, this test would hang until the pause ends), and the sync
// catches up once Redis serves again.
TEST(RedisSync, AStalledRedisDoesNotHoldUpdates) {
  RedisServer srv;
  ScratchSegment seg("rs_slow");
  WriterConfig cfg = redis_config(seg, srv);
  cfg.redis->command_timeout = std::chrono::milliseconds(300);
  auto w = Writer::open(cfg);
  auto c = srv.client();
  cmd(c, {"CLIENT", "PAUSE", "60000", "WRITE"});
  for (int i = 0; i < 5000; ++i) {
    w->upsert(must(
        w->make_update("spot", "a" + std::to_string(i % 300), "B", {{"qty", std::to_string(i)}})));
    w->tick();
  }
  EXPECT_FALSE(w->sync_redis(std::chrono::milliseconds(500)));
  EXPECT_GT(w->stats().redis_dirty, 0u);
  EXPECT_EQ(read_positions(c).size(), 0u);  // nothing got through the pause
  cmd(c, {"CLIENT", "UNPAUSE"});
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  EXPECT_EQ(read_positions(c), segment_as_db(seg.name()));
}

TEST(RedisSync, AUnixSocketWorksLikeTcp) {
  RedisServer srv;
  ScratchSegment seg("rs_unix");
  WriterConfig cfg = redis_config(seg, srv);
  cfg.redis->unix_socket = srv.socket_path();
  cfg.redis->port = 1;  // ignored with a socket
  auto w = Writer::open(cfg);
  w->upsert(must(w->make_update("spot", "a", "B", {{"qty", "1"}})));
  ASSERT_TRUE(w->sync_redis(std::chrono::seconds(10)));
  auto c = srv.client();
  EXPECT_EQ(read_positions(c), segment_as_db(seg.name()));
  w->close();
  EXPECT_EQ(mirror_status(Reader::open(seg.name())).state, "off");  // no sync thread after close
}

TEST(RedisSync, BadRedisSettingsAreRefusedNamingTheSetting) {
  ScratchSegment seg("rs_bad");
  WriterConfig cfg = small_config(seg.name());
  cfg.redis = RedisConfig{};
  cfg.redis->prefix = "a{b}";
  EXPECT_THROW(
      try { Writer::open(cfg); } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("redis prefix 'a{b}'"), std::string::npos) << e.what();
        throw;
      },
      Error);
  cfg.redis->prefix = "ok";
  cfg.redis->port = 70000;
  EXPECT_THROW(Writer::open(cfg), Error);
  cfg.redis->port = 6379;
  cfg.redis->batch_size = 0;
  EXPECT_THROW(Writer::open(cfg), Error);
}

}  // namespace
}  // namespace poscache::test
