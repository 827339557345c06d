#include "reader/views/json_views.hpp"

#include "poscache/format.hpp"

namespace poscache::views {

namespace {
// Versions, generations, epochs and ns timestamps pass 2^53: as decimal text, so that jq and
// JavaScript (doubles) compare them exactly.
std::string text(std::uint64_t v) {
  return std::to_string(v);
}
std::string text(std::int64_t v) {
  return std::to_string(v);
}
}  // namespace

ordered_json position_json(const Reader& r, const Position& p) {
  const NamespaceInfo& ns = r.namespace_info(p.ns);
  ordered_json j;
  j["namespace"] = ns.name;
  j["account"] = std::string(p.account_view());
  j["instrument"] = std::string(p.instrument_view());
  ordered_json fields = ordered_json::object();
  for (std::size_t f = 0; f < ns.fields.size(); ++f) {
    if (p.has(f)) fields[ns.fields[f].name] = format_field(ns, p, f);  // exact decimal strings
  }
  j["fields"] = fields;
  j["version"] = text(p.version);
  j["source_seq"] = text(p.source_seq);
  j["created_at_ns"] = text(p.created_at_ns);
  j["updated_at_ns"] = text(p.updated_at_ns);
  j["age_ns"] = p.age_ns;
  j["stale"] = p.stale;
  return j;
}

std::string change_subject(const Reader& r, const Change& c) {
  const std::string ns = c.ns == kAnyNamespace ? "" : r.namespace_info(c.ns).name;
  switch (c.kind) {
    case ChangeKind::invalidated_account:
      return "account " + std::string(c.account_view()) +
             (ns.empty() ? " (every namespace)" : " in " + ns);
    case ChangeKind::invalidated_namespace:
      return "namespace " + ns;
    case ChangeKind::invalidated_glob:
      return "glob " + std::string(c.pattern_view());
    case ChangeKind::invalidated_all:
      return "everything";
    default:
      return ns + ":" + std::string(c.account_view()) + ":" + std::string(c.instrument_view());
  }
}

ordered_json change_json(const Reader& r, const Change& c) {
  ordered_json j;
  j["position"] = c.position;
  j["kind"] = std::string(to_string(c.kind));
  if (c.ns != kAnyNamespace) j["namespace"] = r.namespace_info(c.ns).name;
  if (c.account_len > 0) j["account"] = std::string(c.account_view());
  if (c.instrument_len > 0) j["instrument"] = std::string(c.instrument_view());
  if (c.pattern_len > 0) j["pattern"] = std::string(c.pattern_view());
  j["version"] = text(c.version);
  j["at_ns"] = text(c.at_ns);
  return j;
}

ordered_json stats_json(const SegmentStats& s, const MirrorStatus& m) {
  ordered_json j;
  j["segment"] = s.segment;
  j["generation"] = text(s.generation);
  j["state"] = s.state;
  j["capacity"] = s.capacity;
  j["live"] = s.live;
  j["segment_bytes"] = s.segment_bytes;
  j["index_buckets"] = s.index_buckets;
  j["change_seq"] = s.change_seq;
  j["change_position"] = s.change_position;
  j["change_ring_cells"] = s.change_ring_cells;
  ordered_json counters;
  for (const CounterField& f : kCounterFields) {
    if (f.member != &Counters::live) counters[std::string(f.name)] = s.*f.member;
  }
  j["counters"] = counters;
  j["writer"] = {{"pid", s.writer.pid},
                 {"alive", s.writer.alive},
                 {"started_at_ns", text(s.writer.started_at_ns)},
                 {"heartbeat_age_ns", s.writer.heartbeat_age_ns},
                 {"restarts", s.writer.restarts}};
  j["redis"] = {{"state", m.state},
                {"last_error", m.last_error},
                {"dirty", m.dirty},
                {"oldest_unsynced_age_ns", m.oldest_unsynced_age_ns},
                {"synced_version", text(m.synced_version)},
                {"journal_pending", m.journal_pending},
                {"journal_overflows", m.journal_overflows},
                {"lease_epoch", text(m.lease_epoch)},
                {"data_losses", m.data_losses},
                {"repushed", m.repushed},
                {"refilling", m.refilling},
                {"evicting_policy", m.evicting_policy}};
  if (m.follow_state != "none") {
    j["follow"] = {{"state", m.follow_state},
                   {"lag_ns", m.follow_lag_ns},
                   {"entries", m.follow_entries},
                   {"reloads", m.follow_reloads}};
  }
  return j;
}

ordered_json read_counts_json(const ReadCounts& c) {
  ordered_json j = ordered_json::object();
  for (std::size_t i = 0; i < c.size(); ++i)
    j[std::string(to_string(static_cast<ReadStatus>(i)))] = c[i];
  return j;
}

ordered_json namespaces_json(const Reader& r, const SegmentStats& s) {
  ordered_json nss = ordered_json::array();
  const auto table = reader_table(r);  // reads by namespace: hits, stale serves, misses
  for (const auto& n : r.namespaces()) {
    ordered_json fields = ordered_json::array();
    for (const auto& f : n.fields)
      fields.push_back(f.type == FieldType::text
                           ? ordered_json{{"name", f.name}, {"type", "text"}, {"length", f.length}}
                           : ordered_json{{"name", f.name},
                                          {"type", std::string(to_string(f.type))},
                                          {"scale", f.scale}});
    nss.push_back({{"name", n.name},
                   {"live", n.id < s.namespace_live.size() ? s.namespace_live[n.id] : 0},
                   {"fields", fields},
                   {"stale_after_ns", n.stale_after.count()},
                   {"expire_after_ns", n.expire_after.count()},
                   {"reads", table && n.id < table->namespaces.size()
                                 ? read_counts_json(table->namespaces[n.id].counts)
                                 : ordered_json(nullptr)}});
  }
  return nss;
}

ordered_json producers_json(const std::vector<ProducerInfo>& list) {
  ordered_json a = ordered_json::array();
  for (const auto& p : list) {
    a.push_back({{"name", p.name},
                 {"state", p.state},
                 {"pid", p.pid},
                 {"uid", p.uid},
                 {"attached_at_ns", text(p.attached_at_ns)},
                 {"detached_at_ns", text(p.detached_at_ns)},
                 {"pushed", p.pushed},
                 {"applied", p.applied},
                 {"rejected", p.rejected},
                 {"full", p.full},
                 {"synced", p.synced},
                 {"last_error", p.last_error}});
  }
  return a;
}

ordered_json reader_table_json(const ReaderTableInfo& t) {
  ordered_json list = ordered_json::array();
  for (const ReaderInfo& r : t.readers) {
    list.push_back({{"pid", r.pid},
                    {"name", r.name},
                    {"state", r.state},
                    {"attached_at_ns", r.attached_at_ns},
                    {"gets", r.gets()},
                    {"counts", read_counts_json(r.counts)}});
  }
  ordered_json by_ns = ordered_json::array();
  for (const NamespaceReads& n : t.namespaces) {
    by_ns.push_back({{"namespace", n.name.empty() ? ordered_json(nullptr) : ordered_json(n.name)},
                     {"counts", read_counts_json(n.counts)}});
  }
  return {{"capacity", t.capacity},
          {"readers", list},
          {"namespaces", by_ns},
          {"retired", read_counts_json(t.retired)},
          {"total", read_counts_json(t.total)}};
}

const char* Health::status() const noexcept {
  if (!writer.alive) return "down";
  return redis_ok ? "ok" : "degraded";
}

Health health(const Reader& r, std::chrono::nanoseconds max_sync_lag) {
  Health h;
  h.writer = r.writer();
  h.redis = mirror_status(r);
  if (const auto st = r.refresh_stats()) h.refreshers = st->refreshers;
  h.max_sync_lag = max_sync_lag;
  if (h.redis.follow_state != "none") {  // a follower: following, and not too far behind
    h.redis_on = true;
    h.redis_ok =
        h.redis.follow_state == "following" && h.redis.follow_lag_ns <= max_sync_lag.count();
    return h;
  }
  h.redis_on = h.redis.state != "off";
  h.redis_ok = !h.redis_on ||
               (h.redis.state == "up" && h.redis.oldest_unsynced_age_ns <= max_sync_lag.count());
  return h;
}

ordered_json refresh_json(const Reader& reader) {
  const auto st = reader.refresh_stats();
  if (!st) return nullptr;
  ordered_json requests = ordered_json::object(), outcomes = ordered_json::object();
  for (const RefreshReason r : kAllRefreshReasons)
    requests[std::string(to_string(r))] = st->requests[static_cast<std::size_t>(r)];
  for (const PendingState o : kDecidedStates) outcomes[std::string(to_string(o))] = st->decided(o);
  return ordered_json{{"refreshers", st->refreshers},
                      {"in_flight", st->in_flight},
                      {"requests", requests},
                      {"deduplicated", st->deduplicated},
                      {"outcomes", outcomes},
                      {"errors", st->errors},
                      {"timeouts", st->timeouts},
                      {"refused", st->refused},
                      {"ring_full", st->ring_full},
                      {"rebuilds_running", st->rebuilds_running},
                      {"rebuild_positions", st->rebuild_positions}};
}

ordered_json health_json(const Health& h) {
  ordered_json j{{"alive", h.writer.alive},
                 {"pid", h.writer.pid},
                 {"heartbeat_age_ns", h.writer.heartbeat_age_ns},
                 {"redis",
                  {{"state", h.redis.state},
                   {"ok", h.redis_ok},
                   {"last_error", h.redis.last_error},
                   {"dirty", h.redis.dirty},
                   {"oldest_unsynced_age_ns", h.redis.oldest_unsynced_age_ns},
                   {"lease_epoch", h.redis.lease_epoch},
                   {"refilling", h.redis.refilling},
                   {"evicting_policy", h.redis.evicting_policy},
                   {"follow_state", h.redis.follow_state},
                   {"follow_lag_ns", h.redis.follow_lag_ns}}}};
  if (h.refreshers) j["refreshers"] = *h.refreshers;  // read-through: refreshers registered
  return j;
}

}  // namespace poscache::views
