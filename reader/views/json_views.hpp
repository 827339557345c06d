// JSON views of a segment for people and programs that are not trading processes: what
// poscache-inspect --json prints and what the daemon's HTTP API serves (writer/http/), one
// definition for both. Built on the reader library and nlohmann::json; not part of the
// installed reader library (a trading process needs none of it).
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "poscache/mirror_status.hpp"
#include "poscache/producer_status.hpp"
#include "poscache/reader.hpp"
#include "poscache/reader_stats.hpp"

namespace poscache::views {

using nlohmann::ordered_json;

// A position: namespace, account, instrument, every field it holds as an exact decimal string
// (int64 and timestamp fields as integer strings too: format_field), version, source_seq,
// created/updated times, age and the stale flag.
ordered_json position_json(const Reader& reader, const Position& p);

// A change ring record: position, kind, namespace (absent for a pattern over every namespace),
// account and instrument, or the pattern; version and at_ns.
ordered_json change_json(const Reader& reader, const Change& c);
// The same as one line of text: "ns:account:instrument", "account alice (every namespace)",
// "namespace marks", "glob spot:*:SOL" or "everything".
std::string change_subject(const Reader& reader, const Change& c);

// The header, counters, writer liveness and the Redis mirror (poscache-inspect stats --json).
ordered_json stats_json(const SegmentStats& s, const MirrorStatus& m);

// Each namespace: name, live positions, fields (name, type, scale), stale_after and
// expire_after in ns.
ordered_json namespaces_json(const Reader& reader, const SegmentStats& s);

ordered_json producers_json(const std::vector<ProducerInfo>& list);

// get() answers by status: {"ok": n, "stale": n, ...}.
ordered_json read_counts_json(const ReadCounts& c);
// {"capacity", "readers": [{"pid","name","state","attached_at_ns","gets","counts"}...],
//  "retired": counts, "total": counts}
ordered_json reader_table_json(const ReaderTableInfo& t);

// The health rule, shared by `poscache-inspect health` and the daemon's GET /health: healthy
// when a live writer (its heartbeat recent, its pid alive) owns the segment and, if it mirrors to
// Redis, the mirror is up with no change waiting longer than `max_sync_lag`.
// Read-through's counters (Reader::refresh_stats()), or null when the writer serves none:
// {"refreshers","in_flight","requests":{reason:n},"deduplicated","outcomes":{outcome:n},
//  "errors","timeouts","refused","ring_full","rebuilds_running","rebuild_positions"}
ordered_json refresh_json(const Reader& reader);

struct Health {
  WriterInfo writer;
  std::optional<std::uint64_t> refreshers;  // registered, when the writer serves read-through
  MirrorStatus redis;
  bool redis_on = false;
  bool redis_ok = true;
  std::chrono::nanoseconds max_sync_lag{0};
  [[nodiscard]] bool ok() const noexcept { return writer.alive && redis_ok; }
  // "ok", "degraded" (writer alive, Redis behind or down) or "down" (no live writer).
  [[nodiscard]] const char* status() const noexcept;
};
Health health(const Reader& reader, std::chrono::nanoseconds max_sync_lag);
// {"alive","pid","heartbeat_age_ns","redis":{"state","ok","last_error","dirty",
//  "oldest_unsynced_age_ns"}}
ordered_json health_json(const Health& h);

}  // namespace poscache::views
