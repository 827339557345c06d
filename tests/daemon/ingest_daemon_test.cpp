// Producers reaching a running poscache-writer as users reach it: poscache-feed over the ingest
// socket, the daemon killed with -9 and restarted, the market simulation the demo runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "daemon/daemon_util.hpp"
#include "poscache/format.hpp"
#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "redis/redis_util.hpp"

using namespace poscache;
using namespace std::chrono_literals;
using poscache::test::Daemon;
using poscache::test::seg_flag;
using poscache::test::TempDir;

namespace {

test::CliRun feed(const test::ScratchSegment& seg, const std::string& args) {
  return test::run_cli(std::string(POSCACHE_FEED_BIN) + " -s " + seg.name() + " " + args);
}

std::string field(Reader& r, const char* ns, const char* account, const char* instrument,
                  const char* name) {
  const NamespaceId id = *r.namespace_id(ns);
  Position p;
  if (r.get(id, account, instrument, p) != ReadStatus::ok) return "absent";
  return format_field(r.namespace_info(id), p, *r.namespace_info(id).field_index(name));
}

TEST(IngestDaemonTest, FillsMarksAndRefusalsThroughPoscacheFeed) {
  const test::ScratchSegment seg("ifeed");
  Daemon d(seg_flag(seg) + " --capacity 1000 --no-redis");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  EXPECT_EQ(feed(seg, "fill spot w1 SOL buy 10 100 --trade-id T1").code, 0);
  EXPECT_EQ(feed(seg, "fill spot w1 SOL buy 10 110 --trade-id T2").code, 0);
  auto third = feed(seg, "fill spot w1 SOL sell 5 120 --trade-id T3 --fee 0.25");
  EXPECT_EQ(third.code, 0) << third.out;
  EXPECT_EQ(third.out, "applied (ring message 1)\n") << third.out;
  auto again = feed(seg, "fill spot w1 SOL sell 5 120 --trade-id T3");
  EXPECT_EQ(again.code, 0);
  EXPECT_EQ(again.out, "duplicate (ring message 1)\n");  // the ring says what the socket says
  auto dup = feed(seg, "--via socket fill spot w1 SOL sell 5 120 --trade-id T3");
  EXPECT_EQ(dup.out, "duplicate\n");
  auto mark = feed(seg, "--via socket mark spot SOL 125");
  EXPECT_EQ(mark.code, 0) << mark.out;
  EXPECT_NE(mark.out.find("1 positions"), std::string::npos) << mark.out;
  Reader r = Reader::open(seg.name());
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "15.000000000000000000");
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "realized_pnl"), "75.000000000000000000");
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "unrealized_pnl"), "300.000000000000000000");
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "fees"), "0.250000000000000000");

  auto refused = feed(seg, "--via socket fill lending w1 SOL buy 1 1");
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.out.find("namespace 'lending' has no field 'qty'"), std::string::npos)
      << refused.out;
  auto refused_ring = feed(seg, "fill lending w1 SOL buy 1 1");  // the same decoder, the same words
  EXPECT_EQ(refused_ring.code, 1);
  EXPECT_NE(refused_ring.out.find("namespace 'lending' has no field 'qty'"), std::string::npos)
      << refused_ring.out;
  // Refused by the writer (not at the push): add on a decimal field, through the ring.
  auto refused_late = feed(seg, "add lending 0xab ETH health_factor --by 1");
  EXPECT_EQ(refused_late.code, 1);
  EXPECT_NE(refused_late.out.find("is a decimal; add works on int64 fields"), std::string::npos)
      << refused_late.out;
  // Numbers on the command line go through the decoder too: no clamping, no wrapping.
  auto huge = feed(seg, "add lending 0xab ETH blocks_unhealthy --by 99999999999999999999999");
  EXPECT_EQ(huge.code, 1) << huge.out;
  EXPECT_NE(huge.out.find("out of the 64-bit range"), std::string::npos) << huge.out;
  EXPECT_EQ(feed(seg, "add lending 0xab ETH blocks_unhealthy --by 0x10").code, 1);
  auto negative_seq = feed(seg, "upsert spot w1 SOL qty=1 --seq -1");
  EXPECT_EQ(negative_seq.code, 2) << negative_seq.out;
  EXPECT_NE(negative_seq.out.find("--seq '-1'"), std::string::npos) << negative_seq.out;
  EXPECT_EQ(feed(seg, "").code, 2);  // usage: no subcommand
  auto bad = feed(seg, "upsert spot w1 SOL qty=12,5");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("12,5"), std::string::npos) << bad.out;
  auto bad_socket = feed(seg, "--via socket upsert spot w1 SOL qty=12,5");
  EXPECT_EQ(bad_socket.code, 1);
  EXPECT_NE(bad_socket.out.find("12,5"), std::string::npos) << bad_socket.out;

  TempDir dir;
  const std::string file = dir.file(
      "cmds.jsonl",
      R"({"op":"add","ns":"lending","account":"0xab","instrument":"ETH","field":"blocks_unhealthy","by":1})"
      "\n"
      R"({"op":"add","ns":"lending","account":"0xab","instrument":"ETH","field":"health_factor","by":1})"
      "\n\n"
      R"({"op":"invalidate","account":"w1"})"
      "\n");
  auto replay = feed(seg, "--via socket replay " + file);
  EXPECT_EQ(replay.code, 1) << replay.out;
  EXPECT_NE(replay.out.find("line 2 refused: add: field 'health_factor'"), std::string::npos)
      << replay.out;
  EXPECT_NE(replay.out.find("replayed 3 commands: applied 2 rejected 1"), std::string::npos)
      << replay.out;
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "qty"), "absent");
  EXPECT_TRUE(d.wait_for("from uid " + std::to_string(::getuid()))) << d.log();
}

