// The HTTP API's handlers, called directly (no sockets): every route, every error, the admin
// path through a real apply-loop stand-in, and the metrics text. The daemon test
// (tests/daemon/http_daemon_test.cpp) runs them behind the epoll front with promtool and bad
// requests.
#include "writer/http/api.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "poscache/format.hpp"
#include "shm/accounts.hpp"
#include "shm/clock.hpp"
#include "test_util.hpp"
#include "writer/http/metrics.hpp"

using namespace poscache;
using namespace poscache::http;
using namespace std::chrono_literals;
using nlohmann::json;
using test::must;

namespace {

constexpr const char* kToken = "s3cret-token-0123456789";

class ApiTest : public ::testing::Test {
 protected:
  test::ScratchSegment seg{"http"};
  WriterConfig cfg = test::small_config(seg.name(), 64);
  std::unique_ptr<Writer> w = Writer::open(cfg);
  Reader r = [this] {  // the API's reader, uncounted as the daemon's is
    ReaderOptions o;
    o.statistics = false;
    return Reader::open(seg.name(), o);
  }();
  LoopBoard board;
  AdminQueue admin;
  std::mutex log_m;
  std::vector<std::string> logged;
  std::unique_ptr<Api> api = make_api(kToken);

  std::unique_ptr<Api> make_api(const std::string& token,
                                std::chrono::milliseconds admin_timeout = 5000ms) {
    ApiConfig ac;
    ac.admin_token = token;
    ac.admin_timeout = admin_timeout;
    return std::make_unique<Api>(r, cfg.namespaces, ac, &board, &admin,
                                 [this](bool warn, const std::string& m) {
                                   std::lock_guard lock(log_m);
                                   logged.push_back((warn ? "WARN " : "INFO ") + m);
                                 });
  }
  HttpResponse call(const std::string& method, const std::string& path,
                    const std::string& body = "", const std::string& auth = "") {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.body = body;
    req.authorization = auth;
    req.remote = "10.1.2.3:5555";
    return api->handle(req);
  }
  static json body_of(const HttpResponse& resp) { return json::parse(resp.body); }
  void put(const char* ns, const std::string& acc, const std::string& ins,
           std::initializer_list<std::pair<std::string_view, std::string_view>> f) {
    ASSERT_EQ(w->upsert(must(w->make_update(ns, acc, ins, f))).status, ApplyStatus::inserted);
  }
  std::string all_logged() {
    std::lock_guard lock(log_m);
    std::string s;
    for (const auto& l : logged) s += l + "\n";
    return s;
  }
};

}  // namespace

TEST_F(ApiTest, APositionIsServedWithItsFieldsAsExactDecimalStrings) {
  put("spot", "w1", "SOL", {{"qty", "12.5"}, {"avg_price", "141.123456789"}});
  // 10^12 tokens in 18-decimal base units plus one: beyond a double's 53 bits.
  put("moonwell", "0xabc", "USDC",
      {{"collateral_amount", "1000000000000000000000000000001"},
       {"last_update_block", "19000001"}});
  put("marks", "w1", "SOL/USDC", {{"bid", "141.25"}});
  const HttpResponse resp = call("GET", "/v1/positions/spot/w1/SOL");
  ASSERT_EQ(resp.status, 200) << resp.body;
  EXPECT_EQ(resp.content_type, "application/json");
  const json j = body_of(resp);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["namespace"], "spot");
  EXPECT_EQ(j["account"], "w1");
  EXPECT_EQ(j["instrument"], "SOL");
  Position p;
  ASSERT_EQ(r.get("spot", "w1", "SOL", p), ReadStatus::ok);
  const NamespaceInfo& spot = r.namespace_info(p.ns);
  EXPECT_EQ(j["fields"]["qty"], format_field(spot, p, *spot.field_index("qty")));
  EXPECT_EQ(j["fields"]["avg_price"].get<std::string>().rfind("141.123456789", 0), 0u) << j.dump();
  EXPECT_FALSE(j["fields"].contains("fees"));          // fields never set are absent, not 0
  EXPECT_EQ(j["version"], std::to_string(p.version));  // text: past 2^53, exact in JavaScript
  const json lend = body_of(call("GET", "/v1/positions/moonwell/0xabc/USDC"));
  EXPECT_EQ(lend["fields"]["collateral_amount"].get<std::string>().rfind(
                "1000000000000000000000000000001", 0),
            0u)
      << lend.dump();
  EXPECT_EQ(lend["fields"]["last_update_block"], "19000001");
  // An instrument may hold '/': everything after the account is the instrument.
  const HttpResponse pair = call("GET", "/v1/positions/marks/w1/SOL/USDC");
  EXPECT_EQ(pair.status, 200) << pair.body;
  EXPECT_EQ(body_of(pair)["instrument"], "SOL/USDC");
}

