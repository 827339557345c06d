// bench_http: the daemon's HTTP API at 1 M positions (issue: "scrape time at 1 M positions").
// A writer in this process fills the table; the API runs behind civetweb on a loopback port as in
// poscache-writer; a client here times whole requests (connect, send, read the reply). The floor
// is the same round trip for a request the server answers at once (a 404), in the same run: what
// the socket and civetweb cost whatever the handler does. Each case also times the handler alone
// (Api::handle, no socket).
#include <boost/interprocess/shared_memory_object.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_keys.hpp"
#include "bench/bench_util.hpp"
#include "tests/http/http_client.hpp"
#include "writer/http/server.hpp"

using namespace poscache;
using namespace poscache::bench;

namespace {
constexpr const char* kUsage =
    "bench_http [--positions 1000000] [--requests 200]\n"
    "  times GET /metrics, /health, /v1/stats, /v1/positions/.., /v1/accounts/.. over loopback "
    "HTTP\n  and through the handler alone, against a 404's round trip (the floor)";

std::vector<double> timed(int n, const std::function<void()>& fn) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    out.push_back(
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  Flags f(argc, argv, {{"positions", "1000000"}, {"requests", "200"}}, kUsage);
  const auto n = static_cast<std::size_t>(f.num("positions"));
  const int requests = static_cast<int>(f.num("requests"));
  std::printf("CPU: %s\n", cpu_name().c_str());
  const std::string seg = "poscache_bench_http_" + std::to_string(::getpid());
  WriterConfig cfg = bench_config(seg, n);
  cfg.log = [](LogLevel, std::string_view) {};
  cfg.heartbeat_interval = std::chrono::seconds(10);  // no loop here: alive for 100 s per beat
  auto w = Writer::open(cfg);
  const Keys keys(n);
  std::vector<Update> batch;
  std::vector<ApplyResult> res(4096);
  for (std::size_t i = 0; i < n; i += 4096) {
    batch.clear();
    for (std::size_t k = i; k < std::min(n, i + 4096); ++k)
      batch.push_back(trading_update(*w, keys, k, k));
    w->upsert_batch(batch, std::span(res.data(), batch.size()));
  }
  w->tick();
  ReaderOptions ro;
  ro.statistics = false;
  const Reader reader = Reader::open(seg, ro);
  http::LoopBoard board;
  http::ServerConfig sc;
  sc.listen = "127.0.0.1:0";
  auto api = std::make_unique<http::Api>(reader, cfg.namespaces, http::ApiConfig{}, &board, nullptr,
                                         [](bool, const std::string&) {});
  const http::Api& handler = *api;
  http::Server server(sc, std::move(api), {});
  const int port = server.port();
  std::printf("%zu positions (%llu live); HTTP on 127.0.0.1:%d; %d requests per case\n", n,
              static_cast<unsigned long long>(reader.stats().live), port, requests);
  const std::string acct = keys.account[n / 2];
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"404 (floor: socket + civetweb)", "/nothing"},
      {"GET /metrics", "/metrics"},
      {"GET /health", "/health"},
      {"GET /v1/stats", "/v1/stats"},
      {"GET /v1/positions/spot/" + acct + "/I3", "/v1/positions/spot/" + acct + "/I3"},
      {"GET /v1/accounts/" + acct + " (table walk)", "/v1/accounts/" + acct},
  };
  for (const auto& [label, path] : cases) {
    std::size_t bytes = 0;
    int status = 0;
    const int reps = path.rfind("/v1/accounts", 0) == 0 ? std::max(10, requests / 10) : requests;
    auto http_ns = timed(reps, [&, p = path] {
      const test::HttpReply r = test::http_get(port, p);
      bytes = r.body.size();
      status = r.status;
    });
    http::HttpRequest req;
    req.method = "GET";
    req.path = path;
    auto handler_ns = timed(reps, [&] { (void)handler.handle(req); });
    print_row(label + " [" + std::to_string(status) + ", " + std::to_string(bytes) + " B]",
              percentiles(http_ns));
    print_row("  handler alone", percentiles(handler_ns));
  }
  w->close();
  boost::interprocess::shared_memory_object::remove(seg.c_str());
  ::unlink(("/dev/shm/" + seg + ".lock").c_str());
  ::unlink(("/dev/shm/" + seg + ".readers").c_str());
  return 0;
}