// A trading day's fills as JSON lines: four wallets trading three tokens on a random walk of
// prices, whole fills and dust, flips through zero, marks now and then, and one fill in forty
// redelivered (an earlier trade id sent again).
std::string trading_day(std::size_t fills, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const char* tokens[] = {"SOL", "JUP", "BONK"};
  double price[] = {142.5, 0.8125, 0.0000215};
  std::string out;
  std::size_t trades = 0;
  for (std::size_t i = 0; i < fills; ++i) {
    const int t = static_cast<int>(rng() % 3);
    price[t] *= 1.0 + (static_cast<double>(rng() % 2001) - 1000.0) / 200'000.0;
    char px[64];
    std::snprintf(px, sizeof px, "%.9f", price[t]);
    if (rng() % 25 == 0) {
      out += R"({"op":"mark","ns":"spot","instrument":")" + std::string(tokens[t]) +
             R"(","price":")" + px + "\"}\n";
    }
    std::string trade_id;
    if (trades > 0 && rng() % 40 == 0) {
      trade_id = "D-" + std::to_string(rng() % trades + 1);  // redelivered
    } else {
      trade_id = "D-" + std::to_string(++trades);
    }
    const std::string qty =
        rng() % 10 == 0 ? "0.000000000000000" + std::to_string(rng() % 900 + 100)
                        : std::to_string(rng() % 500 + 1) + "." + std::to_string(rng() % 1000);
    out += R"({"op":"fill","ns":"spot","account":"w)" + std::to_string(rng() % 4) +
           R"(","instrument":")" + tokens[t] + R"(","side":")" + (rng() % 2 ? "buy" : "sell") +
           R"(","qty":")" + qty + R"(","price":")" + px + R"(","fee":"0.01","trade_id":")" +
           trade_id + "\"}\n";
  }
  return out;
}

// Every field of every position of `ns`, as text, by key.
std::map<std::string, std::string> positions_of(const std::string& segment, const char* ns) {
  Reader r = Reader::open(segment);
  const NamespaceId id = *r.namespace_id(ns);
  const NamespaceInfo& info = r.namespace_info(id);
  std::map<std::string, std::string> out;
  r.scan(ScanFilter{id, std::nullopt, std::nullopt}, [&](const Position& p) {
    std::string fields;
    for (std::size_t f = 0; f < info.fields.size(); ++f)
      if (p.has(f)) fields += info.fields[f].name + "=" + format_field(info, p, f) + " ";
    out[std::string(p.account_view()) + ":" + std::string(p.instrument_view())] = fields;
  });
  return out;
}