TEST_F(ApiTest, AnAccountsPositionsAreListedInOrder) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  put("spot", "w1", "BTC", {{"qty", "2"}});
  put("moonwell", "w1", "USDC", {{"debt_amount", "3"}});
  put("spot", "w2", "SOL", {{"qty", "4"}});
  const HttpResponse resp = call("GET", "/v1/accounts/w1");
  ASSERT_EQ(resp.status, 200) << resp.body;
  const json j = body_of(resp);
  EXPECT_EQ(j["account"], "w1");
  ASSERT_EQ(j["positions"].size(), 3u) << j.dump();
  EXPECT_EQ(j["positions"][0]["instrument"], "BTC");
  EXPECT_EQ(j["positions"][1]["instrument"], "SOL");
  EXPECT_EQ(j["positions"][2]["namespace"], "moonwell");
  EXPECT_EQ(body_of(call("GET", "/v1/accounts/nobody"))["positions"].size(), 0u);
  const HttpResponse bad = call("GET", "/v1/accounts/no!such");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(body_of(bad)["error"].get<std::string>().find("account"), std::string::npos);
  // An account left mid-change (its stripe odd: shm/accounts.hpp) is a 503 naming why, never a
  // partial list.
  w->heartbeat();
  test::RwMapping m(seg.name());
  const auto& h = *reinterpret_cast<const shm::SegmentHeader*>(m.base());
  const shm::Geometry g = shm::geometry_for(h.capacity);
  auto* stripe = reinterpret_cast<std::uint64_t*>(m.base() + g.stripes_offset) +
                 (shm::account_hash("w1") & (g.account_stripes - 1));
  *stripe += 1;
  const HttpResponse busy = call("GET", "/v1/accounts/w1");
  EXPECT_EQ(busy.status, 503) << busy.body;
  EXPECT_EQ(body_of(busy)["status"], "writer_busy");
  *stripe += 1;
  EXPECT_EQ(call("GET", "/v1/accounts/w1").status, 200);
}

