#include "writer/daemon/config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "shm/values/duration.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace poscache::daemon;
using namespace std::chrono_literals;

namespace {
std::string load_error(std::string_view toml) {
  DaemonConfig c;
  try {
    load_toml(toml, "test.toml", c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(DaemonConfigTest, LoadsSegmentNamespacesAndGenerator) {
  DaemonConfig c;
  load_toml(R"(
[segment]
name = "positions"
capacity = 5000
mode = "0660"

[[namespace]]
name = "spot"
preset = "trading"
stale_after = "5s"

[[namespace]]
name = "perp"
fields = [ { name = "qty", type = "decimal", scale = 8 }, { name = "block", type = "int64" } ]
expire_after = "10m"

[generator]
enabled = true
rate = 2000
accounts = 10
)",
            "test.toml", c);
  EXPECT_EQ(c.writer.segment, "positions");
  EXPECT_EQ(c.writer.capacity, 5000u);
  EXPECT_EQ(c.writer.mode, 0660u);
  ASSERT_EQ(c.writer.namespaces.size(), 2u);
  EXPECT_EQ(c.writer.namespaces[0].stale_after, 5s);
  EXPECT_EQ(c.writer.namespaces[1].fields[0].scale, 8);
  EXPECT_EQ(c.writer.namespaces[1].fields[1].type, FieldType::int64);
  EXPECT_EQ(c.writer.namespaces[1].expire_after, 10min);
  EXPECT_TRUE(c.generator.enabled);
  EXPECT_EQ(c.generator.accounts, 10u);
}

TEST(DaemonConfigTest, ErrorsNameTheFileLineAndKey) {
  EXPECT_NE(load_error("[segment]\ncapasity = 3\n")
                .find("test.toml:2:12: unknown key 'capasity' in [segment]"),
            std::string::npos)
      << load_error("[segment]\ncapasity = 3\n");
  EXPECT_NE(load_error("[segment]\ncapacity = -3\n").find("'capacity' must be an integer from 1"),
            std::string::npos);
  EXPECT_NE(load_error("[segment]\ncapacity = -3\n").find(", not -3"), std::string::npos);
  EXPECT_NE(load_error("[segment]\ncapacity = \"lots\"\n").find(", not 'lots'"), std::string::npos);
  // A duration as a bare number, and a Redis setting finer than its milliseconds.
  EXPECT_NE(load_error("[redis]\nflush_interval = 5\n").find("a duration string with a unit"),
            std::string::npos);
  EXPECT_NE(
      load_error("[redis]\nflush_interval = \"1500us\"\n").find("whole number of milliseconds"),
      std::string::npos);
  EXPECT_NE(load_error("[segment\n").find("test.toml:1:"), std::string::npos);
  EXPECT_NE(load_error("[[namespace]]\nname = \"x\"\npreset = \"futures\"\n")
                .find("unknown preset 'futures'"),
            std::string::npos);
  EXPECT_NE(
      load_error("[[namespace]]\nname = \"x\"\npreset = \"quote\"\nstale_after = \"5 parsecs\"\n")
          .find("stale_after"),
      std::string::npos);
  EXPECT_NE(
      load_error("[[namespace]]\nname = \"x\"\nfields = [ { name = \"a\", type = \"float\" } ]\n")
          .find("type 'float'"),
      std::string::npos);
  EXPECT_NE(load_error("[[namespace]]\nname = \"x\"\npreset = \"quote\"\n[[namespace]]\nname = "
                       "\"x\"\npreset = \"quote\"\n")
                .find("declared twice"),
            std::string::npos);
}

TEST(DaemonConfigTest, DurationsNeedAUnit) {
  EXPECT_EQ(*parse_duration("250ms"), 250ms);
  EXPECT_EQ(*parse_duration("0"), 0ns);
  EXPECT_EQ(*parse_duration("2h"), 2h);
  EXPECT_FALSE(parse_duration("5"));
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_FALSE(parse_duration("1d"));
  EXPECT_EQ(*parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(*parse_duration("0.25ms"), 250us);
  EXPECT_FALSE(parse_duration("1.5ns"));  // finer than a nanosecond
  EXPECT_FALSE(parse_duration("s"));
  EXPECT_FALSE(parse_duration("99999999999999999999s"));
  EXPECT_NE(parse_duration("5").error().find("write it as 5s"), std::string::npos);
  // The flags that took seconds before take a bare number still (values/duration.hpp).
  EXPECT_EQ(*detail::parse_duration("5", true), 5s);
  EXPECT_EQ(*detail::parse_duration("0.5", true), 500ms);
}

TEST(DaemonConfigTest, NamespaceFlagsAndEnvironment) {
  // Restores every variable this test touches, whatever happens in it.
  test::EnvGuard env_guard{{"POSCACHE_CAPACITY", std::nullopt}, {"POSCACHE_SEGMENT", std::nullopt}};
  auto n = parse_namespace_flag("marks:quote:500ms:5s");
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(n->stale_after, 500ms);
  EXPECT_EQ(n->expire_after, 5s);
  EXPECT_FALSE(parse_namespace_flag("marks"));
  EXPECT_FALSE(parse_namespace_flag("marks:quote:5s:1s"));  // stale after expiry
  DaemonConfig c;
  ::setenv("POSCACHE_SEGMENT", "from_env", 1);
  ::setenv("POSCACHE_CAPACITY", "77", 1);
  load_env(c);
  EXPECT_EQ(c.writer.segment, "from_env");
  EXPECT_EQ(c.writer.capacity, 77u);
  ::setenv("POSCACHE_CAPACITY", "lots", 1);
  EXPECT_THROW(load_env(c), Error);
  ::unsetenv("POSCACHE_SEGMENT");
  ::unsetenv("POSCACHE_CAPACITY");
}

TEST(DaemonConfigTest, RedisFromTheFileThenTheEnvironment) {
  // Restores every variable this test touches, whatever happens in it.
  test::EnvGuard env_guard{{"POSCACHE_REDIS", std::nullopt},
                           {"POSCACHE_REDIS_PORT", std::nullopt},
                           {"POSCACHE_REDIS_SOCKET", std::nullopt}};
  DaemonConfig c;
  EXPECT_FALSE(c.writer.redis);  // off unless configured
  load_toml(R"(
[redis]
host = "10.0.0.5"
port = 6380
db = 2
username = "poscache"
password = "s3cret"
prefix = "desk1:v1"
flush_interval = "2ms"
command_timeout = "500ms"
warm_start = false
)",
            "test.toml", c);
  ASSERT_TRUE(c.writer.redis);
  EXPECT_EQ(c.writer.redis->host, "10.0.0.5");
  EXPECT_EQ(c.writer.redis->port, 6380);
  EXPECT_EQ(c.writer.redis->db, 2);
  EXPECT_EQ(c.writer.redis->username, "poscache");
  EXPECT_EQ(c.writer.redis->password, "s3cret");
  EXPECT_EQ(c.writer.redis->prefix, "desk1:v1");
  EXPECT_EQ(c.writer.redis->flush_interval, 2ms);
  EXPECT_EQ(c.writer.redis->command_timeout, 500ms);
  EXPECT_FALSE(c.writer.redis->warm_start);

  ::setenv("POSCACHE_REDIS_PORT", "6390", 1);
  ::setenv("POSCACHE_REDIS_SOCKET", "/run/redis/redis.sock", 1);
  load_env(c);
  EXPECT_EQ(c.writer.redis->port, 6390);
  EXPECT_EQ(c.writer.redis->unix_socket, "/run/redis/redis.sock");
  ::setenv("POSCACHE_REDIS_PORT", "http", 1);
  try {
    load_env(c);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("POSCACHE_REDIS_PORT='http'"), std::string::npos)
        << e.what();
  }
  ::unsetenv("POSCACHE_REDIS_PORT");
  ::setenv("POSCACHE_REDIS", "off", 1);
  load_env(c);
  EXPECT_FALSE(c.writer.redis);
  ::unsetenv("POSCACHE_REDIS");
  ::unsetenv("POSCACHE_REDIS_SOCKET");

  EXPECT_NE(load_error("[redis]\nhots = \"x\"\n").find("hots"), std::string::npos);
  EXPECT_NE(load_error("[redis]\nport = 99999\n").find("port"), std::string::npos);
  EXPECT_NE(load_error("[redis]\nprefix = \"a b\"\n").find("redis prefix 'a b'"),
            std::string::npos);
  DaemonConfig off;
  load_toml("[redis]\nenabled = false\nhost = \"x\"\n", "test.toml", off);
  EXPECT_FALSE(off.writer.redis);
}

// systemd credentials (LoadCredential=, $CREDENTIALS_DIRECTORY): the Redis password over the
// file's and under the environment's, the admin token as the token file; a missing one skipped.
TEST(DaemonConfigTest, SecretsComeFromSystemdCredentials) {
  test::EnvGuard env_guard{{"CREDENTIALS_DIRECTORY", std::nullopt},
                           {"POSCACHE_REDIS_PASSWORD", std::nullopt}};
  char tmpl[] = "/tmp/poscache_creds_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::ofstream(dir + "/redis-password") << "from-credential\nignored second line\n";
  std::ofstream(dir + "/admin-token") << "token-from-credential\n";
  DaemonConfig c;
  load_toml("[redis]\nhost = \"localhost\"\npassword = \"from-file\"\n", "w.toml", c);
  ::setenv("CREDENTIALS_DIRECTORY", dir.c_str(), 1);
  load_env(c);
  EXPECT_EQ(c.writer.redis->password, "from-credential");
  EXPECT_EQ(c.http.admin_token_file, dir + "/admin-token");
  ::setenv("POSCACHE_REDIS_PASSWORD", "from-env", 1);
  load_env(c);
  EXPECT_EQ(c.writer.redis->password, "from-env");
  // No credential files: nothing changes.
  std::filesystem::remove(dir + "/redis-password");
  std::filesystem::remove(dir + "/admin-token");
  ::unsetenv("POSCACHE_REDIS_PASSWORD");
  DaemonConfig d;
  load_toml("[redis]\npassword = \"from-file\"\n", "w.toml", d);
  load_env(d);
  EXPECT_EQ(d.writer.redis->password, "from-file");
  EXPECT_EQ(d.http.admin_token_file, "");
  std::filesystem::remove_all(dir);
}

TEST(DaemonConfigTest, HugePagesFromTheFileAndTheEnvironmentAndBooleansAreStrict) {
  // Restores every variable this test touches, whatever happens in it.
  test::EnvGuard env_guard{{"POSCACHE_HUGE_PAGES", std::nullopt}};
  DaemonConfig c;
  EXPECT_TRUE(c.writer.huge_pages);  // on unless turned off
  load_toml("[segment]\nhuge_pages = false\n", "test.toml", c);
  EXPECT_FALSE(c.writer.huge_pages);
  EXPECT_TRUE(c.writer.change_ring);  // on unless turned off
  load_toml("[segment]\nchange_ring = false\n", "test.toml", c);
  EXPECT_FALSE(c.writer.change_ring);
  ::setenv("POSCACHE_HUGE_PAGES", "on", 1);
  load_env(c);
  EXPECT_TRUE(c.writer.huge_pages);
  ::setenv("POSCACHE_HUGE_PAGES", "maybe", 1);
  try {
    load_env(c);
    ADD_FAILURE() << "POSCACHE_HUGE_PAGES=maybe was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("POSCACHE_HUGE_PAGES='maybe' must be on or off"),
              std::string::npos)
        << e.what();
  }
  ::unsetenv("POSCACHE_HUGE_PAGES");
  // A boolean given as text or a number is an error naming the key, not a silent default.
  EXPECT_NE(load_error("[segment]\nhuge_pages = \"no\"\n")
                .find("test.toml:2:14: 'huge_pages' must be true or false"),
            std::string::npos)
      << load_error("[segment]\nhuge_pages = \"no\"\n");
  EXPECT_NE(load_error("[segment]\nrecreate = 1\n").find("'recreate' must be true or false"),
            std::string::npos);
  EXPECT_NE(load_error("[generator]\nenabled = \"yes\"\n").find("'enabled' must be true or false"),
            std::string::npos);
  EXPECT_NE(load_error("[redis]\nwarm_start = 0\n").find("'warm_start' must be true or false"),
            std::string::npos);
}

TEST(DaemonConfigTest, StreamsFromTheIngestTableAndTheirErrorsNamed) {
  DaemonConfig c;
  load_toml(R"(
[ingest]
streams = ["positions:in", "broker:fills"]
stream_group = "cache-a"
stream_start = "$"
stream_batch = 128
)",
            "test.toml", c);
  ASSERT_EQ(c.ingest.stream.streams.size(), 2u);
  EXPECT_EQ(c.ingest.stream.streams[1], "broker:fills");
  EXPECT_EQ(c.ingest.stream.group, "cache-a");
  EXPECT_EQ(c.ingest.stream.start, "$");
  EXPECT_EQ(c.ingest.stream.batch, 128u);
  EXPECT_EQ(c.ingest.stream.consumer, "writer");
  EXPECT_NE(load_error("[ingest]\nstreams = \"positions:in\"\n").find("array of stream names"),
            std::string::npos);
  EXPECT_NE(load_error("[ingest]\nstreams = [\"a\", \"a\"]\n").find("'a' is listed twice"),
            std::string::npos);
  EXPECT_NE(load_error("[ingest]\nstreams = [\"a\"]\nstream_start = \"now\"\n")
                .find("stream_start 'now'"),
            std::string::npos);
  EXPECT_NE(load_error("[ingest]\nstream_batch = 5000\n").find("'stream_batch'"),
            std::string::npos);
}

