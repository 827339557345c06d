// The Redis Streams source (writer/ingest/stream_source.hpp) against a real redis-server: the
// test thread is the daemon's apply loop (it polls the source), publishers use plain XADD the
// way a Python service does. Restarts are hand-built from the states a killed writer leaves:
// entries read and never acknowledged, the cursor moved or not (stream_cursor.hpp SC1-SC3).
#include "writer/ingest/stream_source.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "redis/redis_util.hpp"
#include "test_util.hpp"

namespace poscache::ingest {
namespace {

using namespace std::chrono_literals;
using test::cmd;

std::string add_line(const std::string& account, int by = 1) {
  return R"({"op":"add","ns":"moonwell","account":")" + account +
         R"(","instrument":"USDC","field":"blocks_unhealthy","by":)" + std::to_string(by) + "}";
}

std::string fill_line(const std::string& side, const std::string& qty, const std::string& price,
                      const std::string& trade_id = "") {
  return R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL","side":")" + side +
         R"(","qty":")" + qty + R"(","price":")" + price + "\"" +
         (trade_id.empty() ? std::string() : R"(,"trade_id":")" + trade_id + "\"") + "}";
}

struct Fixture {
  explicit Fixture(const std::string& tag)
      : seg(tag),
        writer(Writer::open(test::small_config(seg.name(), 4096))),
        exec(*writer, nullptr),
        client(srv.client()) {
    config.streams = {"in"};
    config.group = "g";
  }
  std::unique_ptr<StreamSource> source() {
    return std::make_unique<StreamSource>(config, srv.config(), writer->namespaces(), seg.name(),
                                          writer->stats().generation, log.sink());
  }
  std::string xadd(const std::string& stream, const std::string& line,
                   const std::string& id = "*") {
    auto r = cmd(client, {"XADD", stream, id, "cmd", line});
    EXPECT_EQ(r->type, REDIS_REPLY_STRING) << detail::reply_text(r.get());
    return std::string(r->str, r->len);
  }
  // Polls `s` as the apply loop does until `acked` entries are acknowledged in Redis.
  void drain(StreamSource& s, std::uint64_t acked) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (s.acknowledged() < acked && std::chrono::steady_clock::now() < deadline)
      if (s.poll(exec, 0, 256) == 0) std::this_thread::sleep_for(50us);
    ASSERT_EQ(s.acknowledged(), acked) << log.joined();
  }
  long long pending(const std::string& stream = "in") {
    auto r = cmd(client, {"XPENDING", stream, config.group});
    return r->type == REDIS_REPLY_ARRAY ? r->element[0]->integer : -1;
  }
  std::int64_t blocks(const std::string& account) {
    auto p = writer->find(1, account, "USDC");
    return p ? p->int64(5) : -1;  // moonwell: blocks_unhealthy is field 5
  }
  test::RedisServer srv;
  test::ScratchSegment seg;
  test::LogLines log;
  std::unique_ptr<Writer> writer;
  CommandExecutor exec;
  detail::RedisClient client;
  StreamConfig config;
};

