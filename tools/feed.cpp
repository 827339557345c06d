// poscache-feed: sends ingest commands to a running poscache-writer, as any producer would.
//
//   poscache-feed -s SEGMENT upsert NS ACCOUNT INSTRUMENT field=value... [--replace] [--seq N]
//   poscache-feed -s SEGMENT fill NS ACCOUNT INSTRUMENT buy|sell QTY PRICE [--fee F]
//                            [--trade-id ID]
//   poscache-feed -s SEGMENT mark NS INSTRUMENT PRICE [--account A]
//   poscache-feed -s SEGMENT add NS ACCOUNT INSTRUMENT FIELD (--by N | --reset)
//   poscache-feed -s SEGMENT erase NS ACCOUNT INSTRUMENT
//   poscache-feed -s SEGMENT invalidate (--account A [--ns NS] | --ns NS | --glob G | --all)
//   poscache-feed -s SEGMENT rebuild NS [--wait D]
//   poscache-feed -s SEGMENT batch FILE.jsonl          (one batch: all or nothing)
//   poscache-feed -s SEGMENT replay FILE.jsonl         (the JSON-lines command format; - = stdin)
//   poscache-feed -s SEGMENT simulate [--seconds S]    (a small market: fills, marks, lending)
//   poscache-feed -s SEGMENT load --producers N --rate R --seconds S   (prints rates)
//
// Each subcommand is a pair of functions: add_<name> declares its options, and one function
// runs it (simulate and load: tools/feed_load.cpp).
//
// Exit codes: 0 every command applied (or ignored as a duplicate / stale / not found, which is
// printed) · 1 a command was refused (its error printed) · 2 usage · 3 the writer is unreachable.
#include "tools/feed.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "poscache/reader.hpp"
#include "poscache/version.h"
#include "shm/values/duration.hpp"
#include "tools/feed_client.hpp"
#include "tools/ring_feed.hpp"

using nlohmann::json;
using namespace poscache::feed;

namespace poscache::feed {

std::string Target::path() const {
  return sock.empty() ? "/dev/shm/" + segment + ".sock" : sock;
}

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

std::unique_ptr<Producer> open_producer(const std::string& segment, const std::string& sock,
                                        int instance) {
  ProducerConfig pc;
  pc.segment = segment;
  pc.socket = sock;
  pc.name = "feed-" + std::to_string(::getpid()) + (instance ? "-" + std::to_string(instance) : "");
  pc.capacity = kRingCapacity;
  return Producer::open(pc);
}

CLI::Validator duration_flag() {
  return CLI::Validator(
      [](std::string& v) {
        auto d = detail::parse_duration(v, true);
        return d ? std::string() : d.error();
      },
      "DURATION");
}

double checked_seconds(const std::string& text) {
  return std::chrono::duration<double>(*detail::parse_duration(text, true)).count();
}

}  // namespace poscache::feed

namespace {

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

// One command: through a producer ring of this process, or the socket.
int send_one(const Target& t, const json& cmd) {
  if (t.via == "ring") {
    auto p = open_producer(t.segment, t.sock);
    return ring_one(t.segment, *p, cmd);
  }
  SocketClient c(t.path());
  return report(c.call(cmd.dump()), false) ? kOk : kRefused;
}

// The key a command names, as positional arguments.
struct Key {
  std::string ns, account, instrument;
};
void add_key(CLI::App* sub, Key& k) {
  sub->add_option("ns", k.ns)->required();
  sub->add_option("account", k.account)->required();
  sub->add_option("instrument", k.instrument)->required();
}

struct UpsertArgs {
  Key key;
  std::vector<std::string> assignments;
  bool replace = false;
  // --seq as text, passed on as a JSON number once checked here (CLI11 would clamp 10^23 to
  // INT64_MAX and wrap -1 to 2^64 - 1, and take 0x10 or " 5").
  std::optional<std::string> seq;
};
CLI::App* add_upsert(CLI::App& app, UpsertArgs& a) {
  auto* up = app.add_subcommand("upsert", "set fields of a position (merge, or --replace)");
  add_key(up, a.key);
  up->add_option("fields", a.assignments, "field=value ...")->required();
  up->add_flag("--replace", a.replace, "the given fields become the whole record");
  up->add_option("--seq", a.seq, "the producer's source sequence");
  return up;
}
int upsert(const Target& t, const UpsertArgs& a) {
  json fields = json::object();
  for (const auto& f : a.assignments) {
    const auto eq = f.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "poscache-feed: '%s' is not field=value\n", f.c_str());
      return kUsage;
    }
    fields[f.substr(0, eq)] = f.substr(eq + 1);
  }
  json cmd = {{"op", "upsert"},           {"ns", a.key.ns},
              {"account", a.key.account}, {"instrument", a.key.instrument},
              {"fields", fields},         {"mode", a.replace ? "replace" : "merge"}};
  if (a.seq) {
    const std::string& seq = *a.seq;
    std::uint64_t v = 0;
    const auto r = std::from_chars(seq.data(), seq.data() + seq.size(), v);
    if (seq.empty() || r.ec != std::errc() || r.ptr != seq.data() + seq.size()) {
      std::fprintf(stderr,
                   "poscache-feed: --seq '%s' is not an integer from 0 to "
                   "18446744073709551615\n",
                   seq.c_str());
      return kUsage;
    }
    cmd["seq"] = v;
  }
  return send_one(t, cmd);
}