TEST(DaemonConfigTest, TextFieldsNeedALengthAndComeAfterTheNumbers) {
  DaemonConfig c;
  load_toml(
      "[[namespace]]\nname = \"orders\"\nfields = [\n  { name = \"qty\", type = \"decimal\", "
      "scale = 8 },\n  { name = \"status\", type = \"text\", length = 16 },\n]\n",
      "test.toml", c);
  ASSERT_EQ(c.writer.namespaces.size(), 1u);
  EXPECT_EQ(c.writer.namespaces[0].fields[1].type, FieldType::text);
  EXPECT_EQ(c.writer.namespaces[0].fields[1].length, 16);
  const std::string no_length = load_error(
      "[[namespace]]\nname = \"o\"\nfields = [{ name = \"status\", type = \"text\" }]\n");
  EXPECT_NE(no_length.find("text field 'status' needs a 'length' (1 to 128 bytes)"),
            std::string::npos)
      << no_length;
  EXPECT_NE(load_error("[[namespace]]\nname = \"o\"\nfields = [{ name = \"s\", type = \"text\", "
                       "length = 200 }]\n")
                .find("'length' must be an integer from 1"),
            std::string::npos);
  EXPECT_NE(
      load_error("[[namespace]]\nname = \"o\"\nfields = [{ name = \"s\", type = \"blob\" }]\n")
          .find("type 'blob' is not decimal, int64, timestamp or text"),
      std::string::npos);
}

