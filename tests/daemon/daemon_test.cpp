// poscache-writer as a user runs it: settings from a file, the environment and flags (flags win),
// every flag docs/cli.md names, exit codes, clear errors for bad values, a clean SIGTERM stop and a
// SIGTERM during start-up. The binary runs as a child process; Redis, where needed, is a real
// redis-server (tests/redis_server.hpp).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "daemon/daemon_util.hpp"
#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "redis/redis_util.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace std::chrono_literals;

using poscache::test::Daemon;
using poscache::test::seg_flag;
using poscache::test::setting;
using poscache::test::settings;
using poscache::test::TempDir;
using poscache::test::writer_cli;

// ---- settings: file < environment < flags, for every setting docs/configuration.md lists

struct Precedence {
  const char* name;       // what the row is about
  const char* toml;       // the file's line, in its table
  const char* env;        // NAME=value
  const char* flag;       // the flag
  const char* key;        // --print-config key
  const char* from_file;  // printed value with the file only
  const char* from_env;   // ... with the environment too
  const char* from_flag;  // ... with the flag too
};

class DaemonSettingsTest : public ::testing::TestWithParam<Precedence> {};

TEST_P(DaemonSettingsTest, TheFileThenTheEnvironmentThenTheFlagDecide) {
  const Precedence& p = GetParam();
  TempDir dir;
  const std::string file = dir.file("w.toml", std::string(p.toml) + "\n");
  const std::string base = "--config " + file + " --print-config";
  const test::CliRun f = writer_cli(base);
  ASSERT_EQ(f.code, 0) << f.out;
  EXPECT_EQ(setting(f, p.key), p.from_file) << p.name << ", file only";
  const test::CliRun e = writer_cli(base, p.env);
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_EQ(setting(e, p.key), p.from_env) << p.name << ", file and " << p.env;
  const test::CliRun x = writer_cli(base + " " + p.flag, p.env);
  ASSERT_EQ(x.code, 0) << x.out;
  EXPECT_EQ(setting(x, p.key), p.from_flag) << p.name << ", file, " << p.env << " and " << p.flag;
}

