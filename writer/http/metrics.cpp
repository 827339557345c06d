#include "writer/http/metrics.hpp"

#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <map>

#include "poscache/mirror_status.hpp"
#include "poscache/producer_status.hpp"
#include "poscache/reader_stats.hpp"
#include "poscache/version.h"
#include "shm/clock.hpp"

namespace poscache::http {

std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// Builds the exposition: one HELP and TYPE per family, then its samples.
class Exposition {
 public:
  void family(const char* name, const char* type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    for (const char c : help) out_ += c == '\n' ? ' ' : c;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(const char* name, std::string_view labels, std::uint64_t v) {
    head(name, labels);
    out_ += std::to_string(v);
    out_ += '\n';
  }
  void sample(const char* name, std::string_view labels, double v) {
    head(name, labels);
    // The shortest text that reads back as the same double: a Unix time in seconds keeps its
    // milliseconds (%.9g rounded it to 10 s).
    char b[32];
    const auto r = std::to_chars(b, b + sizeof b, v);
    out_.append(b, r.ptr);
    out_ += '\n';
  }
  // A family with one unlabelled sample.
  void one(const char* name, const char* type, std::string_view help, std::uint64_t v) {
    family(name, type, help);
    sample(name, {}, v);
  }
  void one(const char* name, const char* type, std::string_view help, double v) {
    family(name, type, help);
    sample(name, {}, v);
  }
  std::string take() { return std::move(out_); }

 private:
  void head(const char* name, std::string_view labels) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
  }
  std::string out_;
};

double seconds(std::int64_t ns) {
  return static_cast<double>(ns) / 1e9;
}

std::string label(const char* key, std::string_view value) {
  return std::string(key) + "=\"" + escape_label(value) + "\"";
}

// --- the HTTP server itself (front.hpp): what it held, refused and closed.
void http_section(Exposition& e, const HttpCounters& c) {
  const auto v = [](const std::atomic<std::uint64_t>& a) { return HttpCounters::load(a); };
  e.one("poscache_http_connections", "gauge", "HTTP connections open now", v(c.open));
  e.one("poscache_http_connections_accepted_total", "counter", "HTTP connections accepted",
        v(c.accepted));
  e.family("poscache_http_connections_refused_total", "counter",
           "HTTP connections refused at once with a 503, by limit (peer: "
           "max_connections_per_peer; total: max_connections with none to evict)");
  e.sample("poscache_http_connections_refused_total", "limit=\"peer\"", v(c.refused_peer_limit));
  e.sample("poscache_http_connections_refused_total", "limit=\"total\"", v(c.refused_total_limit));
  e.one("poscache_http_connections_evicted_total", "counter",
        "connections closed at max_connections to make room: the oldest still sending its request",
        v(c.evicted));
  e.one("poscache_http_request_timeouts_total", "counter",
        "connections closed because their request was not complete within request_timeout",
        v(c.request_timeouts));
  e.one("poscache_http_write_timeouts_total", "counter",
        "connections closed because the client did not take its answer in time",
        v(c.write_timeouts));
  e.one("poscache_http_requests_total", "counter", "complete requests handed to the workers",
        v(c.requests));
  e.one("poscache_http_requests_refused_total", "counter",
        "requests the server answered itself with a 4xx (malformed head, no Content-Length, a "
        "body or head too large)",
        v(c.refused_requests));
  e.one("poscache_http_admin_auth_failures_total", "counter",
        "admin requests with a wrong or missing token (401)", v(c.admin_auth_failures));
  e.one("poscache_http_admin_rate_limited_total", "counter",
        "admin requests refused with 429: their peer had too many token failures",
        v(c.admin_rate_limited));
}

}  // namespace

