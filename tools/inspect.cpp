// poscache-inspect: a read-only view of a segment for people (tables) and scripts (--json).
// Each subcommand is a function over the opened Reader; their text is in tools/inspect_tables.hpp.
//
// Exit codes: 0 ok · 1 not found (get), inconsistencies (verify) or writer down (health)
//             4 (health) writer alive but the Redis sync is degraded: down, or a change older
//               than --max-sync-lag not yet in Redis
//             2 usage error · 3 segment unavailable (missing, foreign, initializing)
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "poscache/format.hpp"
#include "poscache/mirror_status.hpp"
#include "poscache/producer_status.hpp"
#include "poscache/reader.hpp"
#include "poscache/reader_stats.hpp"
#include "poscache/version.h"
#include "reader/views/json_views.hpp"
#include "shm/values/duration.hpp"
#include "tools/inspect_tables.hpp"
#include "tools/verify.hpp"

using namespace poscache;
using namespace poscache::inspect;
using nlohmann::ordered_json;
using views::position_json;
using views::stats_json;

namespace {

constexpr int kOk = 0, kNotFound = 1, kUsage = 2, kUnavailable = 3, kDegraded = 4;

// Each namespace: its live positions, TTLs and fields, and what readers' get() answered there.
void print_namespaces(const Reader& r, const SegmentStats& s) {
  const auto table = reader_table(r);  // readers' hits, stale serves and misses
  for (const auto& n : r.namespaces()) {
    std::string f;
    for (const auto& fs : n.fields) f += (f.empty() ? "" : ", ") + fs.name;
    const std::uint64_t live = n.id < s.namespace_live.size() ? s.namespace_live[n.id] : 0;
    std::printf("namespace    %-12s %10llu live  stale_after %s  expire_after %s  fields: %s\n",
                n.name.c_str(), static_cast<unsigned long long>(live),
                ms(n.stale_after.count()).c_str(), ms(n.expire_after.count()).c_str(), f.c_str());
    if (table && n.id < table->namespaces.size()) {
      const ReadCounts& c = table->namespaces[n.id].counts;
      std::printf(
          "  reads      %llu hits, %llu stale, %llu misses\n",
          static_cast<unsigned long long>(c[static_cast<std::size_t>(ReadStatus::ok)]),
          static_cast<unsigned long long>(c[static_cast<std::size_t>(ReadStatus::stale)]),
          static_cast<unsigned long long>(c[static_cast<std::size_t>(ReadStatus::not_found)]));
    }
  }
}

// Read-through's counters (docs/read-through.md), when the writer serves it.
void print_refresh(const Reader& r) {
  const auto rf = r.refresh_stats();
  if (!rf) return;
  std::uint64_t asked = 0;
  for (const std::uint64_t n : rf->requests) asked += n;
  std::printf(
      "refresh      %llu refreshers, %llu in flight; %llu asked, %llu de-duplicated, "
      "%llu answered, %llu absent, %llu superseded, %llu failed; %llu timeouts, "
      "%llu refused, %llu rings full\n",
      static_cast<unsigned long long>(rf->refreshers),
      static_cast<unsigned long long>(rf->in_flight), static_cast<unsigned long long>(asked),
      static_cast<unsigned long long>(rf->deduplicated),
      static_cast<unsigned long long>(rf->decided(PendingState::answered)),
      static_cast<unsigned long long>(rf->decided(PendingState::absent)),
      static_cast<unsigned long long>(rf->decided(PendingState::superseded)),
      static_cast<unsigned long long>(rf->decided(PendingState::failed)),
      static_cast<unsigned long long>(rf->timeouts), static_cast<unsigned long long>(rf->refused),
      static_cast<unsigned long long>(rf->ring_full));
}

int stats(const Reader& r, bool json) {
  const SegmentStats s = r.stats();
  if (json) {
    ordered_json j = stats_json(s, mirror_status(r));
    j["huge_page_bytes"] = r.huge_page_bytes();
    j["namespaces"] = views::namespaces_json(r, s);
    j["refresh"] = views::refresh_json(r);
    std::printf("%s\n", j.dump(2).c_str());
    return kOk;
  }
  print_stats(s, mirror_status(r));
  const std::uint64_t huge = r.huge_page_bytes();
  std::printf(
      "pages        %s\n",
      huge > 0
          ? ("2 MiB pages: " + std::to_string(huge >> 20) + " of " +
             std::to_string(s.segment_bytes >> 20) + " MiB")
                .c_str()
          : "4 KiB pages (a random read may also miss the TLB; see the writer's log at start)");
  print_namespaces(r, s);
  print_refresh(r);
  return kOk;
}

int health(const Reader& r, bool json, const std::string& max_sync_lag) {
  const views::Health h =
      views::health(r, *detail::parse_duration(max_sync_lag, true));  // checked by CLI11
  const WriterInfo& w = h.writer;
  const MirrorStatus& s = h.redis;
  if (json) {
    std::printf("%s\n", views::health_json(h).dump().c_str());
  } else {
    std::printf("writer pid %lld %s (heartbeat %s ago)\n", static_cast<long long>(w.pid),
                w.alive ? "alive" : "NOT ALIVE", ms(w.heartbeat_age_ns).c_str());
    if (s.follow_state != "none") {
      std::printf("follower %s%s: lag %s, %llu entries applied\n", s.follow_state.c_str(),
                  h.redis_ok ? "" : " (DEGRADED)", ms(s.follow_lag_ns).c_str(),
                  static_cast<unsigned long long>(s.follow_entries));
    } else if (h.redis_on) {
      std::printf("redis %s%s: %llu unsynced, oldest %s%s%s\n", s.state.c_str(),
                  h.redis_ok ? "" : " (DEGRADED)", static_cast<unsigned long long>(s.dirty),
                  ms(s.oldest_unsynced_age_ns).c_str(),
                  s.last_error.empty() ? "" : "; last error: ", s.last_error.c_str());
      if (s.refilling)
        std::printf("redis lost its data: refilling it from the segment (%llu queued)\n",
                    static_cast<unsigned long long>(s.repushed));
      if (s.evicting_policy)
        std::printf("warning: redis's maxmemory-policy may evict positions (set noeviction)\n");
    }
  }
  if (!w.alive) return kNotFound;
  return h.redis_ok ? kOk : kDegraded;
}

int list_producers(const Reader& r, bool json) {
  const auto list = producers(r);
  if (json) {
    const ordered_json a = views::producers_json(list);
    std::printf("%s\n", a.dump().c_str());
    return kOk;
  }
  if (list.empty()) {
    std::printf("no producer has attached a ring to this segment's writer\n");
    return kOk;
  }
  std::printf("%-24s %-9s %8s %12s %12s %9s %9s %12s  %s\n", "NAME", "STATE", "PID", "PUSHED",
              "APPLIED", "REJECTED", "FULL", "SYNCED", "LAST ERROR");
  for (const auto& p : list) {
    std::printf(
        "%-24s %-9s %8lld %12llu %12llu %9llu %9llu %12llu  %s\n", p.name.c_str(), p.state.c_str(),
        static_cast<long long>(p.pid), static_cast<unsigned long long>(p.pushed),
        static_cast<unsigned long long>(p.applied), static_cast<unsigned long long>(p.rejected),
        static_cast<unsigned long long>(p.full), static_cast<unsigned long long>(p.synced),
        p.last_error.c_str());
  }
  return kOk;
}

int list_readers(const Reader& r, bool json) {
  std::string why;
  const auto table = reader_table(r, &why);
  if (!table) {
    if (json) std::printf("%s\n", ordered_json{{"error", why}}.dump().c_str());
    std::fprintf(stderr, "poscache-inspect: no reader statistics: %s\n", why.c_str());
    return kUnavailable;
  }
  if (json) {
    std::printf("%s\n", views::reader_table_json(*table).dump().c_str());
    return kOk;
  }
  static constexpr const char* kCols[] = {"OK",   "STALE",   "NOT_FOUND", "BUSY",
                                          "DEAD", "BAD_KEY", "RETIRED"};
  std::printf("%-8s %-16s %-8s %14s", "PID", "NAME", "STATE", "GETS");
  for (const char* c : kCols) std::printf(" %12s", c);
  std::printf("\n");
  auto row = [&](const char* pid, const char* name, const char* state, const ReadCounts& c) {
    std::uint64_t gets = 0;
    for (const auto v : c) gets += v;
    std::printf("%-8s %-16s %-8s %14llu", pid, name, state, static_cast<unsigned long long>(gets));
    for (const auto v : c) std::printf(" %12llu", static_cast<unsigned long long>(v));
    std::printf("\n");
  };
  for (const ReaderInfo& i : table->readers)
    row(std::to_string(i.pid).c_str(), i.name.c_str(), i.state.c_str(), i.counts);
  row("-", "(reaped)", "-", table->retired);
  row("-", "(total)", "-", table->total);
  std::printf("\n%-34s %14s", "NAMESPACE", "GETS");  // the totals by namespace
  for (const char* c : kCols) std::printf(" %12s", c);
  std::printf("\n");
  for (const NamespaceReads& n : table->namespaces) {
    std::uint64_t gets = 0;
    for (const auto v : n.counts) gets += v;
    std::printf("%-34s %14llu", n.name.empty() ? "(none: bad keys)" : n.name.c_str(),
                static_cast<unsigned long long>(gets));
    for (const auto v : n.counts) std::printf(" %12llu", static_cast<unsigned long long>(v));
    std::printf("\n");
  }
  std::printf("%zu of %u records in use\n", table->readers.size(), table->capacity);
  return kOk;
}

struct GetArgs {
  std::string ns, account, instrument;
};

int get(const Reader& r, bool json, const GetArgs& a) {
  if (!r.namespace_id(a.ns)) {
    std::string known;
    for (const auto& n : r.namespaces()) known += (known.empty() ? "" : ", ") + n.name;
    std::fprintf(stderr, "poscache-inspect: unknown namespace '%s': this segment has %s\n",
                 a.ns.c_str(), known.c_str());
    return kUsage;
  }
  // A key that cannot exist is a usage error naming the part, not a miss.
  for (const auto& check : {validate_account(a.account), validate_instrument(a.instrument)}) {
    if (!check) {
      std::fprintf(stderr, "poscache-inspect: bad key: %s\n", check.error().c_str());
      if (json)
        std::printf("%s\n",
                    ordered_json{{"status", "bad_key"}, {"error", check.error()}}.dump().c_str());
      return kUsage;
    }
  }
  Position p;
  const ReadStatus st = r.get(a.ns, a.account, a.instrument, p);
  if (!has_value(st)) {
    if (json)
      std::printf("%s\n", ordered_json{{"status", std::string(to_string(st))}}.dump().c_str());
    else
      std::printf("%s:%s:%s: %s\n", a.ns.c_str(), a.account.c_str(), a.instrument.c_str(),
                  std::string(to_string(st)).c_str());
    return st == ReadStatus::bad_key ? kUsage : kNotFound;
  }
  if (json) {
    ordered_json j = position_json(r, p);
    j["status"] = std::string(to_string(st));
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    print_table(r, {p});
  }
  return kOk;
}

struct LsArgs {
  std::optional<std::string> ns, account, glob;
  std::size_t limit = 100;
};

// ls (the filter and limit) and dump (every position; with --json the backup format).
int list_positions(const Reader& r, bool json, const LsArgs& a, bool dump) {
  ScanFilter f;
  std::size_t limit = a.limit;
  if (!dump) {
    if (a.ns) {
      const auto id = r.namespace_id(*a.ns);
      if (!id) {
        std::fprintf(stderr, "poscache-inspect: unknown namespace '%s'\n", a.ns->c_str());
        return kUsage;
      }
      f.ns = *id;
    }
    f.account = a.account;
    f.glob = a.glob;
  } else {
    limit = 0;
  }
  std::vector<Position> ps;
  std::size_t total = 0;
  r.scan(f, [&](const Position& p) {
    ++total;
    if (limit == 0 || ps.size() < limit) ps.push_back(p);
  });
  std::sort(ps.begin(), ps.end(), [&](const Position& x, const Position& y) {
    return std::make_tuple(x.ns, x.account_view(), x.instrument_view()) <
           std::make_tuple(y.ns, y.account_view(), y.instrument_view());
  });
  if (json && dump) {
    // The backup format: an upsert per position that `poscache-feed replay` (or any producer
    // of JSON lines) applies back, each position whole (mode replace) with the producer's seq.
    for (const auto& p : ps) {
      const ordered_json v = position_json(r, p);
      ordered_json cmd = {{"op", "upsert"},          {"ns", v["namespace"]},
                          {"account", v["account"]}, {"instrument", v["instrument"]},
                          {"fields", v["fields"]},   {"mode", "replace"}};
      if (p.source_seq != 0) cmd["seq"] = p.source_seq;
      std::printf("%s\n", cmd.dump().c_str());
    }
  } else if (json) {
    for (const auto& p : ps) std::printf("%s\n", position_json(r, p).dump().c_str());
  } else {
    print_table(r, ps);
    if (ps.size() < total) std::printf("(%zu of %zu shown; --limit 0 for all)\n", ps.size(), total);
  }
  return kOk;
}

// The latest changes, from the change ring: every record since the last refresh, the last `top`
// of them kept, or a note saying how the ring could not tell.
class ChangeFollower {
 public:
  ChangeFollower(const Reader& r, int top) : r_(r), top_(top), at_(r.change_position()) {}