TEST_F(ApiTest, EveryBadPositionRequestNamesWhatIsWrong) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  struct Case {
    std::string path;
    int status;
    std::string says;
  } cases[] = {
      {"/v1/positions/spot/w1/ETH", 404, "not_found"},
      {"/v1/positions/futures/w1/SOL", 404,
       "unknown namespace 'futures': this segment has spot, "
       "moonwell, marks"},
      {"/v1/positions/spot/w1", 400, "expected /v1/positions/{ns}/{account}/{instrument}"},
      {"/v1/positions/", 400, "expected"},
      {"/v1/positions/spot/w!1/SOL", 400, "bad key: account"},
      {"/v1/positions/spot/w1/", 400, "bad key: instrument"},
      {"/v1/positions/spot/" + std::string(65, 'a') + "/SOL", 400, "bad key: account"},
      {std::string("/v1/positions/spot/w1/SO\0L", 26), 400, "the path holds a NUL byte (%00)"},
      {"/v2/positions/spot/w1/SOL", 404, "no such resource '/v2/positions/spot/w1/SOL'"},
      {"/", 404, "GET /metrics, /health"},
  };
  for (const auto& c : cases) {
    const HttpResponse resp = call("GET", c.path);
    EXPECT_EQ(resp.status, c.status) << c.path << ": " << resp.body;
    EXPECT_NE(resp.body.find(c.says), std::string::npos) << c.path << ": " << resp.body;
    EXPECT_NO_THROW(body_of(resp)) << "not JSON: " << resp.body;
  }
  // Wrong methods: 405 with the allowed ones.
  constexpr const char* kRead = "GET, HEAD, OPTIONS";
  for (const auto& [method, path, allowed] :
       {std::tuple{"POST", "/metrics", kRead},
        std::tuple{"DELETE", "/v1/positions/spot/w1/SOL", kRead},
        std::tuple{"PUT", "/health", kRead},
        std::tuple{"GET", "/v1/invalidate", "POST, OPTIONS"}}) {
    const HttpResponse resp = call(method, path);
    EXPECT_EQ(resp.status, 405) << method << " " << path;
    ASSERT_EQ(resp.headers.size(), 1u);
    EXPECT_EQ(resp.headers[0], (std::pair<std::string, std::string>{"Allow", allowed}));
  }
}

TEST_F(ApiTest, StatsCarryNamespacesProducersAndTheLoopsSources) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  put("spot", "w2", "SOL", {{"qty", "1"}});
  put("marks", "w1", "SOL", {{"bid", "1"}});
  board.try_publish([](LoopSnapshot& s) {
    s.sources = {{"socket /dev/shm/x.sock", {10, 7, 2, 1}}};
  });
  const json j = body_of(call("GET", "/v1/stats"));
  EXPECT_EQ(j["live"], 3);
  EXPECT_EQ(j["counters"]["inserts"], 3);
  EXPECT_EQ(j["namespaces"][0]["name"], "spot");
  EXPECT_EQ(j["namespaces"][0]["live"], 2);
  EXPECT_EQ(j["namespaces"][1]["live"], 0);
  EXPECT_EQ(j["namespaces"][2]["live"], 1);
  EXPECT_EQ(j["producers"].size(), 0u);
  ASSERT_EQ(j["sources"].size(), 1u);
  EXPECT_EQ(j["sources"][0]["rejected"], 1);
}

TEST_F(ApiTest, HealthIsTheInspectorsRuleAsStatusAndCode) {
  w->tick();
  HttpResponse resp = call("GET", "/health");
  EXPECT_EQ(resp.status, 200) << resp.body;
  json j = body_of(resp);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["alive"], true);
  EXPECT_EQ(j["redis"]["state"], "off");
  w->close();  // no writer owns the segment any more
  resp = call("GET", "/health");
  EXPECT_EQ(resp.status, 503) << resp.body;
  EXPECT_EQ(body_of(resp)["status"], "down");
}

// Liveness apart from readiness: a writer whose Redis is down serves its readers, so
// /health/live stays 200 (a probe must not kill it) while /health/ready and /health say 503.
TEST(ApiHealthTest, ARedisOutageFailsReadinessNotLiveness) {
  test::ScratchSegment seg{"http_live"};
  WriterConfig cfg = test::small_config(seg.name(), 64);
  RedisConfig rc;
  rc.host = "127.0.0.1";
  rc.port = 1;  // nothing listens: Redis is down from the start
  rc.warm_start = false;
  rc.connect_timeout = 100ms;
  cfg.redis = rc;
  cfg.log = [](LogLevel, std::string_view) {};
  auto w = Writer::open(cfg);
  w->upsert(must(w->make_update("spot", "w1", "SOL", {{"qty", "1"}})));
  w->tick();
  Reader r = Reader::open(seg.name());
  Api api(r, cfg.namespaces, ApiConfig{}, nullptr, nullptr, [](bool, const std::string&) {});
  auto get = [&](const char* path) {
    HttpRequest req;
    req.method = "GET";
    req.path = path;
    return api.handle(req);
  };
  // The unsynced change ages past max_sync_lag (5 s by default): set a short one instead.
  ApiConfig quick;
  quick.max_sync_lag = 1ms;
  Api api_quick(r, cfg.namespaces, quick, nullptr, nullptr, [](bool, const std::string&) {});
  HttpRequest req;
  req.method = "GET";
  std::this_thread::sleep_for(20ms);
  w->tick();
  for (const char* path : {"/health", "/health/ready"}) {
    req.path = path;
    const HttpResponse h = api_quick.handle(req);
    EXPECT_EQ(h.status, 503) << path << ": " << h.body;
    EXPECT_EQ(json::parse(h.body)["status"], "degraded") << h.body;
  }
  req.path = "/health/live";
  EXPECT_EQ(api_quick.handle(req).status, 200);
  EXPECT_EQ(get("/health/live").status, 200);
  w->close();  // no writer: not live either
  EXPECT_EQ(get("/health/live").status, 503);
}