struct FillArgs {
  Key key;
  std::string side, qty, price, fee, trade_id;
};
CLI::App* add_fill(CLI::App& app, FillArgs& a) {
  auto* fl =
      app.add_subcommand("fill", "a trade: qty, average price, realized P&L and fees follow");
  add_key(fl, a.key);
  fl->add_option("side", a.side)->required()->check(CLI::IsMember({"buy", "sell"}));
  fl->add_option("qty", a.qty)->required();
  fl->add_option("price", a.price)->required();
  fl->add_option("--fee", a.fee);
  fl->add_option("--trade-id", a.trade_id, "de-duplicates redelivered fills");
  return fl;
}
int fill(const Target& t, const FillArgs& a) {
  json cmd = {{"op", "fill"},
              {"ns", a.key.ns},
              {"account", a.key.account},
              {"instrument", a.key.instrument},
              {"side", a.side},
              {"qty", a.qty},
              {"price", a.price}};
  if (!a.fee.empty()) cmd["fee"] = a.fee;
  if (!a.trade_id.empty()) cmd["trade_id"] = a.trade_id;
  return send_one(t, cmd);
}

struct MarkArgs {
  std::string ns, instrument, price;
  std::optional<std::string> account;
};
CLI::App* add_mark(CLI::App& app, MarkArgs& a) {
  auto* mk = app.add_subcommand("mark", "mark price and unrealized P&L, for one or every account");
  mk->add_option("ns", a.ns)->required();
  mk->add_option("instrument", a.instrument)->required();
  mk->add_option("price", a.price)->required();
  mk->add_option("--account", a.account);
  return mk;
}
int mark(const Target& t, const MarkArgs& a) {
  json cmd = {{"op", "mark"}, {"ns", a.ns}, {"instrument", a.instrument}, {"price", a.price}};
  if (a.account) cmd["account"] = *a.account;
  return send_one(t, cmd);
}

struct AddArgs {
  Key key;
  std::string field;
  std::optional<std::string> by;  // as text, checked by the one decoder (see UpsertArgs::seq)
  bool reset = false;
};
CLI::App* add_add(CLI::App& app, AddArgs& a) {
  auto* ad = app.add_subcommand("add", "add to an int64 field, or reset it to 0");
  add_key(ad, a.key);
  ad->add_option("field", a.field)->required();
  auto* by_opt = ad->add_option("--by", a.by);
  ad->add_flag("--reset", a.reset)->excludes(by_opt);
  return ad;
}
int add(const Target& t, const AddArgs& a) {
  if (!a.by && !a.reset) {
    std::fprintf(stderr, "poscache-feed: add needs --by N or --reset\n");
    return kUsage;
  }
  json cmd = {{"op", "add"},
              {"ns", a.key.ns},
              {"account", a.key.account},
              {"instrument", a.key.instrument},
              {"field", a.field}};
  if (a.reset)
    cmd["reset"] = true;
  else
    cmd["by"] = *a.by;
  return send_one(t, cmd);
}

CLI::App* add_erase(CLI::App& app, Key& k) {
  auto* er = app.add_subcommand("erase", "remove one position");
  add_key(er, k);
  return er;
}
int erase(const Target& t, const Key& k) {
  return send_one(
      t, {{"op", "erase"}, {"ns", k.ns}, {"account", k.account}, {"instrument", k.instrument}});
}

struct InvalidateArgs {
  std::optional<std::string> account, ns, glob;
  bool all = false;
};
CLI::App* add_invalidate(CLI::App& app, InvalidateArgs& a) {
  auto* inv = app.add_subcommand("invalidate", "remove positions by account, namespace or glob");
  inv->add_option("--account", a.account);
  inv->add_option("--ns", a.ns);
  inv->add_option("--glob", a.glob, "fnmatch over ns:account:instrument");
  inv->add_flag("--all", a.all);
  return inv;
}
int invalidate(const Target& t, const InvalidateArgs& a) {
  json cmd = {{"op", "invalidate"}};
  if (a.account) cmd["account"] = *a.account;
  if (a.ns) cmd["ns"] = *a.ns;
  if (a.glob) cmd["glob"] = *a.glob;
  if (a.all) cmd["all"] = true;
  return send_one(t, cmd);
}

struct RebuildArgs {
  std::string ns, wait = "0";
};
CLI::App* add_rebuild(CLI::App& app, RebuildArgs& a) {
  auto* rb = app.add_subcommand(
      "rebuild", "ask the namespace's refreshers to reload it whole (docs/read-through.md)");
  rb->add_option("ns", a.ns)->required();
  rb->add_option("--wait", a.wait,
                 "follow its progress until it ends or this long: 60s, 5m, ... (default: do not "
                 "wait)");
  return rb;
}
int rebuild(const Target& t, const RebuildArgs& a) {
  auto wait = poscache::detail::parse_duration(a.wait, true);
  if (!wait) {
    std::fprintf(stderr, "poscache-feed: rebuild --wait: %s\n", wait.error().c_str());
    return kUsage;
  }
  return rebuild(t.segment, t.path(), a.ns, *wait);
}