  // Reads the ring to its head; false once it can follow no further (the note says why).
  bool drain() {
    for (;;) {
      const ChangesResult res = r_.changes(at_, batch_);
      read += batch_.size();
      for (const Change& c : batch_) {
        latest.push_back(c);
        if (latest.size() > static_cast<std::size_t>(std::max(top_, 0))) latest.pop_front();
      }
      at_ = res.next;
      switch (res.status) {
        case ChangeStatus::ok:
          if (batch_.empty()) return true;
          continue;
        case ChangeStatus::lapped:
        case ChangeStatus::invalid_position:
          note = "the ring (" + std::to_string(r_.change_ring_cells()) +
                 " cells) overwrote changes before they were read; following from its head";
          continue;
        case ChangeStatus::writer_restarted:
          note =
              "the writer restarted after its predecessor died: changes just before may be "
              "missing";
          continue;
        case ChangeStatus::unavailable:
          note = "the writer keeps no change ring (change_ring = off)";
          return false;
        case ChangeStatus::retired:
          note = "the segment was re-created (retired): restart watch";
          return false;
      }
    }
  }
  // Follows the ring as it moves until `until` (it holds milliseconds of history at a busy
  // writer's rate, so a refresh that only looked every second would mostly be lapped).
  void follow_until(std::chrono::steady_clock::time_point until, bool following) {
    while (std::chrono::steady_clock::now() < until) {
      if (following) {
        r_.wait_for_changes(
            at_, std::min<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now(),
                                                    std::chrono::milliseconds(10)));
        following = drain();
      } else {
        std::this_thread::sleep_until(until);
      }
    }
  }