TEST(DaemonConfigTest, TheRedisGuardAndItsLeaseAreSettingsNamedWhenWrong) {
  DaemonConfig c;
  load_toml(
      "[redis]\nguard = \"scripts\"\nlease_ttl = \"3s\"\nhost_name = \"trade-7\"\n"
      "positions_per_call = 1\n",
      "test.toml", c);
  ASSERT_TRUE(c.writer.redis);
  EXPECT_EQ(c.writer.redis->guard, RedisGuard::scripts);
  EXPECT_EQ(c.writer.redis->lease_ttl, std::chrono::seconds(3));
  EXPECT_EQ(c.writer.redis->host_name, "trade-7");
  EXPECT_EQ(c.writer.redis->positions_per_call, 1u);
  const std::string printed = print_config(c);
  EXPECT_NE(printed.find("\nguard = \"scripts\"\n"), std::string::npos) << printed;
  EXPECT_NE(printed.find("\nlease_ttl = \"3s\"\n"), std::string::npos) << printed;
  EXPECT_NE(load_error("[redis]\nguard = \"hope\"\n").find("guard 'hope' is not fence or scripts"),
            std::string::npos);
  EXPECT_NE(load_error("[redis]\nlease_ttl = \"100ms\"\n")
                .find("redis lease_ttl 100 ms is out of range: 300 ms to 1 h"),
            std::string::npos)
      << load_error("[redis]\nlease_ttl = \"100ms\"\n");
}