// poscache-feed replay over a ring waits for room whatever the command: the writer stopped for
// 2 s in the middle of 20 000 fills loses none of them, and the books equal the same replay over
// the socket, outcome for outcome.
TEST(IngestDaemonTest, ARingReplayWaitsOutAStoppedWriterAndEqualsTheSocketReplay) {
  const test::ScratchSegment ring_seg("ireplay_ring"), socket_seg("ireplay_sock");
  Daemon ring_d(seg_flag(ring_seg) + " --capacity 1000 --no-redis");
  Daemon socket_d(seg_flag(socket_seg) + " --capacity 1000 --no-redis");
  ASSERT_TRUE(ring_d.wait_for("ingest socket")) << ring_d.log();
  ASSERT_TRUE(socket_d.wait_for("ingest socket")) << socket_d.log();
  TempDir dir;
  const std::string file = dir.file("day.jsonl", trading_day(20'000, 20261207));
  test::CliRun ring_run;
  std::thread replay([&] { ring_run = feed(ring_seg, "replay " + file); });
  // Stop the writer once the replay is under way, for 2 s: the ring fills and every push waits.
  Reader r = Reader::open(ring_seg.name());
  const auto t0 = std::chrono::steady_clock::now();
  while (r.stats().updates + r.stats().inserts < 2'000 &&
         std::chrono::steady_clock::now() - t0 < 30s)
    std::this_thread::sleep_for(100us);
  ring_d.signal(SIGSTOP);
  std::this_thread::sleep_for(2s);
  ring_d.signal(SIGCONT);
  replay.join();
  EXPECT_EQ(ring_run.code, 0) << ring_run.out;
  auto socket_run = feed(socket_seg, "--via socket replay " + file);
  EXPECT_EQ(socket_run.code, 0) << socket_run.out;
  // The same outcomes ("replayed N commands[ via ring]: applied A duplicate D").
  const auto summary = [](const std::string& out) {
    const auto at = out.find("replayed ");
    std::string line = at == std::string::npos ? out : out.substr(at, out.find('\n', at) - at);
    if (const auto via = line.find(" via ring"); via != std::string::npos) line.erase(via, 9);
    return line;
  };
  EXPECT_EQ(summary(ring_run.out), summary(socket_run.out)) << ring_run.out << socket_run.out;
  EXPECT_NE(summary(ring_run.out).find(" duplicate "), std::string::npos) << ring_run.out;
  const auto via_ring = positions_of(ring_seg.name(), "spot");
  const auto via_socket = positions_of(socket_seg.name(), "spot");
  EXPECT_EQ(via_ring.size(), 12u);
  EXPECT_EQ(via_ring, via_socket);
}

// One decoder for the JSON lines: the ring and the socket refuse the same bad lines, naming the
// same line with the same words, and apply the same good ones.
TEST(IngestDaemonTest, TheRingAndTheSocketRefuseTheSameBadLinesWithTheSameWords) {
  const test::ScratchSegment ring_seg("ibad_ring"), socket_seg("ibad_sock");
  Daemon ring_d(seg_flag(ring_seg) + " --capacity 1000 --no-redis");
  Daemon socket_d(seg_flag(socket_seg) + " --capacity 1000 --no-redis");
  ASSERT_TRUE(ring_d.wait_for("ingest socket")) << ring_d.log();
  ASSERT_TRUE(socket_d.wait_for("ingest socket")) << socket_d.log();
  const std::string add = R"({"op":"add","ns":"lending","account":"0xab","instrument":"ETH",)"
                          R"("field":"blocks_unhealthy",)";
  const std::string fill = R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL",)";
  const std::string lines[] = {
      add + R"("by":2})",       // good
      add + R"("by":"7abc"})",  // the issue's: was applied as 7
      add + R"("by":1.5})",
      add + R"("by":"9223372036854775808"})",
      add + R"("by":9223372036854775807})",                                // good
      add + R"("by":1})",                                                  // refused by the writer
      fill + R"("side":"buy","qty":"10","price":"100","trade_id":"X1"})",  // good
      fill + R"("side":"hold","qty":"10","price":"100"})",
      fill + R"("side":"buy","qty":"-1","price":"100"})",
      fill + R"("side":"buy","qty":"12,5","price":"100"})",
      fill + R"("side":"buy","qty":"1","price":"1","trade_id":")" + std::string(65, 'T') + "\"}",
      fill + R"("side":"buy","qty":"1"})",
      fill + R"("side":"sell","qty":"1","price":"101","trade_id":"X1"})",  // duplicate
      R"({"op":"fill","ns":"futures","account":"w1","instrument":"SOL","side":"buy","qty":"1","price":"1"})",
      R"({"op":"fill","ns":"lending","account":"w1","instrument":"SOL","side":"buy","qty":"1","price":"1"})",
      R"({"op":"mark","ns":"spot","instrument":"SOL","price":"-1"})",
      R"({"op":"mark","ns":"spot","instrument":"SOL","price":"104.5"})",  // good
      R"({"op":"upsert","ns":"spot","account":"w2","instrument":"SOL","fields":{"qty":1.5}})",
      R"({"op":"upsert","ns":"spot","account":"w:2","instrument":"SOL","fields":{"qty":"1"}})",
      R"({"op":"upsert","ns":"spot","account":"w2","instrument":"SOL","fields":{"qtty":"1"}})",
      R"({"op":"erase","ns":"spot","account":"nobody","instrument":"SOL"})",  // not found
      R"({"op":"launch","ns":"spot"})",
      R"(["op","fill"])",
      R"({"op":"fill",)",
      R"({"op":"invalidate"})",
  };
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  TempDir dir;
  const std::string file = dir.file("bad.jsonl", text);
  const auto via_ring = feed(ring_seg, "replay " + file);
  const auto via_socket = feed(socket_seg, "--via socket replay " + file);
  EXPECT_EQ(via_ring.code, 1) << via_ring.out;
  EXPECT_EQ(via_socket.code, 1) << via_socket.out;
  const auto refusals = [](const std::string& out) {
    std::vector<std::string> v;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);)
      if (l.find(" refused: ") != std::string::npos) v.push_back(l);
    std::sort(v.begin(), v.end());
    return v;
  };
  const auto ring_refusals = refusals(via_ring.out), socket_refusals = refusals(via_socket.out);
  EXPECT_EQ(ring_refusals, socket_refusals) << via_ring.out << "\n---\n" << via_socket.out;
  EXPECT_EQ(ring_refusals.size(), 19u) << via_ring.out;
  EXPECT_NE(via_ring.out.find("line 2 refused: "), std::string::npos) << via_ring.out;
  EXPECT_NE(via_ring.out.find("'7abc'"), std::string::npos) << via_ring.out;
  EXPECT_NE(via_ring.out.find("applied 4 duplicate 1 not_found 1 rejected 19"), std::string::npos)
      << via_ring.out;
  EXPECT_EQ(positions_of(ring_seg.name(), "lending"), positions_of(socket_seg.name(), "lending"));
  EXPECT_EQ(positions_of(ring_seg.name(), "spot"), positions_of(socket_seg.name(), "spot"));
}