  std::uint64_t read = 0;  // records read since the last refresh
  std::string note;        // why the ring could not tell everything, since the last refresh
  std::deque<Change> latest;

 private:
  const Reader& r_;
  const int top_;
  std::uint64_t at_;
  std::vector<Change> batch_;
};

struct WatchArgs {
  int interval_ms = 1000, count = 0, top = 10;
  std::string interval;
};

int watch(const Reader& r, bool json, const WatchArgs& a) {
  int interval_ms = a.interval_ms;
  if (!a.interval.empty())
    interval_ms = static_cast<int>(
        std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(
                                      *detail::parse_duration(a.interval, true))
                                      .count()));
  std::uint64_t last_seq = 0, last_updates = 0, last_inserts = 0;
  const bool tty = ::isatty(STDOUT_FILENO) && !json;
  ChangeFollower changes(r, a.top);
  for (int i = 0; a.count == 0 || i < a.count; ++i) {
    changes.read = 0;
    changes.note.clear();
    const bool following = changes.drain();
    if (i > 0)
      changes.follow_until(
          std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms), following);
    const SegmentStats s = r.stats();
    const double secs = interval_ms / 1000.0;
    if (json) {
      ordered_json j = stats_json(s, mirror_status(r));
      j["updates_per_s"] = i ? static_cast<double>(s.updates - last_updates) / secs : 0.0;
      j["inserts_per_s"] = i ? static_cast<double>(s.inserts - last_inserts) / secs : 0.0;
      j["changes_read"] = changes.read;
      if (!changes.note.empty()) j["changes_note"] = changes.note;
      ordered_json arr = ordered_json::array();
      for (auto it = changes.latest.rbegin(); it != changes.latest.rend(); ++it)
        arr.push_back(views::change_json(r, *it));
      j["latest_changes"] = arr;
      std::printf("%s\n", j.dump().c_str());
    } else {
      if (tty) std::printf("\033[H\033[2J");
      print_stats(s, mirror_status(r));
      if (i) {
        std::printf(
            "rates        %.0f updates/s  %.0f inserts/s  %llu changes since last refresh\n",
            static_cast<double>(s.updates - last_updates) / secs,
            static_cast<double>(s.inserts - last_inserts) / secs,
            static_cast<unsigned long long>(s.change_seq - last_seq));
      }
      std::printf("\nlatest changes (change ring, %llu read since the last refresh):\n",
                  static_cast<unsigned long long>(changes.read));
      if (!changes.note.empty()) std::printf("  (%s)\n", changes.note.c_str());
      print_changes(r, {changes.latest.rbegin(), changes.latest.rend()});
      std::printf("\n");
    }
    std::fflush(stdout);
    last_seq = s.change_seq;
    last_updates = s.updates;
    last_inserts = s.inserts;
  }
  return kOk;
}

