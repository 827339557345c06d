// poscache-writer --http: the API behind the HTTP front in the real daemon. promtool (Debian's
// prometheus package) checks a live scrape; /health follows the writer and Redis; a corpus of
// bad requests gets 4xx answers and leaves the daemon serving.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "daemon/daemon_util.hpp"
#include "http/http_client.hpp"
#include "redis_server.hpp"

using namespace poscache;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// The port a daemon started with --http 127.0.0.1:0 bound, from its log.
int http_port(const test::Daemon& d) {
  const std::string marker = "http: listening on 127.0.0.1:";
  if (!d.wait_for(marker)) return 0;
  const std::string log = d.log();
  return std::atoi(log.c_str() + log.find(marker) + marker.size());
}

std::string token_file(const test::TempDir& dir, const std::string& token, mode_t mode) {
  const std::string p = dir.file("admin.token", token + "\n");
  ::chmod(p.c_str(), mode);
  return p;
}

constexpr const char* kToken = "0123456789abcdef0123";

// A config file: HTTP on a free port, admin on with kToken in a token file of `mode`.
std::string http_config(const test::TempDir& dir, mode_t mode = 0600) {
  return dir.file("w.toml", "[http]\nlisten = \"127.0.0.1:0\"\nadmin_token_file = \"" +
                                token_file(dir, kToken, mode) + "\"\n");
}

}  // namespace

