// Backup and restore without Redis (docs/operations.md): `poscache-inspect --json dump` writes an
// upsert per position, `poscache-feed replay` applies it to another writer, and the restored
// writer's dump is the same, line for line: every field of every kind (decimals of each scale,
// int64, timestamps, text), and each producer's seq.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <vector>

#include "daemon/daemon_util.hpp"

using namespace poscache;
using poscache::test::Daemon;
using poscache::test::seg_flag;
using poscache::test::TempDir;

namespace backup {  // named: the test files share one unity translation unit

test::CliRun run(const std::string& bin, const test::ScratchSegment& seg, const std::string& args) {
  return test::run_cli(bin + " -s " + seg.name() + " " + args);
}

TEST(BackupTest, ADumpReplayedIntoAnotherWriterGivesTheSameDump) {
  const test::ScratchSegment a("bkup_a"), b("bkup_b");
  TempDir dir;
  const std::string feed = POSCACHE_FEED_BIN, inspect = POSCACHE_INSPECT_BIN;
  {
    Daemon d(seg_flag(a) + " --no-redis --capacity 1000");
    ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
    const std::string commands =
        R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL","side":"buy","qty":"10","price":"100.25","fee":"0.05","trade_id":"T1"})"
        "\n"
        R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL","side":"sell","qty":"4","price":"101.5","trade_id":"T2"})"
        "\n"
        R"({"op":"mark","ns":"spot","instrument":"SOL","price":"102"})"
        "\n"
        R"({"op":"upsert","ns":"lending","account":"0xab","instrument":"USDC","fields":{"collateral_amount":"1500000000000000000000","debt_amount":"900000000000000000000","liquidation_threshold":"0.825","last_update_block":19000123,"collateral_asset":"WETH","debt_asset":"USDC"},"seq":77})"
        "\n"
        R"({"op":"add","ns":"lending","account":"0xab","instrument":"USDC","field":"blocks_unhealthy","by":3})"
        "\n"
        R"({"op":"upsert","ns":"quotes","account":"desk","instrument":"BTC-USD","fields":{"bid":"64000.5","ask":"64001","last":"64000.75"}})"
        "\n";
    const auto r = run(feed, a, "replay " + dir.file("commands.jsonl", commands));
    ASSERT_EQ(r.code, 0) << r.out;
    const auto dump = run(inspect, a, "--json dump");
    ASSERT_EQ(dump.code, 0) << dump.out;
    std::ofstream(dir.path() + "/backup.jsonl") << dump.out;
    ASSERT_EQ(std::count(dump.out.begin(), dump.out.end(), '\n'), 3) << dump.out;
    EXPECT_NE(dump.out.find(R"("op":"upsert")"), std::string::npos) << dump.out;
    EXPECT_NE(dump.out.find(R"("seq":77)"), std::string::npos) << dump.out;
  }
  Daemon d(seg_flag(b) + " --no-redis --capacity 1000");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  const auto restore = run(feed, b, "replay " + dir.path() + "/backup.jsonl");
  ASSERT_EQ(restore.code, 0) << restore.out;
  std::ifstream in(dir.path() + "/backup.jsonl");
  const std::string backup{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_EQ(run(inspect, b, "--json dump").out, backup);
  // Replayed again: the positions with a seq are refused as stale, the others set again.
  const auto again = run(feed, b, "replay " + dir.path() + "/backup.jsonl");
  EXPECT_EQ(run(inspect, b, "--json dump").out, backup) << again.out;
}

// `poscache-writer --remove`: every file of a segment goes, and none while its writer lives.
TEST(SegmentRemovalTest, EveryFileGoesAndNoneWhileTheWriterLives) {
  const test::ScratchSegment seg("bkup_rm");
  const std::string writer = POSCACHE_WRITER_BIN, base = "/dev/shm/" + seg.name();
  const std::vector<std::string> files = {base, base + ".lock", base + ".readers", base + ".trades",
                                          base + ".sock"};
  auto exists = [](const std::string& p) { return ::access(p.c_str(), F_OK) == 0; };
  Daemon d(seg_flag(seg) + " --no-redis --capacity 1000");
  ASSERT_TRUE(d.wait_for("ingest socket")) << d.log();
  for (const auto& f : files) ASSERT_TRUE(exists(f)) << f;
  const auto refused = test::run_cli(writer + " -s " + seg.name() + " --remove");
  EXPECT_EQ(refused.code, 1) << refused.out;
  EXPECT_NE(refused.out.find("already has a writer: pid " + std::to_string(d.pid())),
            std::string::npos)
      << refused.out;
  for (const auto& f : files) EXPECT_TRUE(exists(f)) << f << " removed under a live writer";
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(), 0);
  const auto removed = test::run_cli(writer + " -s " + seg.name() + " --remove");
  EXPECT_EQ(removed.code, 0) << removed.out;
  for (const auto& f : files) {
    EXPECT_FALSE(exists(f)) << f;
    if (f != base + ".sock") {  // the writer removes its socket itself when it stops
      EXPECT_NE(removed.out.find("removed " + f + "\n"), std::string::npos) << removed.out;
    }
  }
  const auto again = test::run_cli(writer + " -s " + seg.name() + " --remove");
  EXPECT_EQ(again.code, 0);
  EXPECT_NE(again.out.find("no files"), std::string::npos) << again.out;
}

}  // namespace backup