int verify(const Reader& r, bool json) {
  const tools::VerifyReport rep = tools::verify(r);
  if (json) {
    std::printf("%s\n", ordered_json{{"ok", rep.problems.empty()},
                                     {"slots", rep.slots_checked},
                                     {"live", rep.live_slots},
                                     {"buckets", rep.buckets_checked},
                                     {"tombstones", rep.tombstones},
                                     {"problems", rep.problems}}
                            .dump(2)
                            .c_str());
  } else {
    for (const auto& p : rep.problems) std::printf("PROBLEM: %s\n", p.c_str());
    std::printf("verified %llu slots (%llu live) and %llu index buckets (%llu tombstones): %s\n",
                static_cast<unsigned long long>(rep.slots_checked),
                static_cast<unsigned long long>(rep.live_slots),
                static_cast<unsigned long long>(rep.buckets_checked),
                static_cast<unsigned long long>(rep.tombstones),
                rep.problems.empty()
                    ? "consistent"
                    : (std::to_string(rep.problems.size()) + " problem(s)").c_str());
  }
  return rep.problems.empty() ? kOk : kNotFound;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"poscache-inspect: read-only view of a poscache segment"};
  app.set_version_flag("--version", "poscache-inspect " POSCACHE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // -s, --json, --via ... after the subcommand too
  const char* env_segment = std::getenv("POSCACHE_SEGMENT");
  std::string segment = env_segment && *env_segment ? env_segment : "poscache";
  bool json = false;
  app.add_option("-s,--segment", segment, "segment name [POSCACHE_SEGMENT, default poscache]");
  app.add_flag("--json", json, "machine-readable output");

  auto* stats_cmd =
      app.add_subcommand("stats", "header, counters, writer liveness, Redis sync state");
  auto* health_cmd = app.add_subcommand("health",
                                        "exit 0 if a live writer owns the segment and its Redis "
                                        "sync keeps up, 1 if the writer is down, 4 if Redis is");
  // One duration syntax (values/duration.hpp); a bad one is a usage error naming the flag.
  const CLI::Validator duration(
      [](std::string& v) {
        auto d = detail::parse_duration(v, true);
        return d ? std::string() : d.error();
      },
      "DURATION");
  std::string max_sync_lag = "5s";
  health_cmd
      ->add_option("--max-sync-lag", max_sync_lag,
                   "how long an unsynced change may wait before Redis counts as degraded: 5s, "
                   "500ms, ... (a bare number is seconds; default 5s)")
      ->check(duration);
  auto* get_cmd = app.add_subcommand("get", "one position");
  GetArgs g;
  get_cmd->add_option("namespace", g.ns)->required();
  get_cmd->add_option("account", g.account)->required();
  get_cmd->add_option("instrument", g.instrument)->required();
  auto* ls_cmd = app.add_subcommand("ls", "positions by namespace, account or glob");
  LsArgs l;
  ls_cmd->add_option("--ns", l.ns, "only this namespace");
  ls_cmd->add_option("--account", l.account, "only this account");
  ls_cmd->add_option("--glob", l.glob, "fnmatch pattern over ns:account:instrument");
  ls_cmd->add_option("--limit", l.limit, "at most this many (default 100, 0 = all)");
  auto* dump_cmd = app.add_subcommand(
      "dump",
      "every position; with --json one upsert per line, which poscache-feed replay restores");
  auto* watch_cmd = app.add_subcommand("watch", "live view of counters and the latest changes");
  WatchArgs w;
  watch_cmd->add_option("--interval", w.interval, "refresh period: 1s, 250ms, ... (default 1s)")
      ->check(duration);
  watch_cmd->add_option("--interval-ms", w.interval_ms,
                        "refresh period in milliseconds (as --interval)");
  watch_cmd->add_option("--count", w.count,
                        "stop after this many refreshes (default: until Ctrl-C)");
  watch_cmd->add_option("--top", w.top, "how many of the latest changes to show (default 10)");
  auto* verify_cmd = app.add_subcommand("verify", "walk index and slots, report inconsistencies");
  auto* producers_cmd = app.add_subcommand("producers", "producer rings: counters and last errors");
  auto* readers_cmd = app.add_subcommand(
      "readers", "reader processes and what their get() calls answered (the reader table)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kOk : kUsage;
  }

  std::optional<Reader> reader;
  try {
    ReaderOptions options;
    options.statistics = false;  // the inspector's reads are not a trading process's
    reader.emplace(Reader::open(segment, options));
  } catch (const Error& e) {
    if (json) std::printf("%s\n", ordered_json{{"error", e.what()}}.dump().c_str());
    std::fprintf(stderr, "poscache-inspect: %s\n", e.what());
    return kUnavailable;
  }
  const Reader& r = *reader;
  if (*stats_cmd) return stats(r, json);
  if (*health_cmd) return health(r, json, max_sync_lag);
  if (*producers_cmd) return list_producers(r, json);
  if (*readers_cmd) return list_readers(r, json);
  if (*get_cmd) return get(r, json, g);
  if (*ls_cmd || *dump_cmd) return list_positions(r, json, l, static_cast<bool>(*dump_cmd));
  if (*watch_cmd) return watch(r, json, w);
  if (*verify_cmd) return verify(r, json);
  return kUsage;
}