TEST(HttpDaemonTest, PromtoolAcceptsALiveScrapeAndTheApiAnswers) {
  if (::system("command -v promtool >/dev/null 2>&1") != 0)
    POSCACHE_SKIP_OR_FAIL("promtool not installed (Debian package prometheus)");
  test::ScratchSegment seg("httpd");
  test::TempDir dir;
  const std::string token = kToken;
  const std::string cfg = http_config(dir);
  test::Daemon d(test::seg_flag(seg) + " -c " + cfg +
                 " --capacity 4096 --generate --rate 20000 --accounts 50 --instruments 10 "
                 "--no-redis");
  const int port = http_port(d);
  ASSERT_GT(port, 0) << d.log();
  EXPECT_NE(d.log().find("admin on, token from"), std::string::npos);
  // Wait until the loop's first counts are published (every 50 ms).
  test::HttpReply m;
  for (int i = 0; i < 400; ++i) {
    m = test::http_get(port, "/metrics");
    if (m.body.find("poscache_apply_seconds_count 0\n") == std::string::npos &&
        m.body.find("poscache_positions 0\n") == std::string::npos)
      break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(m.status, 200) << m.head;
  EXPECT_EQ(m.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string scrape = dir.file("scrape.txt", m.body);
  const test::CliRun check = test::run_cli("promtool check metrics < " + scrape + " 2>&1");
  EXPECT_EQ(check.code, 0) << check.out;
  EXPECT_EQ(check.out, "") << "promtool lint: " << check.out;  // no lint complaint either
  for (const char* want :
       {"poscache_writer_up 1\n", "poscache_namespace_positions{namespace=\"spot\"} ",
        "poscache_ingest_commands_total{source=\"generator\",outcome=\"applied\"} ",
        "poscache_apply_seconds_bucket{le=\"+Inf\"} "}) {
    EXPECT_NE(m.body.find(want), std::string::npos) << want << "\n" << m.body;
  }
  const test::HttpReply h = test::http_get(port, "/health");
  EXPECT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(json::parse(h.body)["status"], "ok");
  const json stats = json::parse(test::http_get(port, "/v1/stats").body);
  EXPECT_GT(stats["live"].get<int>(), 0);
  EXPECT_EQ(stats["namespaces"].size(), 3u);

  // The admin path end to end.
  const test::HttpReply denied = test::http_post(port, "/v1/invalidate", R"({"all":true})");
  EXPECT_EQ(denied.status, 401);
  EXPECT_TRUE(d.wait_for("refused (401): no Authorization header"));
  const test::HttpReply done = test::http_post(port, "/v1/invalidate", R"({"ns":"spot"})", token);
  EXPECT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(json::parse(done.body)["status"], "applied");
  EXPECT_TRUE(d.wait_for("POST /v1/invalidate from 127.0.0.1:"));
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(), 0) << d.log();
}

TEST(HttpDaemonTest, HealthIsDegradedWhileRedisIsDown) {
  test::ScratchSegment seg("httpr");
  const int dead_port = test::free_port();  // nothing listens there
  test::Daemon d(test::seg_flag(seg) + " --capacity 1024 --http 127.0.0.1:0 --redis-port " +
                 std::to_string(dead_port) + " --cold-start");
  const int port = http_port(d);
  ASSERT_GT(port, 0) << d.log();
  test::HttpReply h;
  for (int i = 0; i < 500; ++i) {  // the sync thread's first attempt fails within a second
    h = test::http_get(port, "/health");
    if (h.status == 503) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(h.status, 503) << h.body;
  const json j = json::parse(h.body);
  EXPECT_EQ(j["status"], "degraded");
  EXPECT_EQ(j["alive"], true);
  EXPECT_NE(j["redis"]["state"], "up");
  EXPECT_NE(test::http_get(port, "/metrics").body.find("poscache_redis_state{state=\"up\"} 0"),
            std::string::npos);
}

TEST(HttpDaemonTest, BadRequestsGetFourHundredsAndTheDaemonServesOn) {
  test::ScratchSegment seg("httpb");
  test::TempDir dir;
  const std::string token = kToken;
  const std::string cfg = http_config(dir);
  test::Daemon d(test::seg_flag(seg) + " -c " + cfg + " --capacity 1024 --no-redis");
  const int port = http_port(d);
  ASSERT_GT(port, 0) << d.log();
  const std::string auth = "Authorization: Bearer " + token + "\r\n";
  struct Case {
    const char* what;
    std::string raw;
    bool half_close = false;
    bool json_error = true;  // our handlers answer with JSON; civetweb's own parser errors need not
  } cases[] = {
      {"not HTTP", "GARBAGE\r\n\r\n", false, false},
      {"binary junk", std::string("\x00\xff\x01\r\n\r\n", 7), false, false},
      {"headers past 16 KiB",
       "GET /health HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n", false, false},
      {"an unknown path", "GET /etc/passwd HTTP/1.1\r\n\r\n"},
      {"a dot-dot path", "GET /../../../etc/passwd HTTP/1.1\r\n\r\n"},
      {"an encoded NUL in a key", "GET /v1/positions/spot/w%001/SOL HTTP/1.1\r\n\r\n"},
      {"a 2 KiB path",
       "GET /v1/positions/spot/" + std::string(2000, 'a') + "/SOL HTTP/1.1\r\n\r\n"},
      {"a wrong method", "DELETE /metrics HTTP/1.1\r\n\r\n"},
      {"an unknown method", "BREW /health HTTP/1.1\r\n\r\n", false, false},
      {"a 1 GB body announced",
       "POST /v1/invalidate HTTP/1.1\r\nContent-Length: 1000000000\r\n" + auth + "\r\n{"},
      {"a chunked body", "POST /v1/invalidate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n" + auth +
                             "\r\n5\r\n{\"a\":\r\n0\r\n\r\n"},
      {"a body cut short",
       "POST /v1/invalidate HTTP/1.1\r\nContent-Length: 100\r\n" + auth + "\r\n{\"all\":", true},
      {"JSON that is not JSON",
       "POST /v1/invalidate HTTP/1.1\r\nContent-Length: 9\r\n" + auth + "\r\n{\"all\":tr"},
      {"a JSON string",
       "POST /v1/invalidate HTTP/1.1\r\nContent-Length: 5\r\n" + auth + "\r\n\"all\""},
      {"invalid UTF-8", "POST /v1/invalidate HTTP/1.1\r\nContent-Length: 16\r\n" + auth +
                            "\r\n{\"account\":\"\xff\xfe\"}"},
      {"no token", "POST /v1/invalidate HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"all\":true}"},
  };
  for (const auto& c : cases) {
    const auto t0 = std::chrono::steady_clock::now();
    const test::HttpReply r = test::http_raw(port, c.raw, c.half_close);
    std::fprintf(stderr, "%s: %d in %lld ms\n", c.what, r.status,
                 static_cast<long long>((std::chrono::steady_clock::now() - t0) / 1ms));
    if (r.status == 0) {
      // the front may close a connection it cannot parse without a reply; that is acceptable
      // only for garbage that is not HTTP.
      EXPECT_FALSE(c.json_error) << c.what << ": no reply";
      continue;
    }
    EXPECT_GE(r.status, 400) << c.what << ": " << r.head << "\n" << r.body;
    EXPECT_LT(r.status, 500) << c.what << ": " << r.head << "\n" << r.body;
    if (c.json_error) {
      try {
        EXPECT_TRUE(json::parse(r.body).contains("error")) << c.what << ": " << r.body;
      } catch (const json::exception&) {
        ADD_FAILURE() << c.what << ": not JSON: " << r.body;
      }
    }
  }
  // Many at once: the two workers and the queue take them all.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 25; ++i) ok += test::http_get(port, "/v1/stats").status == 200;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_EQ(test::http_get(port, "/health").status, 200);
  EXPECT_EQ(::kill(d.pid(), 0), 0) << "the daemon is gone:\n" << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(), 0) << d.log();
}

// Issue 30: idle and trickling connections cost the daemon no worker, a peer over its cap is
// refused, the request deadline reclaims the flood, and the probes are answered throughout; HEAD,
// OPTIONS, %00 and wrong tokens over the wire. No timing is asserted: every probe must answer.
TEST(HttpDaemonTest, ASlowClientFloodLeavesTheProbesAnsweredAndTheCapsHold) {
  test::ScratchSegment seg("httpf");
  test::TempDir dir;
  const std::string cfg =
      dir.file("w.toml",
               "[http]\nlisten = \"127.0.0.1:0\"\nrequest_timeout = \"2s\"\n"
               "max_connections_per_peer = 16\nadmin_max_failures = 3\nadmin_token_file = \"" +
                   token_file(dir, kToken, 0600) + "\"\n");
  test::Daemon d(test::seg_flag(seg) + " -c " + cfg + " --capacity 1024 --no-redis");
  const int port = http_port(d);
  ASSERT_GT(port, 0) << d.log();
  std::vector<int> held;
  for (int i = 0; i < 400; ++i)
    held.push_back(test::connect_from(port, "127.0.3." + std::to_string(1 + i / 16), 10));
  for (int i = 0; i < 20; ++i)
    held.push_back(test::connect_from(port, "127.0.4." + std::to_string(1 + i), 10));
  for (int round = 0; round < 3; ++round) {  // the tricklers: a header byte each, now and then
    for (std::size_t i = 400; i < held.size(); ++i) (void)::send(held[i], "G", 1, MSG_NOSIGNAL);
    std::this_thread::sleep_for(100ms);
  }
  int refused = 0;
  for (int i = 0; i < 20; ++i) {  // one peer past its cap of 16
    const int fd = test::connect_from(port, "127.0.5.1", 10);
    if (i < 16) {
      held.push_back(fd);
      continue;
    }
    const test::HttpReply r = test::read_reply(fd);
    refused += r.status == 503 && r.body.find("max_connections_per_peer 16") != std::string::npos;
  }
  EXPECT_EQ(refused, 4);
  int ok = 0;
  for (int i = 0; i < 20; ++i) {
    ok += test::http_get(port, "/health").status == 200;
    ok += test::http_get(port, "/metrics").status == 200;
  }
  EXPECT_EQ(ok, 40) << "every probe answered while 436 connections are held";
  // The deadline reclaims them all: every held connection is closed by the daemon.
  int closed = 0;
  for (const int fd : held) {
    char c;
    closed += fd >= 0 && ::recv(fd, &c, 1, 0) >= 0;  // 408 or end of stream, within SO_RCVTIMEO
    ::close(fd);
  }
  EXPECT_EQ(closed, 436);
  const std::string metrics = test::http_get(port, "/metrics").body;
  EXPECT_NE(metrics.find("poscache_http_connections_refused_total{limit=\"peer\"} 4\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("poscache_http_request_timeouts_total 436\n"), std::string::npos);

  const test::HttpReply head = test::http_get(port, "/health", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
  EXPECT_NE(head.header("Content-Length"), "");
  EXPECT_EQ(test::http_get(port, "/v1/stats", "OPTIONS").header("Allow"), "GET, HEAD, OPTIONS");
  const test::HttpReply nul = test::http_get(port, "/v1/positions/spot/w%001/SOL");
  EXPECT_EQ(nul.status, 400);
  EXPECT_NE(nul.body.find("encoded NUL (%00)"), std::string::npos) << nul.body;

  // Wrong tokens: 3 refusals, then 429 with Retry-After; logged once, then one line with a count.
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(test::http_post(port, "/v1/invalidate", R"({"all":true})", "wrong-token").status,
              401);
  const test::HttpReply limited =
      test::http_post(port, "/v1/invalidate", R"({"all":true})", kToken);
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_NE(limited.header("Retry-After"), "");
  EXPECT_TRUE(d.wait_for("127.0.0.1: 2 more refused (401) and 1 rate-limited (429)", 60s))
      << d.log();
  const std::string log = d.log();
  std::size_t lines = 0;
  for (std::size_t at = log.find("POST /v1/invalidate from 127.0.0.1"); at != std::string::npos;
       at = log.find("POST /v1/invalidate from 127.0.0.1", at + 1))
    ++lines;
  EXPECT_EQ(lines, 2u) << log;
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait(), 0) << d.log();
}

TEST(HttpDaemonTest, AnAdminTokenFileOthersCanReadIsRefusedAtStart) {
  test::ScratchSegment seg("httpt");
  test::TempDir dir;
  const std::string cfg = http_config(dir, 0644);
  test::Daemon d(test::seg_flag(seg) + " -c " + cfg + " --capacity 1024 --no-redis");
  EXPECT_EQ(d.wait(), 1);
  EXPECT_NE(d.log().find("has mode 0644: group and others must have no access (chmod 600)"),
            std::string::npos)
      << d.log();
  const test::CliRun bad = test::writer_cli(test::seg_flag(seg) + " --http 127.0.0.1:http");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("--http: http listen address '127.0.0.1:http'"), std::string::npos)
      << bad.out;
}
