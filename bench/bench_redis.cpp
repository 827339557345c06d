// The Redis sync, measured against a real redis-server this program starts (free port, temp
// dir, no persistence) unless --port names one:
//   1. sync throughput (positions/s written by the sync thread: inserts, then updates of the
//      same positions, then hot positions updated many times between flushes) beside a bare
//      hiredis pipeline of HSETs writing the same hashes, and `redis-benchmark -P 64 -t hset`;
//   2. sync lag (apply -> acknowledged by Redis) at a sustained update rate;
//   3. apply-path latency (one upsert) with no Redis, Redis up, Redis down, Redis restarting;
//   4. warm start time for N positions;
//   5. refill: Redis flushed under a running writer of N positions, the time until it holds
//      them all again, and the apply path's latency meanwhile;
//   6. followers: a follower's lag behind the writer at the sustained rate, and the time from
//      a writer's kill -9 to a standby's first write (the lease taken over on the same host, and
//      after its expiry from another).
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

#include "bench/bench_keys.hpp"
#include "bench/bench_util.hpp"
#include "poscache/decimal.hpp"
#include "poscache/mirror_status.hpp"
#include "poscache/reader.hpp"
#include "shm/clock.hpp"
#include "tests/redis_server.hpp"
#include "writer/net/redis_client.hpp"

using namespace poscache;
using namespace poscache::bench;

