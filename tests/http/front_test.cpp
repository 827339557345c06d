// The HTTP front (writer/http/front.hpp) behind a real Server on a loopback port: floods of idle
// and trickling connections leave the probes answered, the caps per peer and in all hold, the
// request deadline closes a trickler, and HEAD, OPTIONS and %00 are answered as documented.
// Many peers are one host: every address of 127/8 is loopback. No timing is asserted: a probe
// must be answered, however long it takes.
#include "writer/http/front.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <thread>

#include "http/http_client.hpp"
#include "test_util.hpp"
#include "writer/http/server.hpp"

using namespace poscache;
using namespace poscache::http;
using namespace std::chrono_literals;

namespace {

class FrontTest : public ::testing::Test {
 protected:
  test::ScratchSegment seg{"front"};
  WriterConfig cfg = test::small_config(seg.name(), 64);
  std::unique_ptr<Writer> w = Writer::open(cfg);
  Reader reader = [this] {
    ReaderOptions o;
    o.statistics = false;
    return Reader::open(seg.name(), o);
  }();
  std::atomic<bool> done{false};
  std::thread beat{[this] {  // a live writer: /health answers 200
    while (!done.load()) {
      w->tick();
      std::this_thread::sleep_for(5ms);
    }
  }};
  std::vector<int> held;  // connections the test keeps open
  std::unique_ptr<Server> server;

  void start(FrontLimits limits, int threads = 2) {
    ServerConfig sc;
    sc.listen = "127.0.0.1:0";
    sc.threads = threads;
    sc.limits = limits;
    auto api = std::make_unique<Api>(reader, cfg.namespaces, ApiConfig{}, nullptr, nullptr,
                                     [](bool, const std::string&) {});
    server = std::make_unique<Server>(sc, std::move(api), nullptr);
  }
  int hold(const std::string& source) {
    const int fd = test::connect_from(server->port(), source, 5);
    if (fd >= 0) held.push_back(fd);
    return fd;
  }
  std::string metric(const std::string& name) {
    const std::string body = test::http_get(server->port(), "/metrics").body;
    const std::size_t at = body.find("\n" + name + " ");
    return at == std::string::npos
               ? "?"
               : body.substr(at + name.size() + 2, body.find('\n', at + 1) - at - name.size() - 2);
  }
  void TearDown() override {
    for (const int fd : held) ::close(fd);
    server.reset();
    done = true;
    beat.join();
  }
};

// An open connection the server has closed: recv sees the end (or a reset) without waiting.
bool closed_by_server(int fd) {
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

}  // namespace

TEST_F(FrontTest, IdleAndTricklingFloodsLeaveHealthAndMetricsAnswering) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2048) GTEST_SKIP() << "RLIMIT_NOFILE " << rl.rlim_cur << " < 2048";
  FrontLimits limits;
  limits.max_connections = 512;  // the flood is larger: the oldest unfinished make room
  limits.request_timeout = 60s;  // the flood stays, as long as the test runs
  start(limits, 1);              // one worker: any connection that held it would stop the API
  for (int i = 0; i < 600; ++i) ASSERT_GE(hold("127.0.1." + std::to_string(1 + i / 30)), 0);
  std::vector<int> tricklers;
  for (int i = 0; i < 20; ++i) tricklers.push_back(hold("127.0.2." + std::to_string(1 + i)));
  std::thread trickle([&] {
    for (int round = 0; round < 10 && !done; ++round) {
      for (const int fd : tricklers) (void)::send(fd, "G", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::sleep_for(20ms);
    }
  });
  int ok = 0;
  for (int i = 0; i < 20; ++i) {
    ok += test::http_get(server->port(), "/health").status == 200;
    ok += test::http_get(server->port(), "/metrics").status == 200;
  }
  trickle.join();
  EXPECT_EQ(ok, 40) << "every probe is answered";
  EXPECT_GE(std::stoi(metric("poscache_http_connections_evicted_total")), 620 - 512)
      << "the oldest unfinished connections made room";
}

TEST_F(FrontTest, APeerAtItsCapIsRefusedAndOthersAreServed) {
  FrontLimits limits;
  limits.max_per_peer = 8;
  start(limits);
  for (int i = 0; i < 8; ++i) ASSERT_GE(hold("127.0.0.2"), 0);
  // The ninth from that peer: a 503 at once, before it sends anything.
  const int ninth = test::connect_from(server->port(), "127.0.0.2", 10);
  ASSERT_GE(ninth, 0);
  const test::HttpReply refused = test::read_reply(ninth);
  EXPECT_EQ(refused.status, 503) << refused.head;
  EXPECT_EQ(refused.header("Retry-After"), "1");
  EXPECT_NE(refused.body.find("too many connections from 127.0.0.2 (max_connections_per_peer 8)"),
            std::string::npos)
      << refused.body;
  // Another peer is served; and a held connection of the capped one still gets its answer.
  EXPECT_EQ(
      test::http_raw(server->port(), "GET /health HTTP/1.1\r\n\r\n", false, "127.0.0.3").status,
      200);
  ASSERT_TRUE(test::send_all(held.back(), "GET /health HTTP/1.1\r\n\r\n"));
  EXPECT_EQ(test::read_reply(held.back()).status, 200);
  held.pop_back();  // read_reply closed it
  // One fewer held: the peer may connect again.
  EXPECT_EQ(
      test::http_raw(server->port(), "GET /health HTTP/1.1\r\n\r\n", false, "127.0.0.2").status,
      200);
  EXPECT_EQ(metric("poscache_http_connections_refused_total{limit=\"peer\"}"), "1");
}