// poscache-feed batch: a file of commands sent as one batch, over a ring or the socket; one bad
// command and nothing of it is applied.
TEST(IngestDaemonTest, AFeedBatchIsAppliedWholeOrNotAtAll) {
  const test::ScratchSegment seg("ibatch");
  Daemon d(seg_flag(seg) + " --capacity 1000 --no-redis");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  TempDir dir;
  const std::string trade = dir.file(
      "trade.jsonl",
      R"({"op":"fill","ns":"spot","account":"fb","instrument":"SOL","side":"buy","qty":"10","price":"100","fee":"0.1","trade_id":"FB-1"})"
      "\n"
      R"({"op":"fill","ns":"spot","account":"fb","instrument":"USDC","side":"sell","qty":"1000.1","price":"1","trade_id":"FB-1-cash"})"
      "\n");
  auto ring = feed(seg, "batch " + trade);
  EXPECT_EQ(ring.code, 0) << ring.out;
  EXPECT_NE(ring.out.find("batch of 2: applied applied"), std::string::npos) << ring.out;
  auto again = feed(seg, "--via socket batch " + trade);
  EXPECT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("batch of 2: duplicate duplicate"), std::string::npos) << again.out;
  const std::string bad = dir.file(
      "bad.jsonl",
      R"({"op":"fill","ns":"spot","account":"fb","instrument":"SOL","side":"buy","qty":"1","price":"100","trade_id":"FB-2"})"
      "\n"
      R"({"op":"fill","ns":"spot","account":"fb","instrument":"USDC","side":"sell","qty":"100","price":"1","trade_id":"FB-2-cash","fee":"x"})"
      "\n");
  for (const char* via : {"", "--via socket "}) {
    auto refused = feed(seg, std::string(via) + "batch " + bad);
    EXPECT_EQ(refused.code, 1) << refused.out;
    EXPECT_NE(refused.out.find("command 1 (fill)"), std::string::npos) << refused.out;
  }
  Reader r = Reader::open(seg.name());
  EXPECT_EQ(field(r, "spot", "fb", "SOL", "qty"), "10.000000000000000000");
  EXPECT_EQ(field(r, "spot", "fb", "USDC", "qty"), "-1000.100000000000000000");
}

TEST(IngestDaemonTest, AFeedWithNoWriterSaysSoAndExitsThree) {
  const test::ScratchSegment seg("inone");
  auto r = feed(seg, "--via socket mark spot SOL 1");
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.out.find("is poscache-writer running"), std::string::npos) << r.out;
  auto ring = feed(seg, "mark spot SOL 1");  // the ring needs the segment first
  EXPECT_EQ(ring.code, 3);
  EXPECT_NE(ring.out.find(seg.name()), std::string::npos) << ring.out;
}

