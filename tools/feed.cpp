// poscache-feed: sends ingest commands to a running poscache-writer, as any producer would.
//
//   poscache-feed -s SEGMENT upsert NS ACCOUNT INSTRUMENT field=value... [--replace] [--seq N]
//   poscache-feed -s SEGMENT fill NS ACCOUNT INSTRUMENT buy|sell QTY PRICE [--fee F] [--trade-id
//   ID] poscache-feed -s SEGMENT mark NS INSTRUMENT PRICE [--account A] poscache-feed -s SEGMENT
//   add NS ACCOUNT INSTRUMENT FIELD (--by N | --reset) poscache-feed -s SEGMENT erase NS ACCOUNT
//   INSTRUMENT poscache-feed -s SEGMENT invalidate (--account A [--ns NS] | --ns NS | --glob G |
//   --all) poscache-feed -s SEGMENT batch FILE.jsonl (one batch: all or nothing)
//   poscache-feed -s SEGMENT replay FILE.jsonl         (the JSON-lines command format; - =
//   stdin) poscache-feed -s SEGMENT simulate [--seconds S]    (a small market: fills, marks,
//   lending) poscache-feed -s SEGMENT load --producers N --rate R --seconds S   (prints rates)
//
// Exit codes: 0 every command applied (or ignored as a duplicate / stale / not found, which is
// printed) · 1 a command was refused (its error printed) · 2 usage · 3 the writer is unreachable.
#include <CLI/CLI.hpp>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "poscache/version.h"
#include "tools/feed_client.hpp"
#include "tools/market_sim.hpp"
#include "tools/ring_commands.hpp"
#include "tools/ring_feed.hpp"
#include "values/duration.hpp"

using nlohmann::json;
using namespace poscache::feed;