INSTANTIATE_TEST_SUITE_P(
    EverySetting, DaemonSettingsTest,
    ::testing::Values(
        Precedence{"Segment", "[segment]\nname = \"from_file\"", "POSCACHE_SEGMENT=from_env",
                   "-s from_flag", "segment.name", "\"from_file\"", "\"from_env\"",
                   "\"from_flag\""},
        Precedence{"Capacity", "[segment]\ncapacity = 111", "POSCACHE_CAPACITY=222",
                   "--capacity 333", "segment.capacity", "111", "222", "333"},
        Precedence{"Mode", "[segment]\nmode = \"0600\"", "POSCACHE_MODE=0660", "--mode 0644",
                   "segment.mode", "\"0600\"", "\"0660\"", "\"0644\""},
        Precedence{"HugePages", "[segment]\nhuge_pages = false", "POSCACHE_HUGE_PAGES=on",
                   "--no-huge-pages", "segment.huge_pages", "false", "true", "false"},
        Precedence{"LogLevel", "[daemon]\nlog_level = \"warn\"", "POSCACHE_LOG_LEVEL=error",
                   "--log-level debug", "daemon.log_level", "\"warn\"", "\"error\"", "\"debug\""},
        Precedence{"RedisHost", "[redis]\nhost = \"h1\"", "POSCACHE_REDIS_HOST=h2",
                   "--redis-host h3", "redis.host", "\"h1\"", "\"h2\"", "\"h3\""},
        Precedence{"RedisPort", "[redis]\nport = 1001", "POSCACHE_REDIS_PORT=1002",
                   "--redis-port 1003", "redis.port", "1001", "1002", "1003"},
        Precedence{"RedisSocket", "[redis]\nunix_socket = \"/f.sock\"",
                   "POSCACHE_REDIS_SOCKET=/e.sock", "--redis-socket /x.sock", "redis.unix_socket",
                   "\"/f.sock\"", "\"/e.sock\"", "\"/x.sock\""},
        Precedence{"RedisDb", "[redis]\ndb = 1", "POSCACHE_REDIS_DB=2", "--redis-db 3", "redis.db",
                   "1", "2", "3"},
        Precedence{"RedisUser", "[redis]\nusername = \"u1\"", "POSCACHE_REDIS_USERNAME=u2",
                   "--redis-user u3", "redis.username", "\"u1\"", "\"u2\"", "\"u3\""},
        Precedence{"RedisPrefix", "[redis]\nprefix = \"p1\"", "POSCACHE_REDIS_PREFIX=p2",
                   "--redis-prefix p3", "redis.prefix", "\"p1\"", "\"p2\"", "\"p3\""},
        Precedence{"RedisFlushInterval", "[redis]\nflush_interval = \"7ms\"",
                   "POSCACHE_REDIS_PREFIX=p", "--redis-flush-interval 9ms", "redis.flush_interval",
                   "\"7ms\"", "\"7ms\"", "\"9ms\""},
        Precedence{"RedisOffInTheEnvironmentThenOnByAFlag", "[redis]\nhost = \"h1\"",
                   "POSCACHE_REDIS=off", "--redis-host h3", "redis.enabled", "true", "false",
                   "true"},
        Precedence{"NoRedisBeatsTheEnvironment", "[redis]\nhost = \"h1\"", "POSCACHE_REDIS_HOST=h2",
                   "--no-redis", "redis.enabled", "true", "true", "false"},
        Precedence{"ColdStart", "[redis]\nwarm_start = true", "POSCACHE_REDIS_HOST=h2",
                   "--cold-start", "redis.warm_start", "true", "true", "false"},
        Precedence{"Generator", "[generator]\nenabled = true", "POSCACHE_SEGMENT=x",
                   "--no-generate", "generator.enabled", "true", "true", "false"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(DaemonConfigFileTest, NoSyncKeepsANamespaceOutOfRedisAndMustNameOne) {
  const std::string demo = "--config " + std::string(POSCACHE_SOURCE_DIR) + "/config/demo.toml ";
  const test::CliRun r = writer_cli(demo + "--no-sync quotes --print-config");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("name = \"quotes\"\nstale_after = \"1s\"\nexpire_after = \"30s\"\n"
                       "sync = \"none\""),
            std::string::npos)
      << r.out;
  const test::CliRun bad = writer_cli(demo + "--no-sync futures --print-config");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("sync = none names namespace 'futures', which is not configured"),
            std::string::npos)
      << bad.out;
}

TEST(DaemonConfigFileTest, TheDemoConfigParses) {
  const test::CliRun r = writer_cli("--config " + std::string(POSCACHE_SOURCE_DIR) +
                                    "/config/demo.toml --print-config");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(setting(r, "segment.name"), "\"poscache_demo\"");
  EXPECT_EQ(settings(r).count("namespace"), 4u) << r.out;
  EXPECT_NE(r.out.find("name = \"alpaca\"\nstale_after = \"2s\"\nexpire_after = \"0\"\n"
                       "sync = \"redis\"\nrefresh = \"both\"\nrefresh_timeout = \"1s\"\n"
                       "refresh_retries = 2\nrefresh_max_in_flight = 256\nrefresh_ahead = 0\n"
                       "negative_ttl = \"5s\"\nrebuild_on_empty = false\nfields = [\n"
                       "  { name = \"qty\", type = \"decimal\", scale = 9 },\n"
                       "  { name = \"avg_price\", type = \"decimal\", scale = 6 },\n"
                       "  { name = \"as_of\", type = \"timestamp\" },\n"
                       "  { name = \"order_status\", type = \"text\", length = 16 },\n]"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(setting(r, "generator.rate"), "50000");
}

TEST(DaemonConfigFileTest, TheRedisPasswordIsNeverPrinted) {
  TempDir dir;
  const test::CliRun r = writer_cli(
      "--config " + dir.file("w.toml", "[redis]\npassword = \"hunter2\"\n") + " --print-config");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("# password = (set: not printed)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("hunter2"), std::string::npos) << r.out;
}

// --print-config is a file the writer takes back: the same settings come out of it, for the
// demo's file with every source on (streams, HTTP, Redis, the generator) and for flags alone.
TEST(DaemonConfigFileTest, PrintConfigRoundTrips) {
  TempDir dir;
  for (const std::string& args :
       {"--config " + std::string(POSCACHE_SOURCE_DIR) +
            "/config/demo.toml --redis-host localhost --http 127.0.0.1:9108 --stream in "
            "--generate",
        std::string("-s flags_only --capacity 5000 -n spot:trading --no-redis")}) {
    const test::CliRun first = writer_cli(args + " --print-config");
    ASSERT_EQ(first.code, 0) << first.out;
    const test::CliRun again =
        writer_cli("--config " + dir.file("printed.toml", first.out) + " --print-config");
    ASSERT_EQ(again.code, 0) << again.out << "\n--- the printed file:\n" << first.out;
    EXPECT_EQ(again.out, first.out) << args;
  }
}

// Every bad value is exit 2 with a message naming where it came from and what was wrong; nothing
// is created.
TEST(DaemonConfigFileTest, ABadValueIsExitTwoNamingTheSettingAndTheValue) {
  TempDir dir;
  const test::ScratchSegment seg("dbad");
  struct Case {
    std::string args, env, expect;
  };
  const std::vector<Case> cases = {
      {"--config " + dir.file("a.toml", "[segment]\ncapacity = \"lots\"\n"), "",
       "a.toml:2:12: 'capacity' must be an integer"},
      {"--config " + dir.file("b.toml", "[segment]\ncolour = 1\n"), "",
       "unknown key 'colour' in [segment]"},
      {"--config " + dir.file("c.toml", "[redis]\nport = 70000\n"), "",
       "'port' must be an integer from 1 to 65535"},
      {"--config " + dir.file("d.toml", "[segment\n"), "", "d.toml:1:"},
      {"--config " + dir.path() + "/missing.toml", "", "cannot read config file"},
      {"", "POSCACHE_CAPACITY=0", "POSCACHE_CAPACITY='0' is not a positive integer"},
      {"", "POSCACHE_REDIS=maybe", "POSCACHE_REDIS='maybe' must be on or off"},
      {"", "POSCACHE_HUGE_PAGES=2", "POSCACHE_HUGE_PAGES='2' must be on or off"},
      {"--mode 0400", "", "segment mode 0400 must grant its owner read and write"},
      {"--mode 999", "", "--mode '999' must be octal"},
      {"--log-level chatty", "", "log level 'chatty' is not"},
      {"--capacity 0", "", "capacity 0 is out of range"},
      {"-n spot:futures", "", "--namespace 'spot:futures'"},
      {"--run-for 5", "", "--run-for: duration '5' has no unit: write it as 5s"},
      {"--redis-flush-interval soon", "", "--redis-flush-interval: duration 'soon'"},
      {"--redis-port 0", "", "port"},
      {"--frobnicate", "", "frobnicate"},
      {"--capacity many", "", "capacity"},
      {"--stream positions:in --no-redis", "", "streams (positions:in) need a Redis server"},
      {"--stream a --stream a", "", "ingest stream 'a' is listed twice"},
  };
  for (const Case& c : cases) {
    const test::CliRun r = writer_cli(seg_flag(seg) + " " + c.args, c.env);
    EXPECT_EQ(r.code, 2) << c.args << " " << c.env << ": " << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.args << " " << c.env << ": " << r.out;
    EXPECT_NE(::access(("/dev/shm/" + seg.name()).c_str(), F_OK), 0)
        << c.args << ": a segment was created";
  }
}

// ---- running it ---------------------------------------------------------------------------

TEST(DaemonRunTest, ItCreatesTheSegmentWithTheModeAsked) {
  const test::ScratchSegment seg("dmode");
  const test::CliRun r =
      writer_cli(seg_flag(seg) + " --capacity 100 --mode 0600 --run-for 100ms --no-redis");
  ASSERT_EQ(r.code, 0) << r.out;
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(r.out.find("mode 600"), std::string::npos) << r.out;
  EXPECT_EQ(Reader::open(seg.name()).stats().state, "closed");
}

// A restart re-attaches and keeps the generation; --fresh starts a new one; a segment that does
// not match the settings is refused (exit 1, "expected … found …") unless --recreate.
TEST(DaemonRunTest, RestartFreshAndRecreate) {
  const test::ScratchSegment seg("dlife");
  const std::string base = seg_flag(seg) + " --run-for 100ms --no-redis -n spot:trading";
  ASSERT_EQ(writer_cli(base + " --capacity 100").code, 0);
  const std::uint64_t g1 = Reader::open(seg.name()).generation();
  test::CliRun r = writer_cli(base + " --capacity 100");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("re-attached"), std::string::npos) << r.out;
  EXPECT_EQ(Reader::open(seg.name()).generation(), g1);
  r = writer_cli(base + " --capacity 100 --fresh");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::uint64_t g2 = Reader::open(seg.name()).generation();
  EXPECT_NE(g2, g1);
  r = writer_cli(base + " --capacity 200");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("expected"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("found"), std::string::npos) << r.out;
  EXPECT_EQ(Reader::open(seg.name()).generation(), g2);  // untouched
  r = writer_cli(base + " --capacity 200 --recreate");
  ASSERT_EQ(r.code, 0) << r.out;
  Reader after = Reader::open(seg.name());
  EXPECT_EQ(after.stats().capacity, 200u);
  EXPECT_NE(after.generation(), g2);
}

// A second daemon on the same segment is refused, exit 1, naming the first; SIGTERM stops the
// first cleanly: exit 0, the segment closed and readable.
TEST(DaemonRunTest, ASecondWriterIsRefusedAndSigtermStopsCleanly) {
  const test::ScratchSegment seg("dtwo");
  Daemon first(seg_flag(seg) +
               " --capacity 1000 --no-redis --generate --rate 2000 --accounts 10 --instruments 5");
  ASSERT_TRUE(first.wait_for("generator:")) << first.log();
  const test::CliRun second =
      writer_cli(seg_flag(seg) + " --capacity 1000 --no-redis --run-for 100ms");
  EXPECT_EQ(second.code, 1) << second.out;
  EXPECT_NE(second.out.find("already has a writer: pid " + std::to_string(first.pid())),
            std::string::npos)
      << second.out;
  std::this_thread::sleep_for(200ms);
  first.signal(SIGTERM);
  EXPECT_EQ(first.wait(), 0) << first.log();
  EXPECT_NE(first.log().find("closed segment '" + seg.name() + "' cleanly"), std::string::npos)
      << first.log();
  Reader r = Reader::open(seg.name());
  EXPECT_EQ(r.stats().state, "closed");
  EXPECT_GT(r.stats().live, 0u);
}

// The example from the field: a stray file under the segment's name is not overwritten.
TEST(DaemonRunTest, AStrayFileUnderTheNameIsRefusedAndLeftAsItWas) {
  const test::ScratchSegment seg("dstray");
  const std::string path = "/dev/shm/" + seg.name();
  std::ofstream(path) << "hi\n";
  const test::CliRun r = writer_cli(seg_flag(seg) + " --capacity 100 --no-redis --run-for 1s");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("is not a poscache segment (3 bytes"), std::string::npos) << r.out;
  std::ifstream f(path);
  const std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "hi\n");
}

// ---- with Redis -----------------------------------------------------------------------------

namespace {
// Fills Redis with `n` positions under `prefix` through a writer of its own, then closes it.
void fill_redis(const test::RedisServer& srv, const std::string& prefix, int n) {
  const test::ScratchSegment seg("dfill");
  WriterConfig c = test::small_config(seg.name(), static_cast<std::uint64_t>(n));
  c.namespaces = {preset_trading("spot")};
  c.redis = srv.config(prefix);
  c.log = [](LogLevel, std::string_view) {};
  auto w = Writer::open(c);
  std::vector<Update> batch;
  std::vector<ApplyResult> res(1024);
  for (int i = 0; i < n; ++i) {
    batch.push_back(test::must(
        w->make_update("spot", "acct" + std::to_string(i / 10), "I" + std::to_string(i % 10),
                       {{"qty", std::to_string(i)}, {"avg_price", "101.5"}})));
    if (batch.size() == 1024) {
      w->upsert_batch(batch, res);
      batch.clear();
    }
  }
  w->upsert_batch(batch, res);
  ASSERT_TRUE(w->sync_redis(120s));
  w->close();
}
}  // namespace

TEST(DaemonRedisTest, AWarmStartLoadsWhatRedisHoldsAndColdStartAndNoRedisDoNot) {
  test::RedisServer srv;
  fill_redis(srv, "poscache:v1", 50);
  const std::string redis = " --redis-host 127.0.0.1 --redis-port " + std::to_string(srv.port()) +
                            " -n spot:trading --capacity 100 --run-for 200ms";
  const test::ScratchSegment warm("dwarm"), cold("dcold"), none("dnone");
  test::CliRun r = writer_cli(seg_flag(warm) + redis);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("warm start: loaded 50 positions"), std::string::npos) << r.out;
  EXPECT_EQ(Reader::open(warm.name()).stats().live, 50u);
  r = writer_cli(seg_flag(cold) + redis + " --cold-start");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("warm start"), std::string::npos) << r.out;
  EXPECT_EQ(Reader::open(cold.name()).stats().live, 0u);
  // --no-redis beats Redis settings from the environment: no connection, nothing loaded.
  r = writer_cli(seg_flag(none) + " -n spot:trading --capacity 100 --run-for 200ms --no-redis",
                 "POSCACHE_REDIS_HOST=127.0.0.1 POSCACHE_REDIS_PORT=" + std::to_string(srv.port()));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("redis: off"), std::string::npos) << r.out;
  EXPECT_EQ(Reader::open(none.name()).stats().live, 0u);
  // The password: the environment's beats the file's (the server takes only the right one).
  test::RedisServer locked({"--requirepass", "right"});
  TempDir dir;
  const std::string file =
      dir.file("w.toml", "[redis]\npassword = \"wrong\"\nwarm_start = false\n");
  const test::ScratchSegment pw("dpw");
  const std::string args = seg_flag(pw) + " --config " + file + " --redis-port " +
                           std::to_string(locked.port()) +
                           " -n spot:trading --capacity 100 --run-for 300ms --log-level debug";
  r = writer_cli(args);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("WRONGPASS"), std::string::npos) << r.out;
  r = writer_cli(args, "POSCACHE_REDIS_PASSWORD=right");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("WRONGPASS"), std::string::npos) << r.out;
}