// Trade ids outlive a kill -9 of the daemon: the same fills replayed after the restart are
// recognised, and the position is what the first delivery made it.
TEST(IngestDaemonTest, RedeliveredFillsAfterAKillAreIgnored) {
  const test::ScratchSegment seg("ikill");
  TempDir dir;
  std::string lines;
  for (int i = 1; i <= 100; ++i) {
    lines += R"({"op":"fill","ns":"spot","account":"w1","instrument":"ETH","side":")" +
             std::string(i % 3 ? "buy" : "sell") + R"(","qty":"0.5","price":")" +
             std::to_string(3000 + i) + R"(","trade_id":"E)" + std::to_string(i) + "\"}\n";
  }
  const std::string file = dir.file("fills.jsonl", lines);
  std::string qty, realized;
  {
    Daemon d(seg_flag(seg) + " --capacity 1000 --no-redis");
    ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
    auto first = feed(seg, "--via socket replay " + file);
    ASSERT_EQ(first.code, 0) << first.out;
    EXPECT_NE(first.out.find("applied 100"), std::string::npos) << first.out;
    Reader r = Reader::open(seg.name());
    qty = field(r, "spot", "w1", "ETH", "qty");
    realized = field(r, "spot", "w1", "ETH", "realized_pnl");
    d.signal(SIGKILL);
    d.wait();
  }
  Daemon d(seg_flag(seg) + " --capacity 1000 --no-redis");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  EXPECT_NE(d.log().find("100 restored"), std::string::npos) << d.log();
  auto second = feed(seg, "--via socket replay " + file);
  EXPECT_EQ(second.code, 0) << second.out;
  EXPECT_NE(second.out.find("duplicate 100"), std::string::npos) << second.out;
  Reader r = Reader::open(seg.name());
  EXPECT_EQ(field(r, "spot", "w1", "ETH", "qty"), qty);
  EXPECT_EQ(field(r, "spot", "w1", "ETH", "realized_pnl"), realized);
}