TEST(StreamSourceTest, EntriesAreAppliedInOrderAndAcknowledged) {
  Fixture t("stream_order");
  ASSERT_EQ(t.writer->namespaces()[1].fields[5].name, "blocks_unhealthy");
  t.xadd("in", fill_line("buy", "10", "100", "T1"));
  t.xadd("in", fill_line("buy", "10", "110", "T2"));
  t.xadd("in", fill_line("sell", "5", "120", "T3"));
  t.xadd("in", R"({"op":"mark","ns":"spot","instrument":"SOL","price":"130"})");
  for (int i = 0; i < 500; ++i) t.xadd("in", add_line("0xa" + std::to_string(i % 7)));
  auto s = t.source();
  t.drain(*s, 504);
  auto p = t.writer->find(0, "w1", "SOL");
  ASSERT_TRUE(p.has_value());
  const auto& spot = t.writer->namespaces()[0];
  auto field = [&](const char* name) {
    for (std::size_t f = 0; f < spot.fields.size(); ++f)
      if (spot.fields[f].name == name) return format_decimal(p->values[f], spot.fields[f].scale);
    return std::string("?");
  };
  EXPECT_EQ(field("qty"), "15.000000000000000000");
  EXPECT_EQ(field("avg_price"), "105.000000000000000000");
  EXPECT_EQ(field("realized_pnl"), "75.000000000000000000");
  EXPECT_EQ(field("unrealized_pnl"), "375.000000000000000000");  // 15 x (130 - 105)
  for (int a = 0; a < 7; ++a)
    EXPECT_EQ(t.blocks("0xa" + std::to_string(a)), 500 / 7 + (a < 500 % 7 ? 1 : 0));
  EXPECT_EQ(t.pending(), 0);
  const auto c = s->counters();
  EXPECT_EQ(c.received, 504u);
  EXPECT_EQ(c.applied, 504u);
  EXPECT_EQ(c.rejected, 0u);
  // The stream id is the source_seq of a command that carries none.
  EXPECT_NE(p->source_seq, 0u);
  // New entries while the source runs arrive too.
  t.xadd("in", add_line("0xa0", 10));
  t.drain(*s, 505);
  EXPECT_EQ(t.blocks("0xa0"), 500 / 7 + 1 + 10);
}