// A SIGTERM that arrives while the daemon loads Redis (a warm start) ends it once the segment is
// consistent and ready: exit 0, the segment closed with every position loaded.
TEST(DaemonRedisTest, SigtermDuringAWarmStartStopsOnceTheSegmentIsReady) {
  test::RedisServer srv;
  constexpr int kPositions = 100'000;
  fill_redis(srv, "poscache:v1", kPositions);
  const test::ScratchSegment seg("dterm");
  Daemon d(seg_flag(seg) + " --redis-host 127.0.0.1 --redis-port " + std::to_string(srv.port()) +
           " -n spot:trading --capacity 200000");
  ASSERT_TRUE(d.wait_for("warm start: loading positions")) << d.log();
  d.signal(SIGTERM);
  ASSERT_EQ(d.log().find("warm start: loaded"), std::string::npos)
      << "the load ended before the signal: nothing proven";
  EXPECT_EQ(d.wait(), 0) << d.log();
  const std::string log = d.log();
  EXPECT_NE(log.find("warm start: loaded " + std::to_string(kPositions) + " positions"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("closed segment"), std::string::npos) << log;
  Reader r = Reader::open(seg.name());
  EXPECT_EQ(r.stats().state, "closed");
  EXPECT_EQ(r.stats().live, static_cast<std::uint64_t>(kPositions));
}

// Under systemd (Type=notify): the daemon says READY=1 once it serves, feeds the watchdog from
// its loop, and says STOPPING=1 on SIGTERM. A datagram socket of the test's stands in for
// systemd's NOTIFY_SOCKET. SIGHUP applies the log level and names what needs a restart.
TEST(DaemonRunTest, ItNotifiesSystemdFeedsTheWatchdogAndReloadsOnSighup) {
  const test::ScratchSegment seg("dnotify");
  TempDir dir;
  const std::string sock_path = dir.path() + "/notify";
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{0, 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  // Collects what the daemon sent until `want` arrived (or 30 s passed).
  std::string received;
  auto wait_message = [&](const std::string& want) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (received.find(want) == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      char buf[1024];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) received.append(buf, static_cast<std::size_t>(n)).append("\n");
    }
    return received.find(want) != std::string::npos;
  };
  const std::string conf = dir.file("w.toml", "[daemon]\nlog_level = \"info\"\n");
  Daemon d("--config " + conf + " " + seg_flag(seg) + " --capacity 1000 --no-redis",
           {{"NOTIFY_SOCKET", sock_path}, {"WATCHDOG_USEC", "300000"}});
  ASSERT_TRUE(wait_message("READY=1")) << received << d.log();
  EXPECT_NE(received.find("STATUS=serving segment " + seg.name()), std::string::npos) << received;
  received.clear();
  ASSERT_TRUE(wait_message("WATCHDOG=1")) << d.log();
  received.clear();
  ASSERT_TRUE(wait_message("WATCHDOG=1")) << "the watchdog was fed once only\n" << d.log();
  EXPECT_NE(d.log().find("systemd watchdog: fed every 100 ms"), std::string::npos) << d.log();

  // A reload: the log level applies, the capacity waits for a restart and says so.
  (void)dir.file("w.toml", "[segment]\ncapacity = 5000\n[daemon]\nlog_level = \"debug\"\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(d.wait_for("reload (SIGHUP): applied")) << d.log();
  EXPECT_NE(d.log().find("applied: daemon.log_level = \"debug\""), std::string::npos) << d.log();
  EXPECT_EQ(d.log().find("applied: nothing"), std::string::npos) << d.log();
  // (--capacity on the command line wins over the file: nothing to report for it.)
  (void)dir.file("w.toml", "[daemon]\nlog_level = \"debug\"\n[ingest]\ntrade_window = 2000\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(d.wait_for("ignored until the next start: ingest.trade_window (1048576 -> 2000)"))
      << d.log();
  // A bad file: an error naming it, and nothing changed.
  (void)dir.file("w.toml", "[daemon]\nlog_level = \"chatty\"\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(d.wait_for("log level 'chatty' is not")) << d.log();
  EXPECT_NE(d.log().find("nothing changed"), std::string::npos) << d.log();

  received.clear();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(), 0) << d.log();
  EXPECT_TRUE(wait_message("STOPPING=1")) << received;
  ::close(fd);
}

// A Redis password rotated with a reload: the new one goes into the config file, SIGHUP hands it
// to the sync thread, and once Redis changes it and drops the connection, the writer logs in
// again with the new one.
TEST(DaemonRedisTest, ARotatedPasswordIsTakenOnSighupForTheNextConnection) {
  test::RedisServer srv({"--requirepass", "old-secret"});
  TempDir dir;
  auto conf = [&](const char* pw) {
    return dir.file("w.toml",
                    "[redis]\nhost = \"127.0.0.1\"\nport = " + std::to_string(srv.port()) +
                        "\npassword = \"" + pw + "\"\nwarm_start = false\n");
  };
  const std::string file = conf("old-secret");
  const test::ScratchSegment seg("dpwrot");
  Daemon d(seg_flag(seg) + " --config " + file +
           " -n spot:trading --capacity 1000 --generate --rate 500 --accounts 5 --instruments 3");
  ASSERT_TRUE(d.wait_for("connected, syncing")) << d.log();
  (void)conf("new-secret");
  d.signal(SIGHUP);
  ASSERT_TRUE(d.wait_for("applied: redis.password (from the next connection)")) << d.log();
  auto admin = srv.client("old-secret");
  test::cmd(admin, {"CONFIG", "SET", "requirepass", "new-secret"});
  test::cmd(admin, {"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  ASSERT_TRUE(d.wait_for("connected again")) << d.log();
  EXPECT_EQ(d.log().find("WRONGPASS"), std::string::npos) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(), 0) << d.log();
}