// The Redis stream source across two kill -9s of the daemon while a service keeps publishing:
// every entry is applied exactly once. The commands carry no seq and no trade id (an add of 1,
// a buy of 1), the kind a replay would count twice; the publisher knows what each position must
// end at.
TEST(IngestDaemonTest, AStreamSurvivesKillsOfTheDaemonWithEveryEntryAppliedOnce) {
  const test::ScratchSegment seg("istream");
  test::RedisServer srv;
  constexpr int kEntries = 30'000, kAccounts = 40;
  const std::string args = seg_flag(seg) +
                           " --capacity 10000 --redis-host 127.0.0.1 --redis-port " +
                           std::to_string(srv.port()) + " --stream positions:in";
  std::atomic<int> published{0};
  std::thread publisher([&] {
    auto c = srv.client();
    for (int i = 0; i < kEntries; ++i) {
      const std::string account = "0x" + std::to_string(1000 + i % kAccounts);
      const std::string line =
          (i / kAccounts) % 4 == 0
              ? R"({"op":"fill","ns":"spot","account":")" + account +
                    R"(","instrument":"ETH","side":"buy","qty":"1","price":")" +
                    std::to_string(3000 + i % 7) + "\"}"
              : R"({"op":"add","ns":"lending","account":")" + account +
                    R"(","instrument":"USDC","field":"blocks_unhealthy","by":1})";
      test::cmd(c, {"XADD", "positions:in", "*", "cmd", line});
      published = i + 1;
    }
  });
  // Kills when the readers see `at` changes applied (so that some are applied and not yet
  // acknowledged, and more are published all along).
  auto applied = [&] {
    Reader r = Reader::open(seg.name());
    std::int64_t n = 0;
    for (int a = 0; a < kAccounts; ++a) {
      const std::string acc = "0x" + std::to_string(1000 + a);
      const std::string b = field(r, "lending", acc.c_str(), "USDC", "blocks_unhealthy");
      const std::string q = field(r, "spot", acc.c_str(), "ETH", "qty");
      if (b != "absent") n += std::stoll(b);
      if (q != "absent") n += std::stoll(q.substr(0, q.find('.')));
    }
    return n;
  };
  std::string logs;
  for (const std::int64_t kill_at : {5'000, 15'000}) {
    Daemon d(args);
    ASSERT_TRUE(d.wait_for("stream positions:in")) << d.log();
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (applied() < kill_at && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    d.signal(SIGKILL);
    d.wait();
    logs += d.log();
  }
  Daemon d(args);
  ASSERT_TRUE(d.wait_for("stream positions:in")) << d.log();
  publisher.join();
  ASSERT_EQ(published.load(), kEntries);
  auto c = srv.client();
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (applied() < kEntries && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(200ms);  // anything applied twice would show by now
  EXPECT_EQ(applied(), kEntries) << logs << d.log();
  Reader r = Reader::open(seg.name());
  for (int a = 0; a < kAccounts; ++a) {
    const std::string acc = "0x" + std::to_string(1000 + a);
    int adds = 0, buys = 0;
    for (int i = a; i < kEntries; i += kAccounts) ((i / kAccounts) % 4 == 0 ? buys : adds) += 1;
    EXPECT_EQ(field(r, "lending", acc.c_str(), "USDC", "blocks_unhealthy"), std::to_string(adds))
        << acc;
    EXPECT_EQ(field(r, "spot", acc.c_str(), "ETH", "qty"),
              std::to_string(buys) + ".000000000000000000")
        << acc;
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string group = "poscache:" + std::string(host) + ":" + seg.name();
  auto pending = [&] {
    return test::cmd(c, {"XPENDING", "positions:in", group})->element[0]->integer;
  };
  while (pending() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(pending(), 0);
  EXPECT_NE((logs + d.log()).find("never acknowledged were read again"), std::string::npos)
      << "no kill left an entry pending: the test did not exercise a redelivery\n"
      << logs;
}

// The demo's market: every command it sends is accepted, and the books it leaves hang together
// (cost basis = |qty| x avg to within the average's rounding; unrealized = qty x mark - cost,
// to the last of 18 decimals: writer/ingest/fill_math.hpp, FI5).
TEST(IngestDaemonTest, TheSimulatedMarketLeavesConsistentBooks) {
  const test::ScratchSegment seg("isim");
  Daemon d(seg_flag(seg) + " --capacity 10000 --no-redis");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  auto sim = feed(seg, "simulate --seconds 1.5");  // through a producer ring
  ASSERT_EQ(sim.code, 0) << sim.out;
  EXPECT_NE(sim.out.find(", 0 refused"), std::string::npos) << sim.out;
  Reader r = Reader::open(seg.name());
  const NamespaceId spot = *r.namespace_id("spot");
  const NamespaceInfo& ns = r.namespace_info(spot);
  const std::size_t qty = *ns.field_index("qty"), avg = *ns.field_index("avg_price"),
                    cb = *ns.field_index("cost_basis"), mark = *ns.field_index("mark_price"),
                    upnl = *ns.field_index("unrealized_pnl");
  const int128 e18 = [] {
    int128 v = 1;
    for (int i = 0; i < 18; ++i) v *= 10;
    return v;
  }();
  int checked = 0;
  r.scan(ScanFilter{spot, std::nullopt, std::nullopt}, [&](const Position& p) {
    // The simulation's quantities have 3 decimals: q3 thousandths (keeps the products in 128 bits).
    const int128 q = p.values[qty] / (e18 / 1000), a = p.values[avg];
    EXPECT_EQ(q * (e18 / 1000), p.values[qty]);
    const int128 abs_q = q < 0 ? -q : q;
    // The average is the cost basis over |qty| rounded to 18 decimals, so |qty| x avg is the
    // cost basis to within |qty| units of the 18th decimal; unrealized is rounded once.
    auto near = [](int128 x, int128 y, int128 tol) { return (x > y ? x - y : y - x) <= tol; };
    EXPECT_TRUE(near(p.values[cb], abs_q * a / 1000, abs_q / 1000 + 2))
        << p.account_view() << " " << p.instrument_view();
    if (p.has(mark)) {
      const int128 s = q > 0 ? 1 : (q < 0 ? -1 : 0);
      EXPECT_TRUE(near(p.values[upnl], q * p.values[mark] / 1000 - s * p.values[cb], 1))
          << p.account_view() << " " << p.instrument_view();
    }
    ++checked;
  });
  EXPECT_GT(checked, 5);
  const NamespaceId lending = *r.namespace_id("lending");
  int borrowers = 0;
  r.scan(ScanFilter{lending, std::nullopt, std::nullopt}, [&](const Position&) { ++borrowers; });
  EXPECT_EQ(borrowers, 6);
}

// The writer killed with -9 while a producer keeps pushing: the producer's ring holds what was
// not applied, the producer re-attaches it to the restarted writer by itself, and every message
// arrives; nothing reported as applied before the kill is lost.
TEST(IngestDaemonTest, AProducerCarriesOnAcrossAWriterKill) {
  const test::ScratchSegment seg("iring");
  const std::string args = seg_flag(seg) + " --capacity 10000 --no-redis --busy-poll";
  auto d = std::make_unique<Daemon>(args);
  ASSERT_TRUE(d->wait_for("ingest socket")) << d->log();
  ProducerConfig pc;
  pc.segment = seg.name();
  pc.name = "gateway";
  auto p = Producer::open(pc);
  std::uint64_t last = 0;
  auto push = [&](int i) {
    auto u =
        p->make_update("spot", "acct" + std::to_string(i % 50), "SOL", {{"qty", std::to_string(i)}},
                       /*source_seq=*/static_cast<std::uint64_t>(i));
    const PushResult r = p->push(*u);
    ASSERT_EQ(r.status, PushStatus::ok);
    last = r.seq;
  };
  for (int i = 1; i <= 1000; ++i) push(i);
  ASSERT_EQ(p->wait_applied(last, 10s), WaitStatus::done);
  const std::uint64_t applied_before_kill = p->applied();
  d->signal(SIGKILL);
  d->wait();
  d.reset();
  for (int i = 1001; i <= 1500; ++i) push(i);  // the writer is down: they wait in the ring
  EXPECT_EQ(p->wait_applied(last, 100ms), WaitStatus::timeout);
  d = std::make_unique<Daemon>(args);
  ASSERT_TRUE(d->wait_for("ingest socket")) << d->log();
  ASSERT_EQ(p->wait_applied(last, 20s), WaitStatus::done) << d->log();
  EXPECT_GE(p->applied(), applied_before_kill);
  // (the watcher thread counts the re-attach just after the writer took the ring)
  EXPECT_TRUE(test::eventually([&] { return p->stats().reconnects >= 1; }, 5s));
  Reader r = Reader::open(seg.name());
  for (int a = 0; a < 50; ++a) {  // each account's last value: 1451..1500
    EXPECT_EQ(field(r, "spot", ("acct" + std::to_string(a)).c_str(), "SOL", "qty"),
              std::to_string(1450 + (a == 0 ? 50 : a)) + ".000000000000000000");
  }
  EXPECT_TRUE(d->wait_for("'gateway'")) << d->log();
  // The inspector lists the producer with its counts.
  const auto inspect =
      test::run_cli(std::string(POSCACHE_INSPECT_BIN) + " -s " + seg.name() + " --json producers");
  ASSERT_EQ(inspect.code, 0) << inspect.out;
  EXPECT_NE(inspect.out.find("\"name\":\"gateway\",\"state\":\"attached\""), std::string::npos)
      << inspect.out;
  EXPECT_NE(inspect.out.find("\"applied\":1500"), std::string::npos) << inspect.out;
}

// Batches (a buy and its cash leg, each with a trade id) pushed while the writer is killed with
// -9 in the middle of draining a full ring, and restarted, four times: the batches the kill cut
// (applied, not yet acknowledged) are applied again from the ring by the next writer, their legs
// answered duplicate, so every batch ends applied exactly once.
TEST(IngestDaemonTest, BatchesCutByAWriterKillEndCompleteAndExactlyOnce) {
  const test::ScratchSegment seg("ibatchkill");
  const std::string args = seg_flag(seg) + " --capacity 10000 --no-redis --busy-poll";
  auto d = std::make_unique<Daemon>(args);
  ASSERT_TRUE(d->wait_for("ingest socket")) << d->log();
  ProducerConfig pc;
  pc.segment = seg.name();
  pc.name = "trader";
  auto p = Producer::open(pc);
  constexpr int kBatches = 8000;
  std::atomic<std::uint64_t> last{0};
  std::atomic<bool> failed{false};
  std::thread trader([&] {
    for (int i = 1; i <= kBatches && !failed; ++i) {
      const std::string id = "K-" + std::to_string(i);
      p->begin_batch();
      p->fill("spot", "k1", "SOL", Side::buy, "1", "100", "0", id);
      p->fill("spot", "k1", "USDC", Side::sell, "100", "1", "0", id + "-cash");
      const PushResult r = p->end_batch(30s);
      if (r.status != PushStatus::ok) failed = true;
      last = r.seq;
    }
  });
  // Four times: let the ring fill while the writer is stopped, then kill it right after it
  // resumes, when it is in the middle of a drain of 256 messages, applied but not acknowledged
  // (about one kill in two lands there; with the batches' trade ids ignored, the cut batches'
  // legs were applied twice: 8 049 to 8 185 SOL for 8 000, in 3 runs of 3).
  for (int kill = 0; kill < 4; ++kill) {
    const std::uint64_t from = p->applied();
    const auto t0 = std::chrono::steady_clock::now();
    while (p->applied() < from + 300 && std::chrono::steady_clock::now() - t0 < 20s)
      std::this_thread::sleep_for(100us);
    d->signal(SIGSTOP);
    std::this_thread::sleep_for(100ms);
    d->signal(SIGCONT);
    std::this_thread::sleep_for(300us);
    d->signal(SIGKILL);
    d->wait();
    d.reset();
    d = std::make_unique<Daemon>(args);
    ASSERT_TRUE(d->wait_for("ingest socket")) << d->log();
  }
  trader.join();
  ASSERT_FALSE(failed) << p->error();
  ASSERT_EQ(p->wait_applied(last, 30s), WaitStatus::done) << d->log();
  EXPECT_EQ(p->stats().rejected, 0u) << p->stats().last_error;
  Reader r = Reader::open(seg.name());
  EXPECT_EQ(field(r, "spot", "k1", "SOL", "qty"), std::to_string(kBatches) + ".000000000000000000");
  EXPECT_EQ(field(r, "spot", "k1", "USDC", "qty"),
            "-" + std::to_string(kBatches * 100) + ".000000000000000000");
}

// Hosts that follow: a writer daemon, a `--follow` daemon and a `--standby` daemon on one Redis
// prefix, each with a segment of its own (one host standing in for three). The writer is
// killed with -9: the standby applies the stream, takes the lease, opens its socket and takes
// fills; the follower follows the new writer.
TEST(IngestDaemonTest, AStandbyTakesOverAKilledWriterAndAFollowerFollowsIt) {
  test::RedisServer srv;
  const test::ScratchSegment main_seg("dmain"), copy("dcopy"), standby("dstandby");
  const std::string redis = " --redis-host 127.0.0.1 --redis-port " + std::to_string(srv.port()) +
                            " -n spot:trading --capacity 4096";
  auto writer = std::make_unique<Daemon>(seg_flag(main_seg) + redis);
  ASSERT_TRUE(writer->wait_for("ingest socket")) << writer->log();
  ASSERT_EQ(feed(main_seg, "fill spot w1 SOL buy 10 100 --trade-id T1").code, 0);
  Daemon follower(seg_flag(copy) + redis + " --follow --stats-interval 200ms");
  Daemon stand(seg_flag(standby) + redis + " --standby");
  ASSERT_TRUE(follower.wait_for("tailing poscache:v1:@changes")) << follower.log();
  ASSERT_TRUE(stand.wait_for("tailing poscache:v1:@changes")) << stand.log();
  ASSERT_EQ(feed(main_seg, "fill spot w1 SOL buy 10 110 --trade-id T2").code, 0);
  ASSERT_TRUE(follower.wait_for("follow following")) << follower.log();
  {  // each follower has both fills (the writer acknowledges a ring message once Redis has it)
    Reader r = Reader::open(copy.name());
    for (int i = 0; i < 400 && field(r, "spot", "w1", "SOL", "qty") != "20.000000000000000000"; ++i)
      std::this_thread::sleep_for(10ms);
    EXPECT_EQ(field(r, "spot", "w1", "SOL", "avg_price"), "105.000000000000000000");
  }
  EXPECT_NE(feed(standby, "fill spot w1 SOL sell 1 1").code, 0);  // no socket while standing by
  writer.reset();                                                 // kill -9
  ASSERT_TRUE(stand.wait_for("standby: promoted: this process writes")) << stand.log();
  ASSERT_TRUE(stand.wait_for("ingest socket")) << stand.log();
  auto sell = feed(standby, "fill spot w1 SOL sell 5 120 --trade-id T3");
  EXPECT_EQ(sell.code, 0) << sell.out << stand.log();
  Reader s = Reader::open(standby.name());
  EXPECT_EQ(field(s, "spot", "w1", "SOL", "qty"), "15.000000000000000000");
  EXPECT_EQ(field(s, "spot", "w1", "SOL", "realized_pnl"), "75.000000000000000000");
  Reader r = Reader::open(copy.name());
  for (int i = 0; i < 400 && field(r, "spot", "w1", "SOL", "qty") != "15.000000000000000000"; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(field(r, "spot", "w1", "SOL", "realized_pnl"), "75.000000000000000000")
      << follower.log();
  const test::CliRun health =
      test::run_cli(std::string(POSCACHE_INSPECT_BIN) + " -s " + copy.name() + " health");
  EXPECT_EQ(health.code, 0) << health.out;
  EXPECT_NE(health.out.find("follower following"), std::string::npos) << health.out;
}

}  // namespace
