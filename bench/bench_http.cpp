// bench_http: the daemon's HTTP API at 1 M positions (issue: "scrape time at 1 M positions").
// A writer in this process fills the table; the API runs behind the HTTP front
// (writer/http/front.hpp) on a loopback port as in poscache-writer; a client here times whole
// requests (connect, send, read the reply). The floor is the same round trip for a request the
// server answers at once (a 404), in the same run: what the socket and the front cost whatever
// the handler does. Each case also times the handler alone (Api::handle, no socket).
//
// bench_http --slow-clients (issue 30): holds `--idle` connections that send nothing and
// `--trickle` connections that send a header byte every 2 s, reconnecting each one the server
// closes (its request deadline), and times GET /health and /metrics meanwhile; the floor is the
// same probes on the idle server, in the same run. The flood comes from many loopback addresses
// (127.1.x.y, 127.2.x.y: all of 127/8 is this host), `--per-peer` connections each, as many
// clients would; `--per-peer 2000` puts it all on one address, which the per-peer cap refuses.
// Against the server in this process, or a running poscache-writer with `--port`.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/interprocess/shared_memory_object.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_keys.hpp"
#include "bench/bench_util.hpp"
#include "tests/http/http_client.hpp"
#include "writer/http/server.hpp"

using namespace poscache;
using namespace poscache::bench;

namespace {
constexpr const char* kUsage =
    "bench_http [--positions 1000000] [--requests 200]   (or bench_http --slow-clients --help)\n"
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

// One flood connection: non-blocking, from `source`; -1 if no socket could be made.
int open_flood(int port, const std::string& source) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in from{}, to{};
  from.sin_family = to.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Idle and trickling connections, held open by one thread until `stop`: one the server closes is
// opened again at once.
class Flood {
 public:
  Flood(int port, int idle, int trickle, int per_peer) : port_(port) {
    for (int i = 0; i < idle + trickle; ++i) {
      const bool trickles = i >= idle;
      const int k = trickles ? i - idle : i;
      sources_.push_back((trickles ? "127.2." : "127.1.") + std::to_string(k / per_peer / 250) +
                         "." + std::to_string(1 + (k / per_peer) % 250));
      trickles_.push_back(trickles);
      fds_.push_back(open_flood(port_, sources_.back()));
    }
    thread_ = std::thread([this] { run(); });
  }
  ~Flood() {
    stop_ = true;
    thread_.join();
    for (const int fd : fds_)
      if (fd >= 0) ::close(fd);
  }
  [[nodiscard]] long reopened() const { return reopened_.load(); }
  [[nodiscard]] int open_now() const { return open_.load(); }