TEST(StreamSourceTest, MalformedEntriesAreRefusedCopiedWithTheirReasonAndNeverRetried) {
  Fixture t("stream_bad");
  cmd(t.client, {"XADD", "in", "*", "op", "upsert", "ns", "spot"});  // no cmd field
  cmd(t.client, {"XADD", "in", "*", "cmd", "a", "cmd", "b"});        // two
  t.xadd("in", "{not json");
  t.xadd("in", R"({"op":"fill","ns":"marks","account":"w1","instrument":"SOL","side":"buy",)"
               R"("qty":"1","price":"1"})");  // the quote namespace has no trading fields
  t.xadd("in", R"({"op":"upsert","ns":"spot","account":"w1","instrument":"SOL",)"
               R"("fields":{"qty":1.5}})");  // a binary float
  t.xadd("in", add_line("0xok"));
  auto s = t.source();
  t.drain(*s, 6);
  EXPECT_EQ(s->counters().rejected, 5u);
  EXPECT_EQ(s->counters().applied, 1u);
  EXPECT_EQ(t.pending(), 0);
  auto rej = cmd(t.client, {"XRANGE", "in:rejected", "-", "+"});
  ASSERT_EQ(rej->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(rej->elements, 5u);
  std::vector<std::string> errors, cmds;
  for (std::size_t i = 0; i < rej->elements; ++i) {
    const redisReply* f = rej->element[i]->element[1];
    std::map<std::string, std::string> m;
    for (std::size_t k = 0; k + 1 < f->elements; k += 2)
      m[f->element[k]->str] = std::string(f->element[k + 1]->str, f->element[k + 1]->len);
    EXPECT_FALSE(m["id"].empty());
    EXPECT_EQ(m["group"], "g");
    errors.push_back(m["error"]);
    cmds.push_back(m["cmd"]);
  }
  EXPECT_NE(errors[0].find("no 'cmd' field"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("\"op\""), std::string::npos) << errors[0];
  EXPECT_EQ(cmds[0], R"({"ns":"spot","op":"upsert"})");  // its fields, nothing lost
  EXPECT_NE(errors[1].find("two 'cmd' fields"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("field 'cmd'"), std::string::npos) << errors[2];
  EXPECT_EQ(cmds[2], "{not json");
  EXPECT_NE(errors[3].find("has no field"), std::string::npos) << errors[3];
  EXPECT_NE(errors[4].find("1.5"), std::string::npos) << errors[4];
  // A restarted source retries none of them.
  s.reset();
  auto again = t.source();
  std::this_thread::sleep_for(200ms);
  for (int i = 0; i < 100; ++i) again->poll(t.exec, 0, 256);
  EXPECT_EQ(again->counters().received, 0u);
  EXPECT_EQ(cmd(t.client, {"XLEN", "in:rejected"})->integer, 5);
}

TEST(StreamSourceTest, AnIdThatCannotOrderAPositionIsRefusedByName) {
  Fixture t("stream_id");
  t.xadd("in", add_line("0xb"), "5-1048576");
  auto s = t.source();
  t.drain(*s, 1);
  EXPECT_EQ(s->counters().rejected, 1u);
  auto rej = cmd(t.client, {"XRANGE", "in:rejected", "-", "+"});
  ASSERT_EQ(rej->elements, 1u);
  const std::string error = rej->element[0]->element[1]->element[3]->str;
  EXPECT_NE(error.find("\"5-1048576\""), std::string::npos) << error;
  EXPECT_NE(error.find("2^20"), std::string::npos) << error;
  EXPECT_EQ(t.blocks("0xb"), -1);
}

// A writer killed after it applied entries and moved the cursor, before its XACK: the entries
// are still pending in Redis. The next writer acknowledges them without applying them again
// (an add without a seq would otherwise count twice), and applies the ones after the cursor.
TEST(StreamSourceTest, EntriesAPreviousWriterHandledAreAcknowledgedNotAppliedAgain) {
  Fixture t("stream_cursor");
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(t.xadd("in", add_line("0xc")));
  cmd(t.client, {"XGROUP", "CREATE", "in", "g", "0"});
  auto read = cmd(t.client, {"XREADGROUP", "GROUP", "g", "writer", "COUNT", "10", "STREAMS", "in",
                             ">"});  // the dead writer read all ten
  ASSERT_EQ(read->element[0]->element[1]->elements, 10u);
  {
    // ... applied the first six (with their ids as source_seq, as the source does) and moved
    // its cursor past them; the sixth was refused and recorded as such.
    StreamCursor cursor(t.seg.name(), t.writer->stats().generation);
    const std::uint32_t slot = cursor.slot("in");
    JsonDecoder dec(t.writer->namespaces());
    for (int i = 0; i < 5; ++i) {
      const std::uint64_t id = *pack_stream_id(ids[i]);
      auto c = decode_stream_entry(dec, id, {{"cmd", add_line("0xc")}});
      ASSERT_EQ(t.exec.execute(std::get<Command>(c)).status, CommandStatus::applied);
      cursor.advance(slot, id);
    }
    cursor.refused(slot, *pack_stream_id(ids[5]), "hand-built refusal");
    cursor.advance(slot, *pack_stream_id(ids[5]));
  }
  ASSERT_EQ(t.blocks("0xc"), 5);
  auto s = t.source();
  t.drain(*s, 10);
  EXPECT_EQ(t.blocks("0xc"), 9);  // 5 before + the 4 after the cursor, none twice
  EXPECT_EQ(s->replayed(), 6u);
  EXPECT_EQ(s->counters().applied, 4u);
  EXPECT_EQ(t.pending(), 0);
  auto rej = cmd(t.client, {"XRANGE", "in:rejected", "-", "+"});
  ASSERT_EQ(rej->elements, 1u);  // the refused one's copy, which the dead writer never made
  EXPECT_EQ(std::string(rej->element[0]->element[1]->element[3]->str), "hand-built refusal");
}

// Killed between applying an entry and moving the cursor (SC1 done, SC3 not): the entry is
// executed again, and its stream id, now the position's source_seq, makes it stale.
TEST(StreamSourceTest, AnEntryAppliedBeforeTheCursorMovedIsRefusedAsStale) {
  Fixture t("stream_stale");
  const std::string id = t.xadd("in", add_line("0xd", 3));
  cmd(t.client, {"XGROUP", "CREATE", "in", "g", "0"});
  cmd(t.client, {"XREADGROUP", "GROUP", "g", "writer", "STREAMS", "in", ">"});
  JsonDecoder dec(t.writer->namespaces());
  auto c = decode_stream_entry(dec, *pack_stream_id(id), {{"cmd", add_line("0xd", 3)}});
  ASSERT_EQ(t.exec.execute(std::get<Command>(c)).status, CommandStatus::applied);
  auto s = t.source();
  t.drain(*s, 1);
  EXPECT_EQ(t.blocks("0xd"), 3);
  EXPECT_EQ(s->counters().ignored, 1u);
  EXPECT_EQ(s->replayed(), 0u);
  EXPECT_EQ(t.pending(), 0);
}

TEST(StreamSourceTest, EntriesPendingForAnotherConsumerAreTakenOver) {
  Fixture t("stream_claim");
  for (int i = 0; i < 3; ++i) t.xadd("in", add_line("0xe"));
  cmd(t.client, {"XGROUP", "CREATE", "in", "g", "0"});
  cmd(t.client, {"XREADGROUP", "GROUP", "g", "old-host", "STREAMS", "in", ">"});
  t.xadd("in", add_line("0xe"));
  auto s = t.source();
  t.drain(*s, 4);
  EXPECT_EQ(t.blocks("0xe"), 4);
  EXPECT_EQ(t.pending(), 0);
}

TEST(StreamSourceTest, ADroppedConnectionLosesNothingAndAppliesNothingTwice) {
  Fixture t("stream_drop");
  auto s = t.source();
  std::thread publisher([&] {
    auto c = t.srv.client();
    for (int i = 0; i < 3000; ++i) {
      cmd(c, {"XADD", "in", "*", "cmd", add_line("0xf" + std::to_string(i % 3))});
      if (i % 500 == 250) cmd(c, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (s->acknowledged() < 3000 && std::chrono::steady_clock::now() < deadline)
    if (s->poll(t.exec, 0, 256) == 0) std::this_thread::sleep_for(50us);
  publisher.join();
  t.client = t.srv.client();  // the test's own connection was dropped too
  t.drain(*s, 3000);
  EXPECT_EQ(t.blocks("0xf0") + t.blocks("0xf1") + t.blocks("0xf2"), 3000);
  EXPECT_EQ(t.pending(), 0);
  EXPECT_GT(s->redis_errors(), 0u) << "the connection was never dropped";
}

TEST(StreamSourceTest, ANewGroupStartsWhereConfigured) {
  Fixture t("stream_start");
  t.xadd("in", add_line("0x1"));
  t.config.start = "$";
  auto s = t.source();
  std::this_thread::sleep_for(100ms);
  t.xadd("in", add_line("0x2"));
  t.drain(*s, 1);
  EXPECT_EQ(t.blocks("0x1"), -1);
  EXPECT_EQ(t.blocks("0x2"), 1);
}

TEST(StreamSourceTest, AKeyOfAnotherTypeStopsTheStartWithAClearError) {
  Fixture t("stream_type");
  cmd(t.client, {"SET", "in", "x"});
  try {
    t.source();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'in'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("other than a stream"), std::string::npos) << e.what();
  }
}

TEST(StreamSourceTest, BadSettingsAreRefusedByName) {
  StreamConfig c;
  c.streams = {"a", "a"};
  EXPECT_NE(validate(c).error().find("'a' is listed twice"), std::string::npos);
  c.streams = {"a"};
  c.start = "1";
  EXPECT_NE(validate(c).error().find("stream_start '1'"), std::string::npos);
  c.start = "0";
  c.batch = 0;
  EXPECT_NE(validate(c).error().find("stream_batch 0"), std::string::npos);
}

}  // namespace
}  // namespace poscache::ingest