TEST_F(ApiTest, MetricsShowTheSegmentTheLoopAndEscapedLabels) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  put("spot", "w2", "SOL", {{"qty", "1"}});
  put("moonwell", "w1", "USDC", {{"debt_amount", "1"}});
  w->upsert(must(w->make_update("spot", "w1", "SOL", {{"qty", "2"}})));
  w->tick();
  board.try_publish([](LoopSnapshot& s) {
    s.sources = {{"stream \"fills\"\n", {5, 4, 1, 0}}};
    s.apply.observe(80, 3);          // <= 100 ns
    s.apply.observe(2'000, 1);       // <= 2.5 us
    s.apply.observe(50'000'000, 1);  // beyond 10 ms: +Inf only
  });
  Reader client = Reader::open(seg.name());  // a reader process's reads, counted
  Position p;
  ASSERT_EQ(client.get("spot", "w1", "SOL", p), ReadStatus::ok);
  ASSERT_EQ(client.get("spot", "w1", "SOL", p), ReadStatus::ok);
  ASSERT_EQ(client.get("spot", "w9", "SOL", p), ReadStatus::not_found);
  ASSERT_EQ(client.get("moonwell", "w1", "USDC", p), ReadStatus::ok);
  ASSERT_EQ(client.get("nope", "w1", "SOL", p), ReadStatus::bad_key);  // no such namespace
  const HttpResponse resp = call("GET", "/metrics");
  ASSERT_EQ(resp.status, 200);
  EXPECT_EQ(resp.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = resp.body;
  for (const char* line : {
           "poscache_writer_up 1\n",
           "poscache_positions 3\n",
           "poscache_capacity_positions 64\n",
           "poscache_namespace_positions{namespace=\"spot\"} 2\n",
           "poscache_namespace_positions{namespace=\"moonwell\"} 1\n",
           "poscache_namespace_positions{namespace=\"marks\"} 0\n",
           "poscache_inserts_total 3\n",
           "poscache_updates_total 1\n",
           "poscache_change_ring_cells_total 4\n",  // 3 inserts, 1 update: a cell each
           "poscache_change_ring_size_cells 16384\n",
           "# TYPE poscache_updates_total counter\n",
           "# TYPE poscache_index_tombstones gauge\n",
           "poscache_redis_state{state=\"off\"} 1\n",
           "poscache_redis_state{state=\"up\"} 0\n",
           "poscache_ingest_commands_total{source=\"stream\",outcome=\"applied\"} 4\n",
           "poscache_apply_seconds_bucket{le=\"1e-07\"} 3\n",
           "poscache_apply_seconds_bucket{le=\"1e-06\"} 3\n",
           "poscache_apply_seconds_bucket{le=\"2.5e-06\"} 4\n",
           "poscache_apply_seconds_bucket{le=\"0.01\"} 4\n",
           "poscache_apply_seconds_bucket{le=\"+Inf\"} 5\n",
           "poscache_apply_seconds_count 5\n",
           "poscache_reader_gets_total{namespace=\"spot\",status=\"ok\"} 2\n",
           "poscache_reader_gets_total{namespace=\"spot\",status=\"not_found\"} 1\n",
           "poscache_reader_gets_total{namespace=\"moonwell\",status=\"ok\"} 1\n",
           "poscache_reader_gets_total{namespace=\"marks\",status=\"ok\"} 0\n",
           "poscache_reader_gets_total{status=\"bad_key\"} 1\n",
           "poscache_readers{state=\"reading\"} 1\n",
           "poscache_reader_table_up 1\n",
           "# TYPE poscache_apply_seconds histogram\n",
       }) {
    EXPECT_NE(m.find(line), std::string::npos) << "missing: " << line << "\n" << m;
  }
  // Every family once, with its HELP before its TYPE; every sample after its family's TYPE.
  std::set<std::string> families;
  std::size_t start = 0;
  std::string current;
  while (start < m.size()) {
    const std::string line = m.substr(start, m.find('\n', start) - start);
    start += line.size() + 1;
    if (line.rfind("# HELP ", 0) == 0) {
      current = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(families.insert(current).second) << "family twice: " << current;
    } else if (line.rfind("# TYPE ", 0) != 0) {
      EXPECT_EQ(line.rfind(current, 0), 0u) << "sample outside its family: " << line;
    }
  }
  EXPECT_EQ(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

TEST_F(ApiTest, InvalidationNeedsATokenFileAndTheToken) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  api = make_api("");  // no admin_token_file
  HttpResponse resp = call("POST", "/v1/invalidate", R"({"account":"w1"})", "Bearer anything");
  EXPECT_EQ(resp.status, 403);
  EXPECT_NE(resp.body.find("no [http] admin_token_file"), std::string::npos) << resp.body;
  EXPECT_NE(all_logged().find("from 10.1.2.3:5555: refused (403)"), std::string::npos)
      << all_logged();
  api = make_api(kToken);
  for (const std::string& auth :
       {std::string(), std::string("Bearer wrong"), std::string(kToken),
        std::string("Bearer ") + kToken + "x", std::string("Basic ") + kToken}) {
    resp = call("POST", "/v1/invalidate", R"({"account":"w1"})", auth);
    EXPECT_EQ(resp.status, 401) << auth;
    EXPECT_EQ(resp.headers.at(0).first, "WWW-Authenticate");
  }
  // The first refusal is logged at once; the others of its period are told in one line later.
  EXPECT_NE(all_logged().find("from 10.1.2.3:5555: refused (401): no Authorization header"),
            std::string::npos)
      << all_logged();
  Position p;
  EXPECT_EQ(r.get("spot", "w1", "SOL", p), ReadStatus::ok);  // nothing was done
  EXPECT_EQ(admin.poll(*std::make_unique<ingest::CommandExecutor>(*w, nullptr), 0, 16), 0u);
}

TEST_F(ApiTest, AnInvalidationRunsOnTheApplyLoopAndBadBodiesAreRefused) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  put("spot", "w1", "BTC", {{"qty", "1"}});
  put("marks", "w1", "SOL", {{"bid", "1"}});
  put("spot", "w2", "SOL", {{"qty", "1"}});
  const std::string auth = std::string("Bearer ") + kToken;
  struct Bad {
    std::string body;
    std::string says;
  } bad[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"[1,2]", "must be a JSON object"},
      {R"({"op":"erase","account":"w1"})", "must not name an"},
      {R"({})", "invalidate needs one of"},
      {R"({"account":"w!"})", "account"},
      {R"({"account":"w1","glob":"*"})", "invalidate takes one of"},
      {R"({"ns":"futures"})", "futures"},
      {R"({"all":false})", "must be true; found false"},
      {R"({"glob":""})", "glob"},
  };
  ingest::CommandExecutor exec(*w, nullptr);
  for (const auto& b : bad) {
    const HttpResponse resp = call("POST", "/v1/invalidate", b.body, auth);
    EXPECT_EQ(resp.status, 400) << b.body << ": " << resp.body;
    EXPECT_NE(resp.body.find(b.says), std::string::npos) << b.body << ": " << resp.body;
  }
  EXPECT_EQ(admin.poll(exec, 0, 16), 0u);  // none of them reached the loop
  EXPECT_EQ(r.stats().live, 4u);

  // The loop stand-in: a thread polling the queue as the daemon's loop does.
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    while (!stop.load()) {
      admin.poll(exec, shm::realtime_ns(), 16);
      std::this_thread::sleep_for(100us);
    }
  });
  HttpResponse resp = call("POST", "/v1/invalidate", R"({"account":"w1","ns":"spot"})", auth);
  EXPECT_EQ(resp.status, 200) << resp.body;
  EXPECT_EQ(body_of(resp)["removed"], 2);
  Position p;
  EXPECT_EQ(r.get("spot", "w1", "SOL", p), ReadStatus::not_found);
  EXPECT_EQ(r.get("marks", "w1", "SOL", p), ReadStatus::ok);
  resp = call("POST", "/v1/invalidate", R"({"glob":"*:w*:SOL"})", auth);
  EXPECT_EQ(body_of(resp)["removed"], 2);
  resp = call("POST", "/v1/invalidate", R"({"all":true})", auth);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(r.stats().live, 0u);
  stop = true;
  loop.join();
  EXPECT_NE(all_logged().find("POST /v1/invalidate from 10.1.2.3:5555: {\"account\":\"w1\","
                              "\"ns\":\"spot\"}: 2 position(s) removed"),
            std::string::npos)
      << all_logged();
  EXPECT_EQ(admin.counters().applied, 3u);
}

