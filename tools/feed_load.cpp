// poscache-feed simulate and load (tools/feed.hpp): a small market, and a load generator that
// prints the rates it reached.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tools/feed.hpp"
#include "tools/feed_client.hpp"
#include "tools/market_sim.hpp"
#include "tools/ring_commands.hpp"
#include "tools/ring_feed.hpp"

namespace poscache::feed {

namespace {

int simulate_ring(const Target& t, MarketSim& market, double seconds) {
  auto p = open_producer(t.segment, t.sock);
  RingCommands ring(t.segment, *p);
  const auto start = std::chrono::steady_clock::now();
  std::size_t sent = 0, refused = 0;
  std::uint64_t last = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds)) {
    for (const auto& line : market.step()) {
      ++sent;
      const auto pushed = ring.push(line, std::chrono::seconds(5));
      if (pushed.result.status != poscache::PushStatus::ok) {
        ++refused;
        std::fprintf(stderr, "poscache-feed: refused: %s\n", pushed.error.c_str());
      }
      last = std::max(last, pushed.result.seq);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  p->wait_applied(last, std::chrono::seconds(10));
  const auto st = p->stats();
  if (st.rejected > 0)
    std::fprintf(stderr, "poscache-feed: the writer refused %llu; the last: %s\n",
                 static_cast<unsigned long long>(st.rejected), st.last_error.c_str());
  refused += st.rejected;
  std::printf("simulated %llu steps: %zu commands, %zu refused\n",
              static_cast<unsigned long long>(market.steps()), sent, refused);
  return refused == 0 ? kOk : kRefused;
}

int simulate_socket(const Target& t, MarketSim& market, double seconds) {
  SocketClient c(t.path());
  const auto start = std::chrono::steady_clock::now();
  std::size_t sent = 0, refused = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds)) {
    for (const auto& line : market.step()) {
      ++sent;
      if (!report(c.call(line), true)) ++refused;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("simulated %llu steps: %zu commands, %zu refused\n",
              static_cast<unsigned long long>(market.steps()), sent, refused);
  return refused == 0 ? kOk : kRefused;
}

// The time both load generators run until.
std::chrono::steady_clock::time_point deadline(std::chrono::steady_clock::time_point start,
                                               double seconds) {
  return start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     std::chrono::duration<double>(seconds));
}

int load_ring(const Target& t, const LoadArgs& a, double seconds) {
  std::atomic<std::uint64_t> applied{0}, full{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  const auto until = deadline(start, seconds);
  for (unsigned k = 0; k < a.producers; ++k) {
    threads.emplace_back([&, k] {
      try {
        auto p = open_producer(t.segment, t.sock, static_cast<int>(k + 1));
        const double per = a.rate / a.producers;
        std::vector<poscache::Update> updates;  // built once: the loop measures the push
        for (int i = 0; i < 10'000; ++i) {
          auto u = p->make_update(a.ns, "load" + std::to_string(k) + "_" + std::to_string(i), "SOL",
                                  {{"qty", std::to_string(i) + ".5"}});
          if (!u) throw std::runtime_error(u.error());
          updates.push_back(*u);
        }
        std::uint64_t n = 0, last = 0;
        for (;;) {
          const auto now = std::chrono::steady_clock::now();
          if (now >= until) break;
          if (per > 0 &&
              static_cast<double>(n) >= std::chrono::duration<double>(now - start).count() * per) {
            std::this_thread::sleep_for(std::chrono::microseconds(50));
            continue;
          }
          for (int b = 0; b < 64; ++b, ++n) {
            const poscache::PushResult r =
                p->push(updates[n % updates.size()], std::chrono::seconds(1));
            if (r.status == poscache::PushStatus::ok)
              last = r.seq;
            else
              full.fetch_add(1);
          }
        }
        p->wait_applied(last, std::chrono::seconds(30));
        applied.fetch_add(p->stats().applied, std::memory_order_relaxed);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "poscache-feed: %s\n", e.what());
        failed = true;
      }
    });
  }
  for (auto& th : threads) th.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("load: %u producer(s) via ring, %.1f s: %llu applied (%.0f/s), %llu full\n",
              a.producers, secs, static_cast<unsigned long long>(applied.load()),
              static_cast<double>(applied.load()) / secs,
              static_cast<unsigned long long>(full.load()));
  return failed ? kUnreachable : kOk;
}

int load_socket(const Target& t, const LoadArgs& a, double seconds) {
  std::atomic<std::uint64_t> applied{0}, refused{0};
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  const auto until = deadline(start, seconds);
  std::atomic<bool> failed{false};
  for (unsigned p = 0; p < a.producers; ++p) {
    threads.emplace_back([&, p] {
      try {
        SocketClient c(t.path());
        const double per = a.rate / a.producers;
        std::uint64_t n = 0;
        char buf[256];
        c.pipeline(
            [&](std::string& out) {
              for (;;) {  // pace: never ahead of rate x elapsed
                const auto now = std::chrono::steady_clock::now();
                if (now >= until) return false;
                if (per <= 0 || static_cast<double>(n) <
                                    std::chrono::duration<double>(now - start).count() * per)
                  break;
                std::this_thread::sleep_for(std::chrono::microseconds(50));
              }
              std::snprintf(buf, sizeof buf,
                            "{\"op\":\"upsert\",\"ns\":\"%s\",\"account\":\"load%u_%llu\","
                            "\"instrument\":\"SOL\",\"fields\":{\"qty\":\"%llu.5\"}}",
                            a.ns.c_str(), p, static_cast<unsigned long long>(n % 10'000),
                            static_cast<unsigned long long>(n));
              out = buf;
              ++n;
              return true;
            },
            [&](std::string_view reply) {
              if (reply.find("\"rejected\"") != std::string_view::npos) {
                if (refused.fetch_add(1) == 0)
                  std::fprintf(stderr, "poscache-feed: refused: %.*s\n",
                               static_cast<int>(reply.size()), reply.data());
              } else {
                applied.fetch_add(1, std::memory_order_relaxed);
              }
            });
      } catch (const std::exception& e) {
        std::fprintf(stderr, "poscache-feed: %s\n", e.what());
        failed = true;
      }
    });
  }
  for (auto& th : threads) th.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("load: %u producer(s) via socket, %.1f s: %llu applied (%.0f/s), %llu refused\n",
              a.producers, secs, static_cast<unsigned long long>(applied.load()),
              static_cast<double>(applied.load()) / secs,
              static_cast<unsigned long long>(refused.load()));
  return failed ? kUnreachable : refused == 0 ? kOk : kRefused;
}

}  // namespace

CLI::App* add_simulate(CLI::App& app, SimulateArgs& a) {
  auto* sim =
      app.add_subcommand("simulate", "a small market: fills, marks, quotes, lending health");
  sim->add_option("--seconds", a.seconds, "how long: 10s, 2m, ... (a bare number is seconds)")
      ->check(duration_flag());
  sim->add_option("--wallets", a.wallets, "trading wallets (default 8)");
  sim->add_option("--trading-ns", a.trading_ns);
  sim->add_option("--lending-ns", a.lending_ns, "\"\" for none");
  sim->add_option("--quotes-ns", a.quotes_ns, "\"\" for none");
  return sim;
}

int simulate(const Target& t, const SimulateArgs& a) {
  MarketConfig mc;
  mc.trading_ns = a.trading_ns;
  mc.lending_ns = a.lending_ns;
  mc.quotes_ns = a.quotes_ns;
  mc.wallets = a.wallets;
  mc.trade_prefix = "sim" + std::to_string(::getpid());
  MarketSim market(mc);
  const double seconds = checked_seconds(a.seconds);
  return t.via == "ring" ? simulate_ring(t, market, seconds) : simulate_socket(t, market, seconds);
}

CLI::App* add_load(CLI::App& app, LoadArgs& a) {
  auto* ld = app.add_subcommand("load", "load generator: upserts as fast as asked, prints rates");
  ld->add_option("--producers", a.producers, "connections, each its own thread (default 1)");
  ld->add_option("--rate", a.rate, "commands per second in all (default 100000; 0 = flat out)");
  ld->add_option("--seconds", a.seconds, "how long: 10s, 2m, ... (a bare number is seconds)")
      ->check(duration_flag());
  ld->add_option("--ns", a.ns, "namespace (default spot)");
  return ld;
}

int load(const Target& t, const LoadArgs& a) {
  const double seconds = checked_seconds(a.seconds);
  return t.via == "ring" ? load_ring(t, a, seconds) : load_socket(t, a, seconds);
}

}  // namespace poscache::feed