TEST_F(FrontTest, TheRequestDeadlineClosesATrickler) {
  FrontLimits limits;
  limits.request_timeout = 300ms;
  start(limits);
  const int fd = hold("127.0.0.4");
  ASSERT_GE(fd, 0);
  // A head that would take 20 s at a byte per 100 ms: the server ends it long before.
  const std::string head = "GET /health HTTP/1.1\r\nX-Slow: " + std::string(200, 'a') + "\r\n\r\n";
  std::size_t sent = 0;
  while (sent < head.size() && !closed_by_server(fd)) {
    if (::send(fd, head.data() + sent, 1, MSG_NOSIGNAL) != 1) break;
    ++sent;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_LT(sent, head.size()) << "the trickler was never closed";
  held.pop_back();
  const test::HttpReply r = test::read_reply(fd);
  EXPECT_EQ(r.status, 408) << r.head;
  EXPECT_NE(r.body.find("the request was not complete within 300 ms"), std::string::npos) << r.body;
  EXPECT_EQ(metric("poscache_http_request_timeouts_total"), "1");
}

TEST_F(FrontTest, HeadIsGetWithoutItsBodyAndOptionsNamesTheMethods) {
  start(FrontLimits{});
  const int port = server->port();
  for (const char* path : {"/health", "/metrics", "/v1/stats", "/v1/positions/spot/w1/SOL"}) {
    const test::HttpReply get = test::http_get(port, path);
    const test::HttpReply head = test::http_get(port, path, "HEAD");
    EXPECT_EQ(head.status, get.status) << path;
    EXPECT_EQ(head.body, "") << path;
    EXPECT_EQ(head.header("Content-Type"), get.header("Content-Type")) << path;
    if (std::string(path) != "/metrics" && std::string(path) != "/v1/stats" &&
        std::string(path) != "/health") {  // these change between two calls
      EXPECT_EQ(head.header("Content-Length"), get.header("Content-Length")) << path;
    }
    EXPECT_NE(head.header("Content-Length"), "") << path;
  }
  const test::HttpReply options = test::http_get(port, "/v1/invalidate", "OPTIONS");
  EXPECT_EQ(options.status, 204) << options.head;
  EXPECT_EQ(options.header("Allow"), "POST, OPTIONS");
  EXPECT_EQ(test::http_get(port, "/health", "OPTIONS").header("Allow"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(test::http_get(port, "*", "OPTIONS").status, 204);
  const test::HttpReply post = test::http_post(port, "/metrics", "{}");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("Allow"), "GET, HEAD, OPTIONS");
}

TEST_F(FrontTest, AnEncodedNulInAPathIsRefusedByName) {
  start(FrontLimits{});
  for (const char* path : {"/v1/positions/spot/w%001/SOL", "/v1/accounts/w1%00", "/health%00"}) {
    const test::HttpReply r = test::http_get(server->port(), path);
    EXPECT_EQ(r.status, 400) << path;
    EXPECT_NE(r.body.find("encoded NUL (%00)"), std::string::npos) << path << ": " << r.body;
  }
  const test::HttpReply bad = test::http_get(server->port(), "/v1/accounts/w%zz");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("bad escape '%zz'"), std::string::npos) << bad.body;
}

TEST_F(FrontTest, RefusedRequestsAreAnsweredAndReadInFull) {
  start(FrontLimits{});
  const int port = server->port();
  // A body over the limit, sent whole: the 413 still reaches the client (the front drains what
  // it did not read before closing, instead of resetting the connection).
  const test::HttpReply big =
      test::http_raw(port, "POST /v1/invalidate HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" +
                               std::string(100000, 'x'));
  EXPECT_EQ(big.status, 413) << big.head;
  EXPECT_EQ(test::http_raw(port, "POST /v1/invalidate HTTP/1.1\r\n\r\n").status, 411);
  EXPECT_EQ(
      test::http_raw(port, "GET /health HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n")
          .status,
      431);
  EXPECT_EQ(test::http_raw(port, "GET /health HTTP/2\r\n\r\n").status, 505);
  EXPECT_EQ(test::http_raw(port, "GET /health HTTP/1.1\r\n", true).status, 400);
}

TEST_F(FrontTest, AClientThatExpectsContinueIsToldToSendItsBody) {
  start(FrontLimits{});
  const int fd = test::connect_from(server->port(), "127.0.0.1", 10);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(test::send_all(fd,
                             "POST /v1/invalidate HTTP/1.1\r\nContent-Length: 12\r\n"
                             "Expect: 100-continue\r\n\r\n"));
  char buf[64] = {};
  const ssize_t n = ::recv(fd, buf, sizeof buf - 1, 0);  // before any body is sent
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0),
            "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(test::send_all(fd, "{\"all\":true}"));
  EXPECT_EQ(test::read_reply(fd).status, 403);  // the API's answer: no admin token here
}