// A file of JSON lines, or standard input ("-"); null (the reason printed) if it cannot be read.
std::istream* open_input(const std::string& file, std::ifstream& in_file) {
  if (file == "-") return &std::cin;
  in_file.open(file);
  if (!in_file) {
    std::fprintf(stderr, "poscache-feed: cannot read %s\n", file.c_str());
    return nullptr;
  }
  return &in_file;
}

CLI::App* add_batch(CLI::App& app, std::string& file) {
  auto* bt = app.add_subcommand(
      "batch", "send a JSON-lines file (- for stdin) as ONE batch: applied all or nothing");
  bt->add_option("file", file)->required();
  return bt;
}
int batch(const Target& t, const std::string& file) {
  std::ifstream in_file;
  std::istream* in = open_input(file, in_file);
  if (in == nullptr) return kUsage;
  std::string line, commands;
  std::size_t n = 0;
  while (std::getline(*in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    commands += (n++ == 0 ? "" : ",") + line;
  }
  const std::string line_of_all = R"({"op":"batch","commands":[)" + commands + "]}";
  if (t.via == "ring") {
    auto p = open_producer(t.segment, t.sock);
    return ring_batch(t.segment, *p, line_of_all, n);
  }
  SocketClient c(t.path());
  const std::string reply = c.call(line_of_all);
  const json r = json::parse(reply, nullptr, false);
  if (!report(reply, true)) return kRefused;
  std::string out = "batch of " + std::to_string(n) + ":";  // each command's outcome
  for (const auto& one : r.value("results", json::array()))
    out += " " + one.value("status", std::string("?"));
  std::printf("%s\n", out.c_str());
  return kOk;
}

struct ReplayArgs {
  std::string file, timeout = "60s";
};
CLI::App* add_replay(CLI::App& app, ReplayArgs& a) {
  auto* rp = app.add_subcommand("replay", "send a JSON-lines command file (- for stdin)");
  rp->add_option("file", a.file)->required();
  rp->add_option("--timeout", a.timeout,
                 "via ring: how long a command may wait for room while the writer applies "
                 "nothing: 60s, 500ms, ... (a bare number is seconds; default 60s; it then "
                 "stops, naming the line)")
      ->check(duration_flag());
  return rp;
}
int replay(const Target& t, const ReplayArgs& a) {
  std::ifstream in_file;
  std::istream* in = open_input(a.file, in_file);
  if (in == nullptr) return kUsage;
  if (t.via == "ring") {
    auto p = open_producer(t.segment, t.sock);
    return ring_replay(t.segment, *p, *in,
                       std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::duration<double>(checked_seconds(a.timeout))),
                       kRingCapacity);
  }
  SocketClient c(t.path());
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"poscache-feed: send position commands to a running poscache-writer"};
  app.set_version_flag("--version", "poscache-feed " POSCACHE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // -s, --json, --via ... after the subcommand too
  Target t;
  app.add_option("-s,--segment", t.segment,
                 "the writer's segment (its socket is /dev/shm/SEGMENT.sock)")
      ->envname("POSCACHE_SEGMENT");
  app.add_option("--socket", t.sock, "the writer's ingest socket, if not the segment's default");
  app.add_option("--via", t.via,
                 "ring (default: a producer ring of this process, poscache::Producer) or socket "
                 "(JSON lines)")
      ->check(CLI::IsMember({"ring", "socket"}));

  UpsertArgs up;
  FillArgs fl;
  MarkArgs mk;
  AddArgs ad;
  Key er;
  InvalidateArgs inv;
  RebuildArgs rb;
  std::string batch_file;
  ReplayArgs rp;
  SimulateArgs sim;
  LoadArgs ld;
  const std::vector<std::pair<CLI::App*, std::function<int()>>> subcommands = {
      {add_upsert(app, up), [&] { return upsert(t, up); }},
      {add_fill(app, fl), [&] { return fill(t, fl); }},
      {add_mark(app, mk), [&] { return mark(t, mk); }},
      {add_add(app, ad), [&] { return add(t, ad); }},
      {add_erase(app, er), [&] { return erase(t, er); }},
      {add_invalidate(app, inv), [&] { return invalidate(t, inv); }},
      {add_rebuild(app, rb), [&] { return rebuild(t, rb); }},
      {add_batch(app, batch_file), [&] { return batch(t, batch_file); }},
      {add_replay(app, rp), [&] { return replay(t, rp); }},
      {add_simulate(app, sim), [&] { return simulate(t, sim); }},
      {add_load(app, ld), [&] { return load(t, ld); }}};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {  // --help, --version: 0; a usage error: 2, as documented
    return app.exit(e) == 0 ? 0 : kUsage;
  }
  try {
    for (const auto& [sub, run] : subcommands)
      if (*sub) return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "poscache-feed: %s\n", e.what());
    return kUnreachable;
  }
  return kUsage;
}