namespace {
constexpr const char* kUsage =
    "bench_redis [--positions 200000] [--rate 100000] [--seconds 3] [--warm 1000000] [--port 0 "
    "(start one)] [--followers-only 1]";

RedisConfig redis_at(int port) {
  RedisConfig c;
  c.port = port;
  c.sync_cpu = 1;
  c.reconnect_min = std::chrono::milliseconds(10);
  c.reconnect_max = std::chrono::milliseconds(100);
  c.close_timeout = std::chrono::milliseconds(500);
  return c;
}

detail::RedisClient client_at(int port) {
  auto c = detail::RedisClient::connect(redis_at(port));
  if (!c) {
    std::fprintf(stderr, "%s\n", c.error().c_str());
    std::exit(1);
  }
  return std::move(*c);
}

void redis_cmd(detail::RedisClient& c, std::initializer_list<std::string> args) {
  detail::Args a;
  for (const auto& s : args) a.add(s);
  (void)c.command(a);
}

double secs_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void quiet(LogLevel, std::string_view) {}

// CPU seconds a process has used (user + system), from /proc/<pid>/stat.
double cpu_seconds(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return 0;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return 0;
  unsigned long long ut = 0, st = 0;
  // after ") " come fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime stime
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return 0;
  return static_cast<double>(ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// (The apply thread is pinned to cpu 0 during the sustained phases; the sync thread
// (RedisConfig::sync_cpu), redis-server and the lag monitor to cpu 1.)
// The bare pipeline: HSET of the same fields and texts the sync writes, `batch` per round trip,
// with the same two-in-flight overlap the sync uses (the next batch is sent before the replies
// of the previous one are read), so the floor is as fast as a plain pipeline gets.
// With `zadd`, each position also goes into its account set (ZADD, as a new position does);
// with `xadd`, each batch's changes into a stream (one XADD of "ns:account:instrument" ->
// "+version" pairs, as the fenced sync appends a transaction's changes to {prefix}:@changes).
double bare_pipeline(int port, const Keys& keys, std::size_t n, std::size_t batch, bool overlap,
                     bool zadd = false, bool xadd = false) {
  detail::RedisClient c = client_at(port);
  const NamespaceSpec spec = preset_trading("spot");
  detail::Args a, entry;
  char buf[64];
  const auto t0 = std::chrono::steady_clock::now();
  std::size_t pending = 0;  // replies of the batch in flight
  for (std::size_t base = 0; base < n; base += batch) {
    const std::size_t m = std::min(batch, n - base);
    for (std::size_t i = base; i < base + m; ++i) {
      a.clear();
      a.add("HSET").add("bare:spot:{" + keys.account[i] + "}:" + keys.instrument[i]);
      for (int f = 0; f < 7; ++f) {
        const int128 v =
            static_cast<int128>(i + 1 + static_cast<std::uint64_t>(f)) * 1'000'000'000'000'000;
        a.add(spec.fields[static_cast<std::size_t>(f)].name)
            .add(std::string_view(buf, format_decimal(v, 18, buf)));
      }
      a.add("version")
          .add(static_cast<std::uint64_t>(1795000000000000000ull + i))
          .add("source_seq")
          .add("0");
      a.add("created_at")
          .add_int(1795000000000000000ll)
          .add("updated_at")
          .add_int(1795000000000000000ll);
      (void)c.append(a);
      if (zadd) {
        a.clear();
        a.add("ZADD")
            .add("bare:@account:{" + keys.account[i] + "}")
            .add("inf")
            .add("spot:" + keys.instrument[i]);
        (void)c.append(a);
      }
      if (xadd) {
        if (i == base) {
          entry.clear();
          entry.add("XADD")
              .add("bare:@changes")
              .add("MINID")
              .add("~")
              .add("0")
              .add("*")
              .add("kind")
              .add("changes");
        }
        entry.add("spot:" + keys.account[i] + ":" + keys.instrument[i])
            .add("+" + std::to_string(1795000000000000000ull + i));
      }
    }
    if (xadd) (void)c.append(entry);
    (void)c.send();
    for (std::size_t i = 0; i < pending; ++i) (void)c.read_reply();
    pending = m * (1 + (zadd ? 1 : 0)) + (xadd ? 1 : 0);
    if (!overlap) {  // the plain way: read this batch's replies before building the next
      for (std::size_t i = 0; i < pending; ++i) (void)c.read_reply();
      pending = 0;
    }
  }
  for (std::size_t i = 0; i < pending; ++i) (void)c.read_reply();
  return static_cast<double>(n) / secs_since(t0);
}

void remove_segment(const std::string& seg) {
  boost::interprocess::shared_memory_object::remove(seg.c_str());
  for (const char* ext : {".lock", ".readers", ".trades"})
    ::unlink(("/dev/shm/" + seg + ext).c_str());
}

// ---- 6. followers ------------------------------------------------------------------------------
void followers(int port, detail::RedisClient& admin, const std::string& seg, const Keys& keys,
               std::size_t n, double rate, double seconds) {
  // A follower's lag: the writer applies `rate` updates/s on cpu 0; the follower (its loop in a
  // thread, as the daemon runs it), the sync thread and Redis share cpu 1. Lag = when the
  // follower applied a position minus when the writer did (its updated_at; one host, one clock).
  const std::string fseg = seg + "_follower";
  std::printf(
      "\nfollowers (a follower's loop, the sync thread and Redis share cpu 1; the writer's "
      "apply loop has cpu 0)\n");
  for (const double at : {rate, rate / 5}) {
    redis_cmd(admin, {"FLUSHALL"});
    WriterConfig cfg = bench_config(seg, n + 1024);
    cfg.redis = redis_at(port);
    cfg.redis->warm_start = false;
    cfg.log = quiet;
    auto w = Writer::open(cfg);
    for (std::size_t i = 0; i < n; ++i) w->upsert(trading_update(*w, keys, i, i + 1));
    w->sync_redis(std::chrono::minutes(5));
    std::vector<double> lags;
    lags.reserve(static_cast<std::size_t>(at * seconds) + n);
    WriterConfig fc = bench_config(fseg, n + 1024);
    fc.redis = redis_at(port);
    fc.follow = true;
    fc.log = quiet;
    std::atomic<bool> measuring{false}, done{false};
    fc.on_follow = [&](std::int64_t lag) {
      if (measuring.load(std::memory_order_relaxed)) lags.push_back(static_cast<double>(lag));
    };
    const auto t_load = std::chrono::steady_clock::now();
    auto f = Writer::open(fc);
    const double load_s = secs_since(t_load);
    std::thread loop([&] {
      pin_to_cpu(1);
      while (!done.load(std::memory_order_relaxed)) {
        f->follow(std::chrono::milliseconds(5));
        f->tick();
      }
    });
    pin_to_cpu(0);
    std::mt19937_64 rng(6);
    measuring = true;
    const auto total = static_cast<std::size_t>(at * seconds);
    const std::int64_t start = shm::monotonic_ns();
    for (std::size_t k = 0; k < total; ++k) {
      const std::int64_t due = start + static_cast<std::int64_t>(static_cast<double>(k) * 1e9 / at);
      while (shm::monotonic_ns() < due) w->tick();
      w->upsert(trading_update(*w, keys, rng() % n, k));
    }
    pin_to_cpu(-1);
    w->sync_redis(std::chrono::minutes(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    measuring = false;
    done = true;
    loop.join();
    const WriterStats fs = f->stats();
    std::printf(
        "  first load of %zu positions: %.2f s; then %llu stream entries applied, %llu "
        "loads in all\n",
        n, load_s, static_cast<unsigned long long>(fs.follow_entries),
        static_cast<unsigned long long>(fs.follow_reloads));
    const Percentiles lp = percentiles(lags);
    std::printf("  %-66s p50 %7.2f  p99 %7.2f  p99.9 %8.2f  max %9.2f ms  (n=%zu)\n",
                ("follower lag at " + std::to_string(static_cast<int>(at)) + " updates/s").c_str(),
                lp.p50 / 1e6, lp.p99 / 1e6, lp.p999 / 1e6, lp.max / 1e6, lp.n);
    f->close();
    w->close();
    remove_segment(fseg);
    remove_segment(seg);
  }
  // A standby taking over from a writer killed with -9: the writer is a child process churning
  // 10 k updates/s; the standby runs its loop here. Same host: the lease's holder is a process of
  // this host that is gone, taken over at the standby's next look (every ttl/3, at most 1 s).
  // Other host: the lease must expire first (ttl 2 s).
  for (const bool same_host : {true, false}) {
    redis_cmd(admin, {"FLUSHALL"});
    const auto ttl = std::chrono::milliseconds(2000);
    WriterConfig wc = bench_config(seg, 1 << 16);
    wc.redis = redis_at(port);
    wc.redis->lease_ttl = ttl;
    wc.redis->host_name = "bench-writer";
    wc.redis->warm_start = false;
    wc.log = quiet;
    const pid_t child = ::fork();
    if (child == 0) {
      auto w = Writer::open(wc);
      for (std::uint64_t k = 0;; ++k) {
        w->upsert(trading_update(*w, keys, k % 20000, k));
        if (k % 100 == 0) {
          w->tick();
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    WriterConfig sc = bench_config(fseg, 1 << 16);
    sc.redis = redis_at(port);
    sc.redis->lease_ttl = ttl;
    sc.redis->host_name = same_host ? "bench-writer" : "bench-standby";
    sc.standby = true;
    sc.log = quiet;
    auto sb = Writer::open(sc);
    for (int i = 0; i < 100; ++i) {  // caught up, its first look at the lease behind it
      sb->follow(std::chrono::milliseconds(5));
      sb->tick();
    }
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    const auto killed = std::chrono::steady_clock::now();
    while (sb->following() && secs_since(killed) < 60) {
      sb->follow(std::chrono::milliseconds(5));
      sb->tick();
    }
    const double taken_ms = secs_since(killed) * 1e3;
    sb->upsert(trading_update(*sb, keys, 7, 1));
    const bool written = sb->sync_redis(std::chrono::seconds(30));
    const double written_ms = secs_since(killed) * 1e3;
    std::printf(
        "  standby, writer killed with -9 (%s): lease taken after %.0f ms, its first "
        "write in Redis after %.0f ms%s (lease_ttl %lld ms, looked at every %lld ms)\n",
        same_host ? "same host: its pid is gone" : "another host: the lease expires", taken_ms,
        written_ms, written ? "" : " (NOT WRITTEN)", static_cast<long long>(ttl.count()),
        static_cast<long long>(ttl.count() / 3));
    sb->close();
    remove_segment(fseg);
    remove_segment(seg);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags f(argc, argv,
          {{"positions", "200000"},
           {"rate", "100000"},
           {"seconds", "3"},
           {"warm", "1000000"},
           {"port", "0"},
           {"followers-only", "0"}},
          kUsage);
  const auto n = static_cast<std::size_t>(f.num("positions"));
  const double rate = f.real("rate");
  const double seconds = f.real("seconds");
  const auto warm_n = static_cast<std::size_t>(f.num("warm"));
  // The server this program starts unless --port names one: on cpu 1, and restarted from a thread
  // of section 3 that ends at once (so it does not die with the thread that started it).
  const bool own = f.num("port") == 0;
  std::optional<test::RedisServer> srv;
  if (own)
    srv.emplace(test::RedisServer::Options{.args = {}, .cpu = 1, .dies_with_starter = false});
  const int port = own ? srv->port() : static_cast<int>(f.num("port"));
  const std::string seg = "poscache_bench_redis_" + std::to_string(::getpid());
  Keys keys(std::max(n, warm_n));
  detail::RedisClient admin = client_at(port);
  std::printf(
      "bench_redis: redis-server on 127.0.0.1:%d, %zu positions (trading preset, 7 fields set)\n",
      port, n);

  if (f.num("followers-only") != 0) {  // section 6 alone
    followers(port, admin, seg, keys, n, rate, seconds);
    return 0;
  }
  // ---- 1. sync throughput ------------------------------------------------------------------
  // Redis runs on cpu 1; both clients measured here, the bare pipeline and the sync thread, on
  // cpu 0 (the apply thread only waits in sync_redis meanwhile). Three rounds, each a bare pass
  // and a sync pass of the same data back to back, so each ratio compares neighbours in time
  // (the host's load moves between rounds); the ratio lines give the median round.
  pin_to_cpu(0);
  redis_cmd(admin, {"FLUSHALL"});
  const double bare_naive = bare_pipeline(port, keys, n, 1024, false);
  std::printf(
      "\nsync throughput (one sync thread; floor: a bare hiredis pipeline of the same HSETs, "
      "1024 per round trip, two batches in flight)\n");
  std::printf("  %-62s %9.0f positions/s\n",
              "bare pipeline of HSETs, send 1024 then read 1024 (for scale)", bare_naive);
  struct Round {
    double bare_ins, bare_upd, ins, upd;
    double bare_upd_hset;  // fence: the bare updates without the stream's XADD (its cost)
    double cpu_bare_ins, cpu_bare_upd, cpu_ins, cpu_upd;  // redis-server's µs per position
    double me_bare_ins, me_bare_upd, me_ins, me_upd;      // this process's (the client's)
  };
  const auto redis_us = [&](double& out, double& me, auto&& pass) {
    const double c0 = cpu_seconds(own ? srv->pid() : -1), m0 = cpu_seconds(::getpid());
    const double r = pass();
    out = (cpu_seconds(own ? srv->pid() : -1) - c0) * 1e6 / static_cast<double>(n);
    me = (cpu_seconds(::getpid()) - m0) * 1e6 / static_cast<double>(n);
    return r;
  };
  const auto median_ratio = [](std::vector<Round> rs, double Round::*sync, double Round::*bare) {
    std::sort(rs.begin(), rs.end(), [&](const Round& a, const Round& b) {
      return a.*sync / a.*bare < b.*sync / b.*bare;
    });
    return rs[rs.size() / 2];
  };
  for (const RedisGuard guard : {RedisGuard::fence, RedisGuard::scripts}) {
    const bool fence = guard == RedisGuard::fence;
    std::printf("  %s\n", fence ? "guard = fence (the default): WATCH the lease, MULTI, plain "
                                  "commands, EXEC; 1024 positions per transaction"
                                : "guard = scripts (Redis Cluster): EVALSHA of the version-guarded "
                                  "script, 32 positions per call");
    std::vector<Round> rounds;
    for (int r = 0; r < 3; ++r) {
      Round rd{};
      redis_cmd(admin, {"FLUSHALL"});
      // The same data-carrying commands the sync sends: with the fence, the change stream's
      // XADD too (the scripts' path has no stream).
      rd.bare_ins = redis_us(rd.cpu_bare_ins, rd.me_bare_ins, [&] {  // HSET + ZADD (+ XADD)
        return bare_pipeline(port, keys, n, 1024, true, true, fence);
      });
      rd.bare_upd = redis_us(rd.cpu_bare_upd, rd.me_bare_upd, [&] {  // HSET (+ XADD)
        return bare_pipeline(port, keys, n, 1024, true, false, fence);
      });
      double unused = 0, unused_me = 0;
      rd.bare_upd_hset = fence ? redis_us(unused, unused_me,
                                          [&] { return bare_pipeline(port, keys, n, 1024, true); })
                               : rd.bare_upd;
      redis_cmd(admin, {"FLUSHALL"});
      WriterConfig cfg = bench_config(seg, n + 1024);
      cfg.redis = redis_at(port);
      cfg.redis->guard = guard;
      cfg.redis->flush_interval = std::chrono::seconds(3600);  // hand-offs only when timed below
      cfg.redis->sync_cpu = 0;  // like the bare pipeline's client: off Redis's cpu
      cfg.redis->warm_start = false;
      cfg.log = quiet;
      auto w = Writer::open(cfg);
      for (std::size_t i = 0; i < n; ++i) w->upsert(trading_update(*w, keys, i, i + 1));
      rd.ins = redis_us(rd.cpu_ins, rd.me_ins, [&] {
        const auto t0 = std::chrono::steady_clock::now();
        w->sync_redis(std::chrono::minutes(10));
        return static_cast<double>(n) / secs_since(t0);
      });
      for (std::size_t i = 0; i < n; ++i) w->upsert(trading_update(*w, keys, i, i + 7));
      rd.upd = redis_us(rd.cpu_upd, rd.me_upd, [&] {
        const auto t0 = std::chrono::steady_clock::now();
        w->sync_redis(std::chrono::minutes(10));
        return static_cast<double>(n) / secs_since(t0);
      });
      std::printf(
          "    round %d: inserts sync %.1f k/s, bare (HSET + ZADD%s) %.1f k/s (%.2fx); updates "
          "sync %.1f k/s, bare (HSET%s) %.1f k/s (%.2fx), bare HSET alone %.1f k/s; redis-server "
          "cpu per position: inserts "
          "%.2f / %.2f us, updates %.2f / %.2f us (sync / bare); client cpu per position: "
          "inserts %.2f / %.2f us, updates %.2f / %.2f us\n",
          r + 1, rd.ins / 1e3, fence ? " + XADD" : "", rd.bare_ins / 1e3, rd.ins / rd.bare_ins,
          rd.upd / 1e3, fence ? " + XADD" : "", rd.bare_upd / 1e3, rd.upd / rd.bare_upd,
          rd.bare_upd_hset / 1e3, rd.cpu_ins, rd.cpu_bare_ins, rd.cpu_upd, rd.cpu_bare_upd,
          rd.me_ins, rd.me_bare_ins, rd.me_upd, rd.me_bare_upd);
      rounds.push_back(rd);
      w->close();
      boost::interprocess::shared_memory_object::remove(seg.c_str());
    }
    const Round mu = median_ratio(rounds, &Round::upd, &Round::bare_upd);
    const Round mi = median_ratio(rounds, &Round::ins, &Round::bare_ins);
    std::printf("  %sratio updates %.2f (sync %.1f k/s, bare %.1f k/s)\n",
                fence ? "" : "scripts: ", mu.upd / mu.bare_upd, mu.upd / 1e3, mu.bare_upd / 1e3);
    std::printf("  %sratio inserts %.2f (sync %.1f k/s, bare %.1f k/s)\n",
                fence ? "" : "scripts: ", mi.ins / mi.bare_ins, mi.ins / 1e3, mi.bare_ins / 1e3);
    if (fence) {
      std::printf(
          "  (the bare pipelines include the change stream's XADD, as the sync does; the median "
          "round's updates against bare HSETs alone: %.2f)\n",
          mu.upd / mu.bare_upd_hset);
    }
  }
  redis_cmd(admin, {"FLUSHALL"});
  {
    WriterConfig cfg = bench_config(seg, n + 1024);
    cfg.redis = redis_at(port);
    cfg.redis->flush_interval = std::chrono::seconds(3600);  // hand-offs only when timed below
    cfg.redis->sync_cpu = 0;
    cfg.redis->warm_start = false;
    cfg.log = quiet;
    auto w = Writer::open(cfg);
    for (std::size_t i = 0; i < n; ++i) w->upsert(trading_update(*w, keys, i, i + 1));
    w->sync_redis(std::chrono::minutes(10));
    // Hot positions: 20 updates each of n/20 positions between two flushes.
    std::mt19937_64 rng(1);
    const std::size_t hot = std::max<std::size_t>(1, n / 20);
    for (std::size_t i = 0; i < n; ++i) w->upsert(trading_update(*w, keys, rng() % hot, i));
    auto t0 = std::chrono::steady_clock::now();
    w->sync_redis(std::chrono::minutes(10));
    const double coalesced = static_cast<double>(n) / secs_since(t0);
    std::printf("  %-62s %9.0f updates/s    (%zu writes)\n",
                "fence: 20 updates per position between flushes", coalesced, hot);
    // Removals: each is journaled, then written with the guarded delete script; an account
    // invalidation reads the account's set first. (Positions i = 8 per account, see Keys.)
    const std::size_t erases = n / 10, accounts = n / 80;
    for (std::size_t i = 0; i < erases; ++i)
      w->erase(*w->make_key("spot", keys.account[i], keys.instrument[i]));
    t0 = std::chrono::steady_clock::now();
    w->sync_redis(std::chrono::minutes(10));
    const double erase_rate = static_cast<double>(erases) / secs_since(t0);
    const std::uint64_t before = w->stats().invalidations;
    for (std::size_t a = 0; a < accounts; ++a) w->invalidate_account(keys.account[erases + 8 * a]);
    t0 = std::chrono::steady_clock::now();
    w->sync_redis(std::chrono::minutes(10));
    const double inval_rate = static_cast<double>(accounts) / secs_since(t0);
    std::printf("  %-62s %9.0f erases/s\n",
                "fence: erases (versions read, then UNLINK + ZREM in one transaction)", erase_rate);
    std::printf("  %-62s %9.0f accounts/s   (%llu positions removed)\n",
                "fence: account invalidations", inval_rate,
                static_cast<unsigned long long>(w->stats().invalidations - before));
    w->close();
  }
  pin_to_cpu(-1);
  boost::interprocess::shared_memory_object::remove(seg.c_str());
  {
    const std::string cmd = "redis-benchmark -p " + std::to_string(port) + " -P 64 -t hset -n " +
                            std::to_string(n) +
                            " -q 2>&1 | tr '\\r' '\\n' | grep -i 'per second' | tail -1";
    std::printf("  redis-benchmark -P 64 -t hset (one field per HSET, for scale): ");
    std::fflush(stdout);
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char line[512];
      std::string last;
      while (std::fgets(line, sizeof line, p) != nullptr) last = line;
      ::pclose(p);
      std::printf("%s", last.empty() ? "(redis-benchmark not found)\n" : last.c_str());
    }
  }

  // ---- 2 and 3. sustained rate: lag and apply latency ---------------------------------------
  std::printf("\nsustained %.0f updates/s over %zu positions, %.0f s per phase\n", rate, n,
              seconds);
  for (const char* phase :
       {"no redis", "redis up", "redis up, no change stream", "redis down", "redis restarting"}) {
    const std::string p(phase);
    if (!own && (p == "redis down" || p == "redis restarting")) {
      std::printf("  (%s: skipped, --port names a server this program does not own)\n", phase);
      continue;
    }
    redis_cmd(admin, {"FLUSHALL"});
    WriterConfig cfg = bench_config(seg, n + 1024);
    if (p != "no redis") {
      cfg.redis = redis_at(port);
      cfg.redis->warm_start = false;
      if (p == "redis up, no change stream") cfg.redis->change_stream_retention = {};
      cfg.log = quiet;
    }
    auto w = Writer::open(cfg);
    for (std::size_t i = 0; i < n; ++i) w->upsert(trading_update(*w, keys, i, i + 1));
    w->sync_redis(std::chrono::minutes(5));
    if (p == "redis down" || p == "redis restarting") srv->stop(SIGKILL);
    // Lag: a monitor samples the highest version Redis acknowledged.
    std::atomic<bool> done{false};
    std::vector<std::pair<std::int64_t, std::uint64_t>> acks;  // (time, synced version)
    acks.reserve(1 << 20);
    std::thread monitor([&] {
      pin_to_cpu(1);
      Reader r = Reader::open(seg);
      std::uint64_t last = 0;
      while (!done.load(std::memory_order_relaxed)) {
        const std::uint64_t v = mirror_status(r).synced_version;
        if (v != last) acks.emplace_back(shm::monotonic_ns(), last = v);
        // 0.5 ms between samples: the lag is milliseconds, and a monitor waking every 20 us
        // took so much of cpu 1 from the sync thread and Redis that it made the lag it measured.
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
    });
    pin_to_cpu(0);  // the apply thread; the sync thread, Redis and the monitor are on cpu 1
    std::vector<std::pair<std::uint64_t, std::int64_t>> applied;  // (version, time)
    std::vector<double> lat;
    const auto total = static_cast<std::size_t>(rate * seconds);
    applied.reserve(total);
    lat.reserve(total);
    const double npt = ns_per_tick();
    std::mt19937_64 rng(2);
    const std::int64_t start = shm::monotonic_ns();
    bool restarted = false;
    for (std::size_t k = 0; k < total; ++k) {
      const std::int64_t due =
          start + static_cast<std::int64_t>(static_cast<double>(k) * 1e9 / rate);
      while (shm::monotonic_ns() < due) w->tick();
      if (p == "redis restarting" && !restarted && k >= total / 3) {
        // Blocks this loop briefly (not timed: only the upserts are). Spawned from a thread on
        // cpu 1: a child starts on its parent thread's cpus, and taskset and redis-server
        // starting up on cpu 0 would take it from the apply thread for milliseconds.
        std::thread([&] {
          pin_to_cpu(1);
          srv->start();
        }).join();
        restarted = true;
      }
      const Update u = trading_update(*w, keys, rng() % n, k);
      const std::uint64_t t0 = ticks_ordered();
      const ApplyResult r = w->upsert(u);
      const std::uint64_t t1 = ticks_ordered();
      lat.push_back(static_cast<double>(t1 - t0) * npt);
      applied.emplace_back(r.version, shm::monotonic_ns());
    }
    pin_to_cpu(-1);
    if (p == "redis down") srv->start();
    if (p != "no redis") w->sync_redis(std::chrono::minutes(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    done = true;
    monitor.join();
    const Percentiles pl = percentiles(lat);
    print_row("apply (one upsert), " + p, pl);
    if (p.starts_with("redis up")) {
      std::vector<double> lags;
      std::size_t a = 0;
      for (const auto& [v, t] : applied) {
        while (a < acks.size() && acks[a].second < v) ++a;
        if (a == acks.size()) break;
        lags.push_back(static_cast<double>(acks[a].first - t));
      }
      Percentiles lp = percentiles(lags);
      std::printf(
          "  %-66s p50 %7.2f  p99 %7.2f  p99.9 %8.2f  max %9.2f ms  (n=%zu, flush interval %lld "
          "ms)\n",
          ("sync lag, apply -> acknowledged by Redis" +
           std::string(p == "redis up" ? "" : " (no stream)"))
              .c_str(),
          lp.p50 / 1e6, lp.p99 / 1e6, lp.p999 / 1e6, lp.max / 1e6, lp.n,
          static_cast<long long>(cfg.redis->flush_interval.count()));
    }
    w->close();
    boost::interprocess::shared_memory_object::remove(seg.c_str());
  }

  // ---- 4. warm start ---------------------------------------------------------------------------
  admin = client_at(port);  // its connection died with the restarts above
  if (warm_n > 0) {
    redis_cmd(admin, {"FLUSHALL"});
    {
      WriterConfig cfg = bench_config(seg, warm_n);
      cfg.redis = redis_at(port);
      cfg.redis->warm_start = false;
      cfg.log = quiet;
      auto w = Writer::open(cfg);
      for (std::size_t i = 0; i < warm_n; ++i) {
        w->upsert(trading_update(*w, keys, i, i + 1));
        if (i % 4096 == 0) w->tick();
      }
      w->sync_redis(std::chrono::minutes(10));
      w->close();
    }
    boost::interprocess::shared_memory_object::remove(seg.c_str());
    WriterConfig cfg = bench_config(seg, warm_n);
    cfg.redis = redis_at(port);
    cfg.log = quiet;
    const auto t0 = std::chrono::steady_clock::now();
    auto w = Writer::open(cfg);
    const double s = secs_since(t0);
    std::printf(
        "\nwarm start: %llu positions loaded from Redis into a fresh segment in %.2f s (%.0f "
        "positions/s)\n",
        static_cast<unsigned long long>(w->stats().warm_loaded), s,
        static_cast<double>(w->stats().warm_loaded) / s);

    // ---- 5. refill: Redis loses everything (FLUSHALL); the writer notices at its next
    //         transaction and writes the whole segment again, at its highest refill_rate, while
    //         the apply thread goes on at the sustained rate (its latency measured meanwhile).
    w->close();
    boost::interprocess::shared_memory_object::remove(seg.c_str());
    cfg.redis->refill_rate = 10'000'000;
    cfg.redis->warm_start = true;
    auto r = Writer::open(cfg);  // a warm start again: 1 M positions, all in Redis
    redis_cmd(admin, {"FLUSHALL"});
    pin_to_cpu(0);
    std::vector<double> lat;
    lat.reserve(1 << 22);
    const double npt = ns_per_tick();
    std::mt19937_64 rng(3);
    Reader reader = Reader::open(seg);
    const auto t1 = std::chrono::steady_clock::now();
    bool seen = false;
    for (std::size_t k = 0;; ++k) {
      const std::int64_t due = shm::monotonic_ns() + static_cast<std::int64_t>(1e9 / rate);
      while (shm::monotonic_ns() < due) r->tick();
      const Update u = trading_update(*r, keys, rng() % warm_n, k);
      const std::uint64_t a0 = ticks_ordered();
      r->upsert(u);
      lat.push_back(static_cast<double>(ticks_ordered() - a0) * npt);
      if (k % 1024 == 0) {  // until the refill is noticed, then written (the header's bit)
        const bool refilling = mirror_status(reader).refilling;
        if (refilling) seen = true;
        if ((seen && !refilling) || secs_since(t1) > 300) break;
      }
    }
    const double refill_s = secs_since(t1);
    pin_to_cpu(-1);
    r->sync_redis(std::chrono::minutes(5));
    const MirrorStatus m = mirror_status(reader);
    std::printf(
        "\nrefill after FLUSHALL: %llu positions written again in %.2f s (%.0f positions/s; "
        "refill_rate 10 M/s, so Redis and the sync thread set the pace), %llu data loss seen\n",
        static_cast<unsigned long long>(m.repushed), refill_s,
        static_cast<double>(m.repushed) / refill_s, static_cast<unsigned long long>(m.data_losses));
    print_row("apply (one upsert) during the refill, " + std::to_string(static_cast<int>(rate)) +
                  " updates/s",
              percentiles(lat));
    r->close();
    boost::interprocess::shared_memory_object::remove(seg.c_str());
  }
  followers(port, admin, seg, keys, n, rate, seconds);
  ::unlink(("/dev/shm/" + seg + ".lock").c_str());
  ::unlink(("/dev/shm/" + seg + ".readers").c_str());
  return 0;
}