namespace {

constexpr std::uint64_t kRingCapacity = 4096;  // the feed's ring (ProducerConfig's default)

std::string socket_path(const std::string& segment, const std::string& explicit_path) {
  return explicit_path.empty() ? "/dev/shm/" + segment + ".sock" : explicit_path;
}

// Prints a reply for a person; returns false if the command was refused.
bool report(std::string_view reply, bool quiet) {
  const json r = json::parse(reply, nullptr, false);
  if (r.is_discarded() || !r.contains("status")) {
    std::fprintf(stderr, "poscache-feed: unexpected reply: %.*s\n", static_cast<int>(reply.size()),
                 reply.data());
    return false;
  }
  const std::string status = r["status"];
  if (status == "rejected") {
    std::fprintf(stderr, "poscache-feed: refused: %s\n", r.value("error", "").c_str());
    return false;
  }
  if (!quiet) {
    std::string s = status;
    if (r.contains("version")) s += " version " + std::to_string(r["version"].get<std::uint64_t>());
    if (r.contains("count"))
      s += ", " + std::to_string(r["count"].get<std::uint64_t>()) + " positions";
    std::printf("%s\n", s.c_str());
  }
  return true;
}

std::unique_ptr<poscache::Producer> open_producer(const std::string& segment,
                                                  const std::string& sock, int instance = 0) {
  poscache::ProducerConfig pc;
  pc.segment = segment;
  pc.socket = sock;
  pc.name = "feed-" + std::to_string(::getpid()) + (instance ? "-" + std::to_string(instance) : "");
  pc.capacity = kRingCapacity;
  return poscache::Producer::open(pc);
}

// rebuild NS: asks the writer, then (with a wait) prints the rebuild's progress from the counters
// the writer publishes beside the segment, until no rebuild runs or the wait is over.
int rebuild(const std::string& segment, const std::string& path, const std::string& ns,
            std::chrono::nanoseconds wait) {
  std::optional<poscache::Reader> reader;
  std::uint64_t before = 0;
  if (wait.count() > 0) {
    reader.emplace(poscache::Reader::open(segment));
    if (auto st = reader->refresh_stats()) before = st->rebuild_positions;
  }
  SocketClient c(path);
  const std::string reply = c.call(json{{"op", "rebuild"}, {"ns", ns}}.dump());
  if (!report(reply, true)) return kRefused;
  std::printf("rebuild of '%s' asked (request %s)\n", ns.c_str(),
              json::parse(reply, nullptr, false).value("request", json()).dump().c_str());
  if (wait.count() == 0) return kOk;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto st = reader->refresh_stats();
    if (!st) break;
    const std::uint64_t got = st->rebuild_positions - before;
    if (st->rebuilds_running == 0) {
      std::printf("rebuild done: %llu positions\n", static_cast<unsigned long long>(got));
      return kOk;
    }
    std::printf("rebuilding: %llu positions so far\n", static_cast<unsigned long long>(got));
    std::fflush(stdout);
    if (std::chrono::steady_clock::now() >= deadline) {
      std::fprintf(stderr, "poscache-feed: rebuild still running after the wait\n");
      return kRefused;
    }
  }
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"poscache-feed: send position commands to a running poscache-writer"};
  app.set_version_flag("--version", "poscache-feed " POSCACHE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // -s, --json, --via ... after the subcommand too
  std::string segment = "poscache", sock;
  std::string via = "ring";
  app.add_option("-s,--segment", segment,
                 "the writer's segment (its socket is /dev/shm/SEGMENT.sock)")
      ->envname("POSCACHE_SEGMENT");
  app.add_option("--socket", sock, "the writer's ingest socket, if not the segment's default");
  app.add_option("--via", via,
                 "ring (default: a producer ring of this process, poscache::Producer) or socket "
                 "(JSON lines)")
      ->check(CLI::IsMember({"ring", "socket"}));

  std::string ns, account, instrument, side, qty, price, fee, trade_id, field, glob;
  std::vector<std::string> assignments;
  bool replace = false, reset = false, all = false;
  // --seq and --by as text, passed on as JSON strings: the one decoder checks them (CLI11 would
  // clamp 10^23 to INT64_MAX and wrap -1 to 2^64 - 1, and take 0x10 or " 5").
  std::optional<std::string> seq;
  std::optional<std::string> by;
  std::optional<std::string> opt_account, opt_ns, opt_glob;

  auto* up = app.add_subcommand("upsert", "set fields of a position (merge, or --replace)");
  up->add_option("ns", ns)->required();
  up->add_option("account", account)->required();
  up->add_option("instrument", instrument)->required();
  up->add_option("fields", assignments, "field=value ...")->required();
  up->add_flag("--replace", replace, "the given fields become the whole record");
  up->add_option("--seq", seq, "the producer's source sequence");

  auto* fl =
      app.add_subcommand("fill", "a trade: qty, average price, realized P&L and fees follow");
  fl->add_option("ns", ns)->required();
  fl->add_option("account", account)->required();
  fl->add_option("instrument", instrument)->required();
  fl->add_option("side", side)->required()->check(CLI::IsMember({"buy", "sell"}));
  fl->add_option("qty", qty)->required();
  fl->add_option("price", price)->required();
  fl->add_option("--fee", fee);
  fl->add_option("--trade-id", trade_id, "de-duplicates redelivered fills");

  auto* mk = app.add_subcommand("mark", "mark price and unrealized P&L, for one or every account");
  mk->add_option("ns", ns)->required();
  mk->add_option("instrument", instrument)->required();
  mk->add_option("price", price)->required();
  mk->add_option("--account", opt_account);

  auto* ad = app.add_subcommand("add", "add to an int64 field, or reset it to 0");
  ad->add_option("ns", ns)->required();
  ad->add_option("account", account)->required();
  ad->add_option("instrument", instrument)->required();
  ad->add_option("field", field)->required();
  auto* by_opt = ad->add_option("--by", by);
  ad->add_flag("--reset", reset)->excludes(by_opt);

  auto* er = app.add_subcommand("erase", "remove one position");
  er->add_option("ns", ns)->required();
  er->add_option("account", account)->required();
  er->add_option("instrument", instrument)->required();

  auto* inv = app.add_subcommand("invalidate", "remove positions by account, namespace or glob");
  inv->add_option("--account", opt_account);
  inv->add_option("--ns", opt_ns);
  inv->add_option("--glob", opt_glob, "fnmatch over ns:account:instrument");
  inv->add_flag("--all", all);

  auto* rb = app.add_subcommand(
      "rebuild", "ask the namespace's refreshers to reload it whole (docs/read-through.md)");
  rb->add_option("ns", ns)->required();
  std::string rebuild_wait_text = "0";
  rb->add_option("--wait", rebuild_wait_text,
                 "follow its progress until it ends or this long: 60s, 5m, ... (default: do not "
                 "wait)");

  std::string file;
  auto* bt = app.add_subcommand(
      "batch", "send a JSON-lines file (- for stdin) as ONE batch: applied all or nothing");
  bt->add_option("file", file)->required();
  auto* rp = app.add_subcommand("replay", "send a JSON-lines command file (- for stdin)");
  rp->add_option("file", file)->required();
  // One duration syntax (values/duration.hpp); a bad one is a usage error naming the flag.
  const CLI::Validator duration(
      [](std::string& v) {
        auto d = poscache::detail::parse_duration(v, true);
        return d ? std::string() : d.error();
      },
      "DURATION");
  std::string replay_timeout_text = "60s";
  rp->add_option("--timeout", replay_timeout_text,
                 "via ring: how long a command may wait for room while the writer applies "
                 "nothing: 60s, 500ms, ... (a bare number is seconds; default 60s; it then "
                 "stops, naming the line)")
      ->check(duration);

  std::string seconds_text = "10s";
  double rate = 100'000;
  unsigned producers = 1;
  std::uint32_t wallets = 8;
  auto* sim =
      app.add_subcommand("simulate", "a small market: fills, marks, quotes, lending health");
  sim->add_option("--seconds", seconds_text, "how long: 10s, 2m, ... (a bare number is seconds)")
      ->check(duration);
  sim->add_option("--wallets", wallets, "trading wallets (default 8)");
  std::string trading_ns = "spot", lending_ns = "lending", quotes_ns = "quotes";
  sim->add_option("--trading-ns", trading_ns);
  sim->add_option("--lending-ns", lending_ns, "\"\" for none");
  sim->add_option("--quotes-ns", quotes_ns, "\"\" for none");

  auto* ld = app.add_subcommand("load", "load generator: upserts as fast as asked, prints rates");
  ld->add_option("--producers", producers, "connections, each its own thread (default 1)");
  ld->add_option("--rate", rate, "commands per second in all (default 100000; 0 = flat out)");
  ld->add_option("--seconds", seconds_text, "how long: 10s, 2m, ... (a bare number is seconds)")
      ->check(duration);
  ld->add_option("--ns", trading_ns, "namespace (default spot)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {  // --help, --version: 0; a usage error: 2, as documented
    return app.exit(e) == 0 ? 0 : kUsage;
  }
  // Checked by CLI11 (the duration validator above).
  const double replay_timeout =
      std::chrono::duration<double>(*poscache::detail::parse_duration(replay_timeout_text, true))
          .count();
  const double seconds =
      std::chrono::duration<double>(*poscache::detail::parse_duration(seconds_text, true)).count();
  const std::string path = socket_path(segment, sock);

  try {
    json cmd;
    if (*up) {
      json fields = json::object();
      for (const auto& a : assignments) {
        const auto eq = a.find('=');
        if (eq == std::string::npos || eq == 0) {
          std::fprintf(stderr, "poscache-feed: '%s' is not field=value\n", a.c_str());
          return kUsage;
        }
        fields[a.substr(0, eq)] = a.substr(eq + 1);
      }
      cmd = {{"op", "upsert"},     {"ns", ns},
             {"account", account}, {"instrument", instrument},
             {"fields", fields},   {"mode", replace ? "replace" : "merge"}};
      if (seq) {
        std::uint64_t v = 0;
        const auto r = std::from_chars(seq->data(), seq->data() + seq->size(), v);
        if (seq->empty() || r.ec != std::errc() || r.ptr != seq->data() + seq->size()) {
          std::fprintf(stderr,
                       "poscache-feed: --seq '%s' is not an integer from 0 to "
                       "18446744073709551615\n",
                       seq->c_str());
          return kUsage;
        }
        cmd["seq"] = v;
      }
    } else if (*fl) {
      cmd = {{"op", "fill"}, {"ns", ns},   {"account", account}, {"instrument", instrument},
             {"side", side}, {"qty", qty}, {"price", price}};
      if (!fee.empty()) cmd["fee"] = fee;
      if (!trade_id.empty()) cmd["trade_id"] = trade_id;
    } else if (*mk) {
      cmd = {{"op", "mark"}, {"ns", ns}, {"instrument", instrument}, {"price", price}};
      if (opt_account) cmd["account"] = *opt_account;
    } else if (*ad) {
      if (!by && !reset) {
        std::fprintf(stderr, "poscache-feed: add needs --by N or --reset\n");
        return kUsage;
      }
      cmd = {{"op", "add"},
             {"ns", ns},
             {"account", account},
             {"instrument", instrument},
             {"field", field}};
      if (reset)
        cmd["reset"] = true;
      else
        cmd["by"] = *by;
    } else if (*er) {
      cmd = {{"op", "erase"}, {"ns", ns}, {"account", account}, {"instrument", instrument}};
    } else if (*inv) {
      cmd = {{"op", "invalidate"}};
      if (opt_account) cmd["account"] = *opt_account;
      if (opt_ns) cmd["ns"] = *opt_ns;
      if (opt_glob) cmd["glob"] = *opt_glob;
      if (all) cmd["all"] = true;
    }
    if (*rb) {
      auto wait = poscache::detail::parse_duration(rebuild_wait_text, true);
      if (!wait) {
        std::fprintf(stderr, "poscache-feed: rebuild --wait: %s\n", wait.error().c_str());
        return kUsage;
      }
      return rebuild(segment, path, ns, *wait);
    }
    if (!cmd.is_null()) {
      if (via == "ring") {
        auto p = open_producer(segment, sock);
        return ring_one(segment, *p, cmd);
      }
      SocketClient c(path);
      return report(c.call(cmd.dump()), false) ? kOk : kRefused;
    }

    // A file of JSON lines, or standard input ("-").
    std::ifstream in_file;
    std::istream* in = &std::cin;
    if ((*bt || *rp) && file != "-") {
      in_file.open(file);
      if (!in_file) {
        std::fprintf(stderr, "poscache-feed: cannot read %s\n", file.c_str());
        return kUsage;
      }
      in = &in_file;
    }

    if (*bt) {
      std::string line, commands;
      std::size_t n = 0;
      while (std::getline(*in, line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        commands += (n++ == 0 ? "" : ",") + line;
      }
      const std::string batch = R"({"op":"batch","commands":[)" + commands + "]}";
      if (via == "ring") {
        auto p = open_producer(segment, sock);
        return ring_batch(segment, *p, batch, n);
      }
      SocketClient c(path);
      const std::string reply = c.call(batch);
      const json r = json::parse(reply, nullptr, false);
      if (!report(reply, true)) return kRefused;
      std::string out = "batch of " + std::to_string(n) + ":";  // each command's outcome
      for (const auto& one : r.value("results", json::array()))
        out += " " + one.value("status", std::string("?"));
      std::printf("%s\n", out.c_str());
      return kOk;
    }

    if (*rp) {
      if (via == "ring") {
        auto p = open_producer(segment, sock);
        return ring_replay(segment, *p, *in,
                           std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::duration<double>(replay_timeout)),
                           kRingCapacity);
      }
      SocketClient c(path);
      std::size_t line_no = 0, refused = 0, replied = 0;
      std::vector<std::size_t> numbers;  // the file line of each command sent, for errors
      std::map<std::string, std::size_t> statuses;
      std::string l;
      c.pipeline(
          [&](std::string& out) {
            while (std::getline(*in, l)) {
              ++line_no;
              if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
              numbers.push_back(line_no);
              out = l;
              return true;
            }
            return false;
          },
          [&](std::string_view reply) {
            const json r = json::parse(reply, nullptr, false);
            const std::string st = r.is_discarded() ? "?" : r.value("status", "?");
            ++statuses[st];
            if (st == "rejected") {
              ++refused;
              std::fprintf(stderr, "poscache-feed: line %zu refused: %s\n", numbers[replied],
                           r.value("error", "").c_str());
            }
            ++replied;
          });
      std::string summary;
      for (const auto& [k, v] : statuses) summary += " " + k + " " + std::to_string(v);
      std::printf("replayed %zu commands:%s\n", replied, summary.c_str());
      return refused == 0 ? kOk : kRefused;
    }

    if (*sim) {
      MarketConfig mc;
      mc.trading_ns = trading_ns;
      mc.lending_ns = lending_ns;
      mc.quotes_ns = quotes_ns;
      mc.wallets = wallets;
      mc.trade_prefix = "sim" + std::to_string(::getpid());
      MarketSim market(mc);
      if (via == "ring") {
        auto p = open_producer(segment, sock);
        RingCommands ring(segment, *p);
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
      SocketClient c(path);
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

    if (*ld && via == "ring") {
      std::atomic<std::uint64_t> applied{0}, full{0};
      std::atomic<bool> failed{false};
      std::vector<std::thread> threads;
      const auto start = std::chrono::steady_clock::now();
      const auto until = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(seconds));
      for (unsigned k = 0; k < producers; ++k) {
        threads.emplace_back([&, k] {
          try {
            auto p = open_producer(segment, sock, static_cast<int>(k + 1));
            const double per = rate / producers;
            std::vector<poscache::Update> updates;  // built once: the loop measures the push
            for (int i = 0; i < 10'000; ++i) {
              auto u =
                  p->make_update(trading_ns, "load" + std::to_string(k) + "_" + std::to_string(i),
                                 "SOL", {{"qty", std::to_string(i) + ".5"}});
              if (!u) throw std::runtime_error(u.error());
              updates.push_back(*u);
            }
            std::uint64_t n = 0, last = 0;
            for (;;) {
              const auto now = std::chrono::steady_clock::now();
              if (now >= until) break;
              if (per > 0 && static_cast<double>(n) >=
                                 std::chrono::duration<double>(now - start).count() * per) {
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
      for (auto& t : threads) t.join();
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("load: %u producer(s) via ring, %.1f s: %llu applied (%.0f/s), %llu full\n",
                  producers, secs, static_cast<unsigned long long>(applied.load()),
                  static_cast<double>(applied.load()) / secs,
                  static_cast<unsigned long long>(full.load()));
      return failed ? kUnreachable : kOk;
    }
    if (*ld) {
      std::atomic<std::uint64_t> applied{0}, refused{0};
      std::vector<std::thread> threads;
      const auto start = std::chrono::steady_clock::now();
      const auto until = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(seconds));
      std::atomic<bool> failed{false};
      for (unsigned p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
          try {
            SocketClient c(path);
            const double per = rate / producers;
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
                                trading_ns.c_str(), p, static_cast<unsigned long long>(n % 10'000),
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
      for (auto& t : threads) t.join();
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("load: %u producer(s) via socket, %.1f s: %llu applied (%.0f/s), %llu refused\n",
                  producers, secs, static_cast<unsigned long long>(applied.load()),
                  static_cast<double>(applied.load()) / secs,
                  static_cast<unsigned long long>(refused.load()));
      return failed ? kUnreachable : refused == 0 ? kOk : kRefused;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "poscache-feed: %s\n", e.what());
    return kUnreachable;
  }
  return kUsage;
}