TEST(DaemonConfigTest, ANamespaceCanBeKeptOutOfRedis) {
  DaemonConfig c;
  load_toml(
      "[[namespace]]\nname = \"spot\"\npreset = \"trading\"\n[[namespace]]\nname = "
      "\"quotes\"\npreset = \"quote\"\nsync = \"none\"\n",
      "test.toml", c);
  EXPECT_EQ(c.unsynced_namespaces, std::vector<std::string>{"quotes"});
  EXPECT_NE(print_config(c).find(
                "name = \"quotes\"\nstale_after = \"1s\"\nexpire_after = \"1m\"\nsync = \"none\""),
            std::string::npos)
      << print_config(c);
  const std::string bad =
      load_error("[[namespace]]\nname = \"q\"\npreset = \"quote\"\nsync = \"sometimes\"\n");
  EXPECT_NE(bad.find("namespace 'q': sync 'sometimes' is not redis or none"), std::string::npos)
      << bad;
}

TEST(DaemonConfigTest, RefreshPoliciesFromTheFileAndTheFlagWithTheirErrorsNamed) {
  DaemonConfig c;
  load_toml(R"(
[[namespace]]
name = "alpaca"
preset = "trading"
stale_after = "30s"
refresh = "both"
refresh_timeout = "250ms"
refresh_retries = 3
refresh_max_in_flight = 16
refresh_ahead = 0.8
negative_ttl = "10s"
rebuild_on_empty = true

[[namespace]]
name = "spot"
preset = "trading"
)",
            "test.toml", c);
  ASSERT_EQ(c.refresh.size(), 1u);  // spot has no refresh keys: no read-through
  const refresh::RefreshPolicy& p = c.refresh.at("alpaca");
  EXPECT_TRUE(p.on_stale && p.on_miss);
  EXPECT_EQ(p.timeout, 250ms);
  EXPECT_EQ(p.retries, 3u);
  EXPECT_EQ(p.max_in_flight, 16u);
  EXPECT_DOUBLE_EQ(p.ahead, 0.8);
  EXPECT_EQ(p.negative_ttl, 10s);
  EXPECT_TRUE(p.rebuild_on_empty);
  // --print-config shows it and reads back the same.
  DaemonConfig again;
  load_toml(print_config(c), "printed", again);
  EXPECT_EQ(print_config(again), print_config(c));

  auto ns = [](const std::string& keys) {
    return "[[namespace]]\nname = \"a\"\npreset = \"trading\"\n" + keys;
  };
  EXPECT_NE(load_error(ns("refresh = \"sometimes\"\n")).find("stale, miss, both or none"),
            std::string::npos);
  EXPECT_NE(load_error(ns("refresh_timeout = \"0\"\n")).find("more than 0"), std::string::npos);
  EXPECT_NE(load_error(ns("refresh_retries = -1\n")).find("'refresh_retries'"), std::string::npos);
  EXPECT_NE(load_error(ns("refresh_ahead = 1.5\n")).find("fraction of stale_after"),
            std::string::npos);
  EXPECT_NE(load_error(ns("refresh_ahead = 0.5\n")).find("needs a stale_after"), std::string::npos);

  auto f = parse_refresh_flag("alpaca:stale:200ms:1");
  ASSERT_TRUE(f) << f.error();
  EXPECT_EQ(f->first, "alpaca");
  EXPECT_TRUE(f->second.on_stale && !f->second.on_miss);
  EXPECT_EQ(f->second.timeout, 200ms);
  EXPECT_EQ(f->second.retries, 1u);
  EXPECT_NE(parse_refresh_flag("alpaca").error().find("expected ns:on"), std::string::npos);
  EXPECT_NE(parse_refresh_flag("alpaca:often").error().find("'often'"), std::string::npos);
  EXPECT_NE(parse_refresh_flag("alpaca:miss:soon").error().find("timeout"), std::string::npos);
  EXPECT_NE(parse_refresh_flag("alpaca:miss:1s:x").error().find("retries"), std::string::npos);
}

TEST(DaemonConfigTest, TheHttpLimitsFromTheFileWithTheirErrorsNamed) {
  DaemonConfig c;
  load_toml(
      "[http]\nrequest_timeout = \"1500ms\"\nmax_connections = 100\nmax_connections_per_peer = 4\n"
      "admin_max_failures = 0\nadmin_failure_window = \"5m\"\n",
      "test.toml", c);
  EXPECT_EQ(c.http.request_timeout, 1500ms);
  EXPECT_EQ(c.http.max_connections, 100);
  EXPECT_EQ(c.http.max_connections_per_peer, 4);
  EXPECT_EQ(c.http.admin_max_failures, 0);
  EXPECT_EQ(c.http.admin_failure_window, 5min);
  EXPECT_NE(load_error("[http]\nrequest_timeout = \"0s\"\n")
                .find("'request_timeout' must be a duration above 0"),
            std::string::npos);
  EXPECT_NE(load_error("[http]\nmax_connections = 8\n")
                .find("'max_connections' must be an integer from 16 to 1048576"),
            std::string::npos)
      << load_error("[http]\nmax_connections = 8\n");
  EXPECT_NE(load_error("[http]\nmax_connections_per_peer = 0\n").find("max_connections_per_peer"),
            std::string::npos);
}