std::string render_metrics(const Reader& reader, const LoopSnapshot& loop,
                           const HttpCounters* http) {
  Exposition e;
  const SegmentStats s = reader.stats();
  const MirrorStatus m = mirror_status(reader);

  // --- the writer and the segment.
  e.family("poscache_build_info", "gauge", "the poscache version serving these metrics (always 1)");
  e.sample("poscache_build_info", label("version", POSCACHE_VERSION), std::uint64_t{1});
  e.one("poscache_writer_up", "gauge",
        "1 if a live writer owns the segment (heartbeat recent, pid alive), else 0",
        std::uint64_t{s.writer.alive ? 1u : 0u});
  e.one("poscache_writer_heartbeat_age_seconds", "gauge",
        "time since the writer's last heartbeat in the segment header",
        seconds(s.writer.heartbeat_age_ns));
  e.one("poscache_writer_start_time_seconds", "gauge",
        "when the writer that owns the segment started (Unix time)",
        seconds(s.writer.started_at_ns));
  e.one("poscache_writer_restarts_total", "counter",
        "writers that re-attached to this segment after the previous one died", s.writer.restarts);
  e.family("poscache_segment_info", "gauge", "the segment: name and generation (always 1)");
  e.sample("poscache_segment_info",
           label("segment", s.segment) + "," + label("generation", std::to_string(s.generation)),
           std::uint64_t{1});
  // A state as one series per value (1 for the current one): no series appears or vanishes.
  e.family("poscache_segment_state", "gauge",
           "the segment's state: 1 for the current one of initializing, ready, closed, retired");
  for (const char* st : {"initializing", "ready", "closed", "retired"})
    e.sample("poscache_segment_state", label("state", st), std::uint64_t{s.state == st ? 1u : 0u});
  e.one("poscache_segment_size_bytes", "gauge", "size of the shared-memory segment",
        s.segment_bytes);
  e.one("poscache_capacity_positions", "gauge", "positions the segment can hold", s.capacity);
  e.one("poscache_positions", "gauge", "positions in the table", s.live);
  e.family("poscache_namespace_positions", "gauge", "positions in the table, by namespace");
  for (const NamespaceInfo& n : reader.namespaces()) {
    e.sample("poscache_namespace_positions", label("namespace", n.name),
             n.id < s.namespace_live.size() ? s.namespace_live[n.id] : std::uint64_t{0});
  }
  e.one("poscache_changes_total", "counter",
        "changes published to readers (the header's change sequence)", s.change_seq);
  e.one("poscache_change_ring_cells_total", "counter",
        "cells written to the change ring (its head: where a new follower starts)",
        s.change_position);
  e.one("poscache_change_ring_size_cells", "gauge",
        "cells the change ring holds before it overwrites the oldest (0: no ring)",
        s.change_ring_cells);
  for (const CounterField& f : kCounterFields) {
    if (f.member == &Counters::live) continue;  // poscache_positions
    const std::uint64_t v = s.*f.member;
    if (f.member == &Counters::tombstones) {
      e.one("poscache_index_tombstones", "gauge", f.help, v);
      continue;
    }
    const std::string name = "poscache_" + std::string(f.name) + "_total";
    e.one(name.c_str(), "counter", f.help, v);
  }

  // --- the Redis mirror.
  e.family("poscache_redis_state", "gauge",
           "the Redis mirror's state: 1 for the current one of off, connecting, up, down, fenced");
  for (const char* st : {"off", "connecting", "up", "down", "fenced"})
    e.sample("poscache_redis_state", label("state", st), std::uint64_t{m.state == st ? 1u : 0u});
  e.one("poscache_redis_dirty_positions", "gauge",
        "positions changed and not yet acknowledged by Redis", m.dirty);
  e.one("poscache_redis_oldest_unsynced_age_seconds", "gauge",
        "age of the oldest change Redis has not acknowledged (0: none)",
        seconds(m.oldest_unsynced_age_ns));
  e.one("poscache_redis_lease_epoch", "gauge",
        "the epoch of the Redis writer lease this writer holds (0: none)", m.lease_epoch);
  e.one("poscache_redis_data_losses_total", "counter",
        "times Redis was found without the data it was given (restart without persistence, "
        "flush, eviction) and refilled from the segment",
        m.data_losses);
  e.one("poscache_redis_repushed_positions_total", "counter",
        "positions written to Redis again to refill it", m.repushed);
  e.one("poscache_redis_refilling", "gauge", "1 while a refill of Redis is under way",
        std::uint64_t{m.refilling ? 1u : 0u});
  e.one("poscache_redis_evicting_policy", "gauge",
        "1 when Redis's maxmemory-policy may evict keys (set noeviction)",
        std::uint64_t{m.evicting_policy ? 1u : 0u});
  e.family("poscache_follow_state", "gauge",
           "a follower's state: 1 for the current one of none (not a follower), loading, "
           "following, down");
  for (const char* st : {"none", "loading", "following", "down"}) {
    e.sample("poscache_follow_state", label("state", st),
             std::uint64_t{m.follow_state == st ? 1u : 0u});
  }
  e.one("poscache_follow_lag_seconds", "gauge",
        "a follower's lag behind the writer it follows (the last batch's largest)",
        seconds(m.follow_lag_ns));
  e.one("poscache_follow_entries_total", "counter", "change-stream entries a follower applied",
        m.follow_entries);
  e.one("poscache_follow_reloads_total", "counter",
        "whole loads of the prefix by a follower (at start, after the stream was trimmed past it)",
        m.follow_reloads);
  e.one("poscache_redis_journal_pending", "gauge",
        "removals recorded in the segment's journal, not yet in Redis", m.journal_pending);
  e.one("poscache_redis_journal_overflows_total", "counter",
        "removals that found the journal full (kept in the writer's memory only)",
        m.journal_overflows);

  // --- producers: the rings in the producer table, summed by name (a producer that restarts
  //     under its name keeps one series), and every source of the apply loop.
  struct Sum {
    std::uint64_t pushed = 0, applied = 0, rejected = 0, full = 0, attached = 0;
  };
  std::map<std::string, Sum> by_name;
  for (const ProducerInfo& p : producers(reader)) {
    Sum& x = by_name[p.name];
    x.pushed += p.pushed;
    x.applied += p.applied;
    x.rejected += p.rejected;
    x.full += p.full;
    x.attached += p.state == "attached" ? 1 : 0;
  }
  const struct {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t Sum::*member;
  } producer_series[] = {
      {"poscache_producer_pushed_total", "counter", "commands a producer pushed into its ring",
       &Sum::pushed},
      {"poscache_producer_applied_total", "counter", "of them, applied by the writer",
       &Sum::applied},
      {"poscache_producer_rejected_total", "counter", "of them, refused by the writer",
       &Sum::rejected},
      {"poscache_producer_full_total", "counter", "pushes that found the producer's ring full",
       &Sum::full},
      {"poscache_producer_attached", "gauge", "rings the producer has attached now",
       &Sum::attached},
  };
  for (const auto& series : producer_series) {
    e.family(series.name, series.type, series.help);
    for (const auto& [name, sum] : by_name)
      e.sample(series.name, label("producer", name), sum.*series.member);
  }
  // One family for what the inputs' commands came to: by source (its kind: rings, socket,
  // stream, generator, http) and outcome.
  e.family("poscache_ingest_commands_total", "counter",
           "commands each input of the apply loop handled, by source and outcome (applied, "
           "duplicate, stale_source, not_found, rejected)");
  std::map<std::string, ingest::SourceCounters> by_kind;
  for (const SourceReport& src : loop.sources) {
    ingest::SourceCounters& k = by_kind[src.name.substr(0, src.name.find(' '))];
    k.applied += src.counters.applied;
    k.duplicates += src.counters.duplicates;
    k.stale += src.counters.stale;
    k.not_found += src.counters.not_found;
    k.rejected += src.counters.rejected;
  }
  for (const auto& [kind, c] : by_kind) {
    const std::string l = label("source", kind) + ",outcome=";
    const std::pair<const char*, std::uint64_t> outcomes[] = {{"\"applied\"", c.applied},
                                                              {"\"duplicate\"", c.duplicates},
                                                              {"\"stale_source\"", c.stale},
                                                              {"\"not_found\"", c.not_found},
                                                              {"\"rejected\"", c.rejected}};
    for (const auto& [outcome, v] : outcomes)
      e.sample("poscache_ingest_commands_total", l + outcome, v);
  }
  const ingest::ExecutorCounters& x = loop.executor;
  e.one("poscache_ingest_fills_total", "counter", "fills applied", x.fills);
  e.one("poscache_ingest_marks_total", "counter", "positions marked", x.marks);
  e.one("poscache_ingest_adds_total", "counter", "int64 adds applied", x.adds);

  // --- readers: what their get() calls answered (the reader table, summed; only grows).
  const auto table = reader_table(reader);
  e.one("poscache_reader_table_up", "gauge",
        "1 if the reader table can be read (readers' gets are counted), else 0",
        std::uint64_t{table ? 1u : 0u});
  if (table) {
    // Hits (ok), stale serves and misses (not_found) per namespace; reads that named no namespace
    // of the segment carry no namespace label. sum by (status) gives every reader's answers.
    e.family("poscache_reader_gets_total", "counter",
             "get() calls of reader processes, by namespace and answer (reaped readers' counts "
             "included)");
    for (const NamespaceReads& ns : table->namespaces) {
      const std::string prefix = ns.name.empty() ? "" : label("namespace", ns.name) + ",";
      for (std::size_t i = 0; i < ns.counts.size(); ++i) {
        e.sample("poscache_reader_gets_total",
                 prefix + label("status", to_string(static_cast<ReadStatus>(i))), ns.counts[i]);
      }
    }
    e.family("poscache_readers", "gauge", "records in the reader table, by state");
    std::map<std::string, std::uint64_t> by_state = {{"reading", 0}, {"left", 0}, {"gone", 0}};
    for (const ReaderInfo& r : table->readers) ++by_state[r.state];
    for (const auto& [state, n] : by_state) e.sample("poscache_readers", label("state", state), n);
  }

  // --- read-through (docs/read-through.md): what readers asked and what refreshers answered, as
  // the writer publishes them beside the segment (zeros when it serves no refresh).
  const RefreshStats rf = reader.refresh_stats().value_or(RefreshStats{});
  e.family("poscache_refresh_requests_total", "counter",
           "readers' requests for a key that reached the writer, by reason");
  for (const RefreshReason r : kAllRefreshReasons)
    e.sample("poscache_refresh_requests_total", label("reason", to_string(r)),
             rf.requests[static_cast<std::size_t>(r)]);
  e.one("poscache_refresh_deduplicated_total", "counter",
        "requests for a key already in flight (or just answered): no second fetch",
        rf.deduplicated);
  e.one("poscache_refresh_in_flight", "gauge", "requests sent to refreshers, not yet decided",
        rf.in_flight);
  e.family("poscache_refresh_outcomes_total", "counter",
           "requests decided, by outcome (answered, absent, erased, failed, superseded: an "
           "answer older than a producer's write, dropped; no_refresher)");
  for (const PendingState o : kDecidedStates)
    e.sample("poscache_refresh_outcomes_total", label("outcome", to_string(o)), rf.decided(o));
  e.one("poscache_refresh_errors_total", "counter",
        "tries a refresher answered with an error or an answer refused (retried)", rf.errors);
  e.one("poscache_refresh_timeouts_total", "counter", "tries not answered within the timeout",
        rf.timeouts);
  e.one("poscache_refresh_refused_total", "counter",
        "refresher lines refused (malformed, not asked, late): the log says why", rf.refused);
  e.one("poscache_refresh_ring_full_total", "counter",
        "readers' asks that found their request ring full (not asked)", rf.ring_full);
  e.one("poscache_refreshers", "gauge", "refreshers registered with the writer", rf.refreshers);

  // --- the apply loop's time per change.
  e.family("poscache_apply_seconds", "histogram",
           "time the apply loop spent per applied change (each poll of a source divided among "
           "the changes it applied; decoding included, waiting for input not)");
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < ApplyHistogram::kBoundsNs.size(); ++b) {
    cumulative += loop.apply.counts[b];
    char le[32];
    std::snprintf(le, sizeof le, "le=\"%g\"", seconds(ApplyHistogram::kBoundsNs[b]));
    e.sample("poscache_apply_seconds_bucket", le, cumulative);
  }
  e.sample("poscache_apply_seconds_bucket", "le=\"+Inf\"", loop.apply.count);
  e.sample("poscache_apply_seconds_sum", {}, seconds(static_cast<std::int64_t>(loop.apply.sum_ns)));
  e.sample("poscache_apply_seconds_count", {}, loop.apply.count);

  // --- the Redis sync thread's work (a writer that mirrors to Redis).
  if (loop.redis_on) {
    const RedisSyncMetrics& rs = loop.redis;
    e.one("poscache_redis_positions_written_total", "counter", "position writes Redis acknowledged",
          rs.positions_written);
    e.one("poscache_redis_transactions_total", "counter",
          "transactions (or script calls) Redis acknowledged", rs.transactions);
    e.one("poscache_redis_trade_ids_written_total", "counter",
          "fill trade ids mirrored to Redis (exactly once across a failover)",
          rs.trade_ids_written);
    e.one("poscache_redis_errors_total", "counter",
          "writes Redis refused (kept and written again; the log says why)", rs.errors);
    e.one("poscache_redis_reconnects_total", "counter",
          "connections to Redis lost (and made again, with backoff)", rs.reconnects);
    e.family("poscache_redis_sync_lag_seconds", "histogram",
             "from a change's apply to Redis acknowledging the position write that carried it");
    std::uint64_t acc = 0;
    for (std::size_t b = 0; b < RedisSyncMetrics::kLagBoundsNs.size(); ++b) {
      acc += rs.lag_counts[b];
      char le[32];
      std::snprintf(le, sizeof le, "le=\"%g\"", seconds(RedisSyncMetrics::kLagBoundsNs[b]));
      e.sample("poscache_redis_sync_lag_seconds_bucket", le, acc);
    }
    e.sample("poscache_redis_sync_lag_seconds_bucket", "le=\"+Inf\"", rs.lag_count);
    e.sample("poscache_redis_sync_lag_seconds_sum", {},
             seconds(static_cast<std::int64_t>(rs.lag_sum_ns)));
    e.sample("poscache_redis_sync_lag_seconds_count", {}, rs.lag_count);
  }
  if (http != nullptr) http_section(e, *http);
  return e.take();
}

}  // namespace poscache::http
