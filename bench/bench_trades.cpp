// What exactly-once costs (docs/exactly-once.md), against a real redis-server this program
// starts (free port, temp dir, no persistence), with floors from the same run:
//   1. a fill's apply (the executor, one thread) with a trade id (the window's TW1..TW3) against
//      the same fill without one;
//   2. the sync: fills applied flat out on --positions positions, then the time until Redis
//      acknowledges them all, with trade ids mirrored (a ZADD per namespace per transaction)
//      against the same fills without ids;
//   3. a takeover: the time to read --ids trade ids back from Redis into a window (what a
//      promoted standby or a warm start does before it opens its ingest).
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "poscache/writer.hpp"
#include "shm/clock.hpp"
#include "tests/redis_server.hpp"
#include "writer/ingest/executor.hpp"
#include "writer/ingest/json_codec.hpp"
#include "writer/ingest/trade_window.hpp"
#include "writer/net/redis_client.hpp"
#include "writer/redis/trade_ids.hpp"

using namespace poscache;
using namespace poscache::bench;

namespace {

constexpr const char* kUsage =
    "bench_trades [--fills 200000] [--positions 2000] [--ids 1000000] [--port 0 (start one)]";

WriterConfig config(const std::string& segment, int port, bool redis) {
  WriterConfig c;
  c.segment = segment;
  c.capacity = 1 << 16;
  c.namespaces = {preset_trading("spot")};
  c.log = [](LogLevel l, std::string_view m) {
    if (l >= LogLevel::warn) std::fprintf(stderr, "  [writer] %.*s\n", int(m.size()), m.data());
  };
  if (redis) {
    RedisConfig r;
    r.host = "127.0.0.1";
    r.port = port;
    r.prefix = "bench:" + segment;
    r.warm_start = false;
    c.redis = r;
  }
  return c;
}

std::vector<ingest::Command> fills(const Writer& w, long long n, long long positions, bool ids,
                                   const std::string& tag) {
  ingest::JsonDecoder d(w.namespaces());
  std::vector<ingest::Command> out;
  out.reserve(static_cast<std::size_t>(n));
  for (long long i = 0; i < n; ++i) {
    std::string line = R"({"op":"fill","ns":"spot","account":"a)" + std::to_string(i % positions) +
                       R"(","instrument":"SOL","side":")" + (i % 3 == 2 ? "sell" : "buy") +
                       R"(","qty":"1.5","price":")" + std::to_string(100 + i % 17) + "\"";
    if (ids) line += R"(,"trade_id":")" + tag + std::to_string(i) + "\"";
    line += "}";
    out.push_back(std::get<ingest::DecodedLine>(d.decode(line)).command);
  }
  return out;
}

struct Run {
  Percentiles apply;
  double acked_per_s = 0;
};

