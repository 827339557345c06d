// What read-through costs (docs/read-through.md), with a real poscache-writer and a refresher
// that answers at once, against floors measured in the same run:
//   1. get_or_fetch() of a missing key (ask, the writer's dispatch, the refresher's answer over
//      the socket, the apply, the wake) against a Redis GET round trip over a unix socket;
//   2. get() of a stale entry with refresh on stale (the ask de-duplicated: the key stays
//      pending) against get() of a stale entry with refresh off;
//   3. a forced refresh until the new value is visible to a reader spinning on get().
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.hpp"
#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "poscache/refresher.hpp"
#include "tests/redis_server.hpp"

using namespace poscache;
using namespace poscache::bench;
using namespace std::chrono_literals;

namespace {

const char* const kUsage =
    "bench_refresh [--keys N] [--gets N] [--rounds N]\n"
    "  keys    missing keys fetched through get_or_fetch (default 20000)\n"
    "  gets    get() calls timed on a stale entry, refresh on and off (default 2000000)\n"
    "  rounds  forced refreshes timed to visible (default 5000)\n"
    "  busy    1: the writer busy-polls (--busy-poll)";

pid_t spawn_writer(const std::string& segment, const std::string& log, bool busy) {
  std::vector<std::string> args = {POSCACHE_WRITER_BIN,
                                   "-s",
                                   segment,
                                   "--fresh",
                                   "--capacity",
                                   "1048576",
                                   "--no-generate",
                                   "--no-redis",
                                   "--no-http",
                                   "--stats-interval",
                                   "1h",
                                   "-n",
                                   "acct:trading:50ms",
                                   "-n",
                                   "cold:trading:50ms",
                                   "-n",
                                   "hung:trading:50ms",
                                   "--refresh",
                                   "acct:both:2s:2",
                                   "--refresh",
                                   "hung:stale:60s:0"};
  if (busy) args.push_back("--busy-poll");
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  if (::posix_spawn(&pid, POSCACHE_WRITER_BIN, &fa, nullptr, argv.data(), environ) != 0) {
    std::fprintf(stderr, "cannot start %s\n", POSCACHE_WRITER_BIN);
    std::exit(1);
  }
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

double us(double ns) {
  return ns / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags(argc, argv,
              {{"keys", "20000"}, {"gets", "2000000"}, {"rounds", "5000"}, {"busy", "0"}}, kUsage);
  const auto keys = static_cast<int>(flags.num("keys"));
  const auto gets = static_cast<int>(flags.num("gets"));
  const auto rounds = static_cast<int>(flags.num("rounds"));
  const std::string segment = "poscache_bench_refresh_" + std::to_string(::getpid());
  char tmpl[] = "/tmp/bench_refresh.XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const pid_t writer = spawn_writer(segment, dir + "/writer.log", flags.num("busy") != 0);
  std::printf("bench_refresh — CPU: %s; poscache-writer (Release) with an instant refresher\n",
              cpu_name().c_str());

  std::unique_ptr<Refresher> rf;
  for (int i = 0; i < 500 && !rf; ++i) {
    try {
      RefresherConfig c;
      c.segment = segment;
      c.name = "instant";
      c.namespaces = {"acct"};
      rf = Refresher::open(c);
    } catch (const Error&) {
      std::this_thread::sleep_for(10ms);
    }
  }
  if (!rf) {
    std::fprintf(stderr, "the writer did not come up (log in %s)\n", dir.c_str());
    return 1;
  }
  // The instant refresher: a thread that answers every request with a position at once.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> answered{0};
  std::thread refresher([&] {
    pin_to_cpu(1);
    std::uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      for (const FetchRequest& q : rf->next(20ms)) {
        const std::string qty = std::to_string(++n % 1000 + 1);
        rf->upsert(q, {{"qty", qty}, {"avg_price", "101.25"}});
        answered.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  RefresherConfig hc;
  hc.segment = segment;
  hc.name = "never-answers";
  hc.namespaces = {"hung"};
  auto hung = Refresher::open(hc);

  Reader r = Reader::open(segment);
  const NamespaceId acct = *r.namespace_id("acct");
  pin_to_cpu(0);
  const double npt = ns_per_tick();

  // 1. read-through of missing keys vs a Redis GET over a unix socket.
  std::vector<double> rt;
  rt.reserve(static_cast<std::size_t>(keys));
  Position p;
  int failed = 0;
  for (int i = 0; i < keys; ++i) {
    const std::string account = "A" + std::to_string(i);
    const std::uint64_t t0 = ticks_ordered();
    const FetchResult f = r.get_or_fetch(acct, account, "AAPL", p, 1s);
    const std::uint64_t t1 = ticks_ordered();
    if (f.reason != FetchReason::fetched) ++failed;
    rt.push_back(static_cast<double>(t1 - t0) * npt);
  }
  auto redis =
      std::make_unique<test::RedisServer>(test::RedisServer::Options{.args = {}, .cpu = 1});
  redisContext* rc = redisConnectUnix(redis->socket_path().c_str());
  freeReplyObject(redisCommand(rc, "SET k:1 0123456789abcdef0123456789abcdef"));
  std::vector<double> rg;
  for (int i = 0; i < keys; ++i) {
    const std::uint64_t t0 = ticks_ordered();
    auto* reply = static_cast<redisReply*>(redisCommand(rc, "GET k:1"));
    const std::uint64_t t1 = ticks_ordered();
    freeReplyObject(reply);
    rg.push_back(static_cast<double>(t1 - t0) * npt);
  }
  redisFree(rc);
  redis.reset();
  const Percentiles prt = percentiles(rt), prg = percentiles(rg);
  print_row("get_or_fetch of a missing key, instant refresher", prt,
            failed ? "  (" + std::to_string(failed) + " not fetched)" : "");
  print_row("floor: Redis GET round trip over a unix socket", prg);
  std::printf("readthrough ratio %.2f of a Redis GET (p50 %.1f us vs %.1f us)\n", prt.p50 / prg.p50,
              us(prt.p50), us(prg.p50));

  // 2. get() of a stale entry: refresh on stale (pending: de-duplicated) vs refresh off.
  auto prod = [&] {
    ProducerConfig pc;
    pc.segment = segment;
    pc.name = "seed";
    return Producer::open(pc);
  }();
  for (const char* ns : {"hung", "cold"}) {
    const PushResult pr = prod->push(*prod->make_update(ns, "S1", "MSFT", {{"qty", "1"}}), 1s);
    prod->wait_applied(pr.seq, 5s);
  }
  std::this_thread::sleep_for(100ms);  // past stale_after (50 ms)
  const NamespaceId hung_ns = *r.namespace_id("hung"), cold_ns = *r.namespace_id("cold");
  (void)r.get(hung_ns, "S1", "MSFT", p);  // the first stale read asks; the key is pending after
  std::this_thread::sleep_for(50ms);
  // Alternating rounds of refresh off and on (the host's drift falls on both), the ratio the
  // median of the rounds' p50 ratios.
  auto time_gets = [&](NamespaceId ns, int n) {
    std::vector<double> s;
    s.reserve(static_cast<std::size_t>(n / 100));
    int stale = 0;
    for (int i = 0; i < n / 100; ++i) {
      const std::uint64_t t0 = ticks_ordered();
      for (int k = 0; k < 100; ++k) stale += r.get(ns, "S1", "MSFT", p) == ReadStatus::stale;
      s.push_back(static_cast<double>(ticks_ordered() - t0) * npt / 100.0);
    }
    if (stale != n / 100 * 100) std::printf("  (%d of the reads were not stale)\n", n - stale);
    return s;
  };
  constexpr int kRounds = 10;
  std::vector<double> on, off, ratios;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<double> a = time_gets(cold_ns, gets / kRounds / 2),
                        b = time_gets(hung_ns, gets / kRounds / 2);
    ratios.push_back(percentiles(b).p50 / percentiles(a).p50);
    off.insert(off.end(), a.begin(), a.end());
    on.insert(on.end(), b.begin(), b.end());
  }
  const Percentiles pon = percentiles(on), poff = percentiles(off), pr_ = percentiles(ratios);
  print_row("get() of a stale entry, refresh on stale (pending)", pon, "  (per get, 100 a sample)");
  print_row("floor: get() of a stale entry, refresh off", poff, "  (per get, 100 a sample)");
  std::printf(
      "stale get ratio %.3f with refresh on stale (p50 %.1f ns vs %.1f ns; median of %d "
      "alternating rounds, from %.3f to %.3f)\n",
      pr_.p50, pon.p50, poff.p50, kRounds, *std::min_element(ratios.begin(), ratios.end()),
      *std::max_element(ratios.begin(), ratios.end()));

  // 3. a forced refresh until the answer is visible to a reader spinning on get().
  const PushResult pr = prod->push(*prod->make_update("acct", "F1", "AAPL", {{"qty", "1"}}), 1s);
  prod->wait_applied(pr.seq, 5s);
  std::vector<double> fv;
  for (int i = 0; i < rounds; ++i) {
    (void)r.get(acct, "F1", "AAPL", p);
    const std::uint64_t v0 = p.version;
    const std::uint64_t t0 = ticks_ordered();
    const FetchResult f = r.get_or_fetch(acct, "F1", "AAPL", p, 1s, true);
    if (f.reason != FetchReason::fetched) continue;
    while (r.get(acct, "F1", "AAPL", p) != ReadStatus::ok || p.version == v0) {
    }
    fv.push_back(static_cast<double>(ticks_ordered() - t0) * npt);
  }
  print_row("forced refresh -> the new value visible (get_or_fetch(force))", percentiles(fv));
  std::printf("  answers by the instant refresher: %llu\n",
              static_cast<unsigned long long>(answered.load()));

  stop = true;
  refresher.join();
  (void)hung;
  ::kill(writer, SIGTERM);
  ::waitpid(writer, nullptr, 0);
  return 0;
}