 private:
  void run() {
    auto next_byte = std::chrono::steady_clock::now();
    std::vector<pollfd> p(fds_.size());
    while (!stop_) {
      int open = 0;
      for (std::size_t i = 0; i < fds_.size(); ++i) {
        if (fds_[i] < 0) fds_[i] = open_flood(port_, sources_[i]);
        p[i] = {fds_[i], POLLIN, 0};
        open += fds_[i] >= 0;
      }
      open_ = open;
      (void)::poll(p.data(), p.size(), 100);
      for (std::size_t i = 0; i < fds_.size(); ++i) {
        if (fds_[i] < 0 || (p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        ::close(fds_[i]);  // a 408, an end, a refusal: open it again
        fds_[i] = -1;
        ++reopened_;
      }
      if (std::chrono::steady_clock::now() >= next_byte) {  // every 2 s: a byte of a long header
        next_byte += std::chrono::seconds(2);
        for (std::size_t i = 0; i < fds_.size(); ++i) {
          if (trickles_[i] && fds_[i] >= 0)
            (void)::send(fds_[i], "G", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
      }
    }
  }
  int port_;
  std::vector<std::string> sources_;
  std::vector<bool> trickles_;
  std::vector<int> fds_;
  std::atomic<bool> stop_{false};
  std::atomic<long> reopened_{0};
  std::atomic<int> open_{0};
  std::thread thread_;
};

struct Probes {
  std::vector<double> health_ms, metrics_ms;
  int failures = 0;
  std::string first_failure;
};

// GET /health and /metrics in turn, one every `every_ms`, for `seconds` (or `count` of each).
Probes probe(int port, double seconds, int count, int every_ms) {
  Probes out;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (int i = 0; count > 0 ? i < 2 * count : std::chrono::steady_clock::now() < end; ++i) {
    const char* path = i % 2 == 0 ? "/health" : "/metrics";
    const auto t0 = std::chrono::steady_clock::now();
    test::HttpReply r;  // status 0: no answer within 5 s (connect or reply)
    if (const int fd = test::connect_from(port, "127.0.0.1", 5); fd >= 0) {
      test::send_all(fd, std::string("GET ") + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
      r = test::read_reply(fd);
    } else {
      r.head = "connect failed or timed out (5 s)";
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    (i % 2 == 0 ? out.health_ms : out.metrics_ms).push_back(ms);
    if (r.status != 200) {
      if (out.failures++ == 0)
        out.first_failure =
            std::string(path) + ": " + std::to_string(r.status) + " " + r.head.substr(0, 80);
    }
    if (every_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(every_ms));
  }
  return out;
}

void print_ms(const std::string& what, std::vector<double>& ms) {
  const Percentiles p = percentiles(ms);
  std::printf("  %-44s p50 %8.3f  p99 %8.3f  max %8.3f ms  (n=%zu)\n", what.c_str(), p.p50, p.p99,
              p.max, p.n);
}

// `series`'s value in `scrape` ("-" if absent: a server without it, or no answer).
std::string value_of(const std::string& scrape, const std::string& series) {
  const std::size_t at = scrape.find("\n" + series + " ");
  if (at == std::string::npos) return "-";
  const std::size_t from = at + series.size() + 2;
  return scrape.substr(from, scrape.find('\n', from) - from);
}

int slow_clients(int argc, char** argv) {
  Flags f(
      argc, argv,
      {{"port", "0"},
       {"idle", "1000"},
       {"trickle", "100"},
       {"per-peer", "32"},
       {"seconds", "20"},
       {"every-ms", "20"},
       {"baseline", "200"}},
      "bench_http --slow-clients [--port P (a running poscache-writer --http; 0: one in this "
      "process)]\n  [--idle 1000] [--trickle 100] [--per-peer 32] [--seconds 20] [--every-ms 20] "
      "[--baseline 200]");
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;  // the flood needs idle + trickle descriptors, and more than 1024
  ::setrlimit(RLIMIT_NOFILE, &rl);
  std::printf("CPU: %s\n", cpu_name().c_str());
  std::printf("RLIMIT_NOFILE: %llu\n", static_cast<unsigned long long>(rl.rlim_cur));
  int port = static_cast<int>(f.num("port"));
  std::unique_ptr<Writer> w;
  std::unique_ptr<Reader> reader;
  std::unique_ptr<http::Server> server;
  const std::string seg = "poscache_bench_http_slow_" + std::to_string(::getpid());
  if (port == 0) {
    WriterConfig cfg = bench_config(seg, 10'000);
    cfg.log = [](LogLevel, std::string_view) {};
    cfg.heartbeat_interval = std::chrono::seconds(10);  // no loop here: alive for 100 s per beat
    w = Writer::open(cfg);
    w->tick();
    ReaderOptions ro;
    ro.statistics = false;
    reader = std::make_unique<Reader>(Reader::open(seg, ro));
    http::ServerConfig sc;
    sc.listen = "127.0.0.1:0";
    server = std::make_unique<http::Server>(
        sc,
        std::make_unique<http::Api>(*reader, cfg.namespaces, http::ApiConfig{}, nullptr, nullptr,
                                    [](bool, const std::string&) {}),
        nullptr);
    port = server->port();
    std::printf(
        "server: in this process, defaults (request_timeout 3 s, 64 per peer, 4096 in all)\n");
  } else {
    std::printf("server: 127.0.0.1:%d\n", port);
  }
  const int idle = static_cast<int>(f.num("idle")), trickle = static_cast<int>(f.num("trickle"));
  const int per_peer = static_cast<int>(f.num("per-peer")),
            every = static_cast<int>(f.num("every-ms"));
  Probes base = probe(port, 0, static_cast<int>(f.num("baseline")), every);
  std::printf("idle server (floor, same run): %d failures\n", base.failures);
  print_ms("GET /health", base.health_ms);
  print_ms("GET /metrics", base.metrics_ms);
  Flood flood(port, idle, trickle, per_peer);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // all connected
  std::printf("flood: %d idle + %d trickling (a byte / 2 s), %d per address; %d open after 1 s\n",
              idle, trickle, per_peer, flood.open_now());
  Probes under = probe(port, f.real("seconds"), 0, every);
  const int open_at_end = flood.open_now();
  std::printf(
      "under the flood, %.0f s: %d failures%s%s; %d open at the end, %ld reopened after "
      "the server closed them\n",
      f.real("seconds"), under.failures, under.failures ? ", first: " : "",
      under.first_failure.c_str(), open_at_end, flood.reopened());
  print_ms("GET /health", under.health_ms);
  print_ms("GET /metrics", under.metrics_ms);
  std::string scrape;
  if (const int fd = test::connect_from(port, "127.0.0.1", 5); fd >= 0) {
    test::send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n");
    scrape = test::read_reply(fd).body;
  }
  for (const char* s : {"poscache_http_connections", "poscache_http_request_timeouts_total",
                        "poscache_http_connections_refused_total{limit=\"peer\"}",
                        "poscache_http_connections_refused_total{limit=\"total\"}",
                        "poscache_http_connections_evicted_total"})
    std::printf("  %s %s\n", s, value_of(scrape, s).c_str());
  if (w) {
    server.reset();
    w->close();
    boost::interprocess::shared_memory_object::remove(seg.c_str());
    ::unlink(("/dev/shm/" + seg + ".lock").c_str());
    ::unlink(("/dev/shm/" + seg + ".readers").c_str());
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--slow-clients") {  // a mode, not a flag with a value
      std::vector<char*> rest(argv, argv + argc);
      rest.erase(rest.begin() + i);
      return slow_clients(static_cast<int>(rest.size()), rest.data());
    }
  }
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
      {"404 (floor: socket + front)", "/nothing"},
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