// Applies `cmds` through an executor on a fresh segment (with a mirrored window when `ids`),
// timing each fill, then waits for Redis to acknowledge everything.
Run run(int port, const std::string& segment, const std::vector<ingest::Command>* cmds_in,
        long long n, long long positions, bool ids) {
  Run out;
  auto w = Writer::open(config(segment, port, true));
  ingest::TradeWindow window(segment, w->stats().generation, 1 << 20,
                             [](const ingest::PositionKey&) { return 0; });
  if (ids) w->mirror_trades(window.log());
  ingest::CommandExecutor exec(*w, ids ? &window : nullptr);
  const auto cmds = cmds_in ? *cmds_in : fills(*w, n, positions, ids, segment);
  std::vector<double> samples;
  samples.reserve(cmds.size());
  const double nspt = ns_per_tick();
  const std::int64_t t0 = shm::monotonic_ns();
  for (std::size_t i = 0; i < cmds.size(); ++i) {
    const std::uint64_t a = ticks_ordered();
    exec.execute(cmds[i]);
    samples.push_back(static_cast<double>(ticks_ordered() - a) * nspt);
    if ((i & 63) == 0) w->tick();
  }
  w->sync_redis(std::chrono::seconds(120));
  const double secs = static_cast<double>(shm::monotonic_ns() - t0) / 1e9;
  out.apply = percentiles(samples);
  out.acked_per_s = static_cast<double>(cmds.size()) / secs;
  w->close();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f(argc, argv,
          {{"fills", "200000"}, {"positions", "2000"}, {"ids", "1000000"}, {"port", "0"}}, kUsage);
  const long long n = f.num("fills"), positions = f.num("positions"), ids = f.num("ids");
  std::printf("bench_trades on %s\n", cpu_name().c_str());
  // The server this program starts on cpu 1, unless --port names one.
  std::optional<test::RedisServer> srv;
  if (f.num("port") == 0) srv.emplace(test::RedisServer::Options{.args = {}, .cpu = 1});
  const int port = srv ? srv->port() : static_cast<int>(f.num("port"));
  const std::string pid = std::to_string(::getpid());
  // Alternate the two, twice: a shared host drifts.
  std::map<bool, std::vector<Run>> runs;
  for (int round = 0; round < 2; ++round) {
    for (const bool with_ids : {false, true}) {
      const std::string seg =
          "bench_trades_" + pid + "_" + std::to_string(round) + (with_ids ? "i" : "n");
      runs[with_ids].push_back(run(port, seg, nullptr, n, positions, with_ids));
      for (const char* suffix : {"", ".lock", ".readers", ".trades"})
        std::filesystem::remove("/dev/shm/" + seg + suffix);
    }
  }
  std::printf("1. a fill's apply, %lld fills on %lld positions (ns):\n", n, positions);
  for (int round = 0; round < 2; ++round) {
    print_row("without a trade id (floor), round " + std::to_string(round + 1),
              runs[false][round].apply);
    print_row("with a trade id, round " + std::to_string(round + 1), runs[true][round].apply);
  }
  std::printf("2. applied and acknowledged by Redis, fills/s:\n");
  for (int round = 0; round < 2; ++round)
    std::printf("  round %d: %.0f with trade ids mirrored vs %.0f without (ratio %.2f)\n",
                round + 1, runs[true][round].acked_per_s, runs[false][round].acked_per_s,
                runs[true][round].acked_per_s / runs[false][round].acked_per_s);

  // 3. The takeover's read of the trade ids.
  {
    auto c = detail::RedisClient::connect(config("x", port, true).redis.value());
    const std::string key = "bench:takeover:spot:@trades";
    for (long long i = 0; i < ids; i += 1000) {
      detail::Args a;
      a.add("ZADD").add(key);
      for (long long j = i; j < std::min(ids, i + 1000); ++j) {
        char member[34];
        std::snprintf(member, sizeof member, "%016llx:%016llx", static_cast<unsigned long long>(j),
                      static_cast<unsigned long long>(j * 0x9E3779B97F4A7C15ull));
        a.add(static_cast<std::uint64_t>(j)).add(member);
      }
      (void)c->command(a);
    }
    RedisConfig rc = config("x", port, true).redis.value();
    rc.prefix = "bench:takeover";
    const std::int64_t t0 = shm::monotonic_ns();
    auto known = detail::load_trade_ids(rc, {preset_trading("spot")}, nullptr);
    const std::int64_t t1 = shm::monotonic_ns();
    ingest::TradeWindow window("bench_trades_" + pid + "_w", 1, static_cast<std::uint64_t>(ids),
                               [](const ingest::PositionKey&) { return 0; });
    std::vector<ingest::TradeWindow::Known> k;
    k.reserve(known->size());
    for (const auto& t : *known) k.push_back({t.ns, t.id_hash, t.version});
    window.load(std::move(k));
    const std::int64_t t2 = shm::monotonic_ns();
    std::printf(
        "3. a takeover reads %zu trade ids from Redis in %.0f ms, into its window in %.0f ms\n",
        known->size(), static_cast<double>(t1 - t0) / 1e6, static_cast<double>(t2 - t1) / 1e6);
    std::filesystem::remove("/dev/shm/bench_trades_" + pid + "_w.trades");
  }
  return 0;
}