TEST_F(ApiTest, AnInvalidationTheLoopDoesNotTakeInTimeIsWithdrawnNotAppliedLater) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  api = make_api(kToken, 50ms);
  const HttpResponse resp =
      call("POST", "/v1/invalidate", R"({"account":"w1"})", std::string("Bearer ") + kToken);
  EXPECT_EQ(resp.status, 503);
  EXPECT_NE(resp.body.find("did not take the request within 50 ms; nothing was done"),
            std::string::npos)
      << resp.body;
  ingest::CommandExecutor exec(*w, nullptr);
  EXPECT_EQ(admin.poll(exec, 0, 16), 0u);  // withdrawn
  Position p;
  EXPECT_EQ(r.get("spot", "w1", "SOL", p), ReadStatus::ok);
  admin.shut_down();  // a stopped loop: refused at once, saying why
  api = make_api(kToken, 600s);
  const HttpResponse stopping =
      call("POST", "/v1/invalidate", R"({"all":true})", std::string("Bearer ") + kToken);
  EXPECT_EQ(stopping.status, 503);
  EXPECT_NE(stopping.body.find("the writer is stopping"), std::string::npos) << stopping.body;
  EXPECT_EQ(r.get("spot", "w1", "SOL", p), ReadStatus::ok);
}

TEST_F(ApiTest, HeadIsAnsweredWhereGetIsAndOptionsNamesTheMethods) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  for (const char* path : {"/health", "/health/live", "/health/ready", "/metrics", "/v1/stats",
                           "/v1/positions/spot/w1/SOL", "/v1/accounts/w1", "/nothing"}) {
    const HttpResponse get = call("GET", path), head = call("HEAD", path);
    EXPECT_EQ(head.status, get.status) << path;  // the server sends its head, not its body
    EXPECT_EQ(head.content_type, get.content_type) << path;
    const HttpResponse options = call("OPTIONS", path);
    if (std::string(path) == "/nothing") {
      EXPECT_EQ(options.status, 404);
      continue;
    }
    EXPECT_EQ(options.status, 204) << path;
    ASSERT_EQ(options.headers.size(), 1u) << path;
    EXPECT_EQ(options.headers[0],
              (std::pair<std::string, std::string>("Allow", "GET, HEAD, OPTIONS")));
  }
  // The same answer but for its age, which the clock moves between the two calls (by a coarse
  // clock's tick, 4 ms, when a slow build straddles one).
  const auto ageless = [](const std::string& body) {
    static const std::regex age("\"age_(ns|seconds)\":[0-9.e+-]+");
    return std::regex_replace(body, age, "age");
  };
  EXPECT_EQ(ageless(call("HEAD", "/v1/positions/spot/w1/SOL").body),
            ageless(call("GET", "/v1/positions/spot/w1/SOL").body));
  const HttpResponse options = call("OPTIONS", "/v1/invalidate");
  EXPECT_EQ(options.status, 204);
  EXPECT_EQ(options.headers.at(0).second, "POST, OPTIONS");
  EXPECT_EQ(call("HEAD", "/v1/invalidate").status, 405);
  EXPECT_EQ(call("OPTIONS", "*").headers.at(0).second, "GET, HEAD, POST, OPTIONS");
}

