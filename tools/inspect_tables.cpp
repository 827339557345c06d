#include "tools/inspect_tables.hpp"

#include <algorithm>
#include <cstdio>

#include "poscache/format.hpp"
#include "reader/views/json_views.hpp"
#include "shm/clock.hpp"

namespace poscache::inspect {

std::string ms(std::int64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f ms", static_cast<double>(ns) / 1e6);
  return b;
}

void print_stats(const SegmentStats& s, const MirrorStatus& m) {
  std::printf("segment      %s  (generation %#llx, %s)\n", s.segment.c_str(),
              static_cast<unsigned long long>(s.generation), s.state.c_str());
  std::printf(
      "positions    %llu / %llu  (%.1f%% full, %.1f MiB segment)\n",
      static_cast<unsigned long long>(s.live), static_cast<unsigned long long>(s.capacity),
      s.capacity ? 100.0 * static_cast<double>(s.live) / static_cast<double>(s.capacity) : 0.0,
      static_cast<double>(s.segment_bytes) / (1 << 20));
  std::printf("writer       pid %lld  %s  heartbeat %s ago  restarts %llu\n",
              static_cast<long long>(s.writer.pid), s.writer.alive ? "alive" : "NOT ALIVE",
              ms(s.writer.heartbeat_age_ns).c_str(),
              static_cast<unsigned long long>(s.writer.restarts));
  std::printf("changes      seq %llu  ring position %llu (%s)\n",
              static_cast<unsigned long long>(s.change_seq),
              static_cast<unsigned long long>(s.change_position),
              s.change_ring_cells ? (std::to_string(s.change_ring_cells) + " cells").c_str()
                                  : "no change ring");
  std::printf(
      "counters     inserts %llu  updates %llu  evictions %llu  expirations %llu\n",
      static_cast<unsigned long long>(s.inserts), static_cast<unsigned long long>(s.updates),
      static_cast<unsigned long long>(s.evictions), static_cast<unsigned long long>(s.expirations));
  std::printf("             erases %llu  invalidations %llu  rejects %llu\n",
              static_cast<unsigned long long>(s.erases),
              static_cast<unsigned long long>(s.invalidations),
              static_cast<unsigned long long>(s.rejects));
  std::printf("index        %llu buckets  %llu tombstones  %llu rebuilds  %llu repairs\n",
              static_cast<unsigned long long>(s.index_buckets),
              static_cast<unsigned long long>(s.tombstones),
              static_cast<unsigned long long>(s.index_rebuilds),
              static_cast<unsigned long long>(s.repairs));
  std::printf(
      "redis        %s  dirty %llu  oldest unsynced %s  synced version %llu  lease epoch "
      "%llu%s%s\n",
      m.state.c_str(), static_cast<unsigned long long>(m.dirty),
      ms(m.oldest_unsynced_age_ns).c_str(), static_cast<unsigned long long>(m.synced_version),
      static_cast<unsigned long long>(m.lease_epoch),
      m.last_error.empty() ? "" : "  last error: ", m.last_error.c_str());
  if (m.follow_state != "none") {
    std::printf("follow       %s  lag %s  %llu entries applied  %llu loads\n",
                m.follow_state.c_str(), ms(m.follow_lag_ns).c_str(),
                static_cast<unsigned long long>(m.follow_entries),
                static_cast<unsigned long long>(m.follow_reloads));
  }
  std::printf(
      "journal      %llu removals not yet in Redis  %llu overflowed (kept in memory only)\n",
      static_cast<unsigned long long>(m.journal_pending),
      static_cast<unsigned long long>(m.journal_overflows));
}

void print_rows(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(rows.empty() ? 0 : rows[0].size(), 0);
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

void print_table(const Reader& r, const std::vector<Position>& ps) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"KEY", "FIELDS", "VERSION", "AGE", ""});
  for (const Position& p : ps) {
    const NamespaceInfo& ns = r.namespace_info(p.ns);
    std::string fields;
    for (std::size_t f = 0; f < ns.fields.size(); ++f) {
      if (!p.has(f)) continue;
      fields += (fields.empty() ? "" : " ") + ns.fields[f].name + "=" + format_field(ns, p, f);
    }
    rows.push_back({key_string(ns, p), fields, std::to_string(p.version), ms(p.age_ns),
                    p.stale ? "STALE" : ""});
  }
  print_rows(rows);
}

void print_changes(const Reader& r, const std::vector<Change>& cs) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"POSITION", "KIND", "WHAT", "VERSION", "AGE"});
  const std::int64_t now = shm::realtime_ns();
  for (const Change& c : cs) {
    rows.push_back({std::to_string(c.position), std::string(to_string(c.kind)),
                    views::change_subject(r, c), std::to_string(c.version),
                    ms(std::max<std::int64_t>(0, now - c.at_ns))});
  }
  print_rows(rows);
}

}  // namespace poscache::inspect