TEST_F(ApiTest, ANulInAPathIsRefusedByNameNotCutShort) {
  put("spot", "w1", "SOL", {{"qty", "1"}});
  for (const std::string& path :
       {std::string("/v1/positions/spot/w1\0x/SOL", 27), std::string("/v1/accounts/w1\0", 16),
        std::string("/health\0", 8)}) {
    const HttpResponse resp = call("GET", path);
    EXPECT_EQ(resp.status, 400) << path;
    EXPECT_NE(resp.body.find("the path holds a NUL byte (%00)"), std::string::npos) << resp.body;
  }
}

TEST_F(ApiTest, WrongTokensAreLimitedPerPeerAndTheirLogLinesCoalesced) {
  api = make_api(kToken, 10ms);  // no apply loop here: a right token's request answers 503
  auto attempt = [&](const std::string& peer, const std::string& auth) {
    HttpRequest req;
    req.method = "POST";
    req.path = "/v1/invalidate";
    req.body = R"({"account":"nobody"})";
    req.authorization = auth;
    req.peer = peer;
    req.remote = peer + ":4000";
    return api->handle(req);
  };
  for (int i = 0; i < 5; ++i) EXPECT_EQ(attempt("10.9.9.9", "Bearer guess").status, 401) << i;
  for (const std::string& auth : {std::string("Bearer guess"), std::string("Bearer ") + kToken}) {
    const HttpResponse limited = attempt("10.9.9.9", auth);  // the right token too: no oracle
    EXPECT_EQ(limited.status, 429) << auth;
    ASSERT_EQ(limited.headers.size(), 1u);
    EXPECT_EQ(limited.headers[0].first, "Retry-After");
    const int wait = std::stoi(limited.headers[0].second);
    EXPECT_GT(wait, 0);
    EXPECT_LE(wait, 60);
    EXPECT_NE(
        limited.body.find("too many admin requests with a wrong or missing token from 10.9.9.9"),
        std::string::npos)
        << limited.body;
  }
  EXPECT_EQ(attempt("10.9.9.8", std::string("Bearer ") + kToken).status, 503) << "another peer";
  auto lines_with = [&](const std::string& what) {
    const std::string all = all_logged();
    int n = 0;
    for (std::size_t at = all.find(what); at != std::string::npos; at = all.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(lines_with("from 10.9.9.9"), 1) << all_logged();
  api->flush_logs(AuthLimiter::Clock::now() + std::chrono::seconds(11));
  EXPECT_EQ(lines_with("from 10.9.9.9"), 2) << all_logged();
  EXPECT_EQ(lines_with("10.9.9.9: 4 more refused (401) and 2 rate-limited (429)"), 1)
      << all_logged();
  const std::string metrics = call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("\nposcache_http_admin_auth_failures_total 5\n"), std::string::npos);
  EXPECT_NE(metrics.find("\nposcache_http_admin_rate_limited_total 2\n"), std::string::npos);
}
