// One round of the sync thread's writes, whichever the guard: events in version order (the keys
// of pattern removals found in Redis), then the dirty slots, then the orphan trade ids. How each
// batch is written and guarded is the strategy's (writer/redis/sync_strategy.hpp); the protocol:
// writer/redis/redis_sync.hpp.
#include <algorithm>
#include <span>

#include "shm/clock.hpp"
#include "shm/values/key_text.hpp"
#include "writer/redis/sync_worker.hpp"

namespace poscache::detail {

using namespace poscache::shm;

// A run of account removals (their keys from the account sets), in version order: every set
// read in one pipeline, then every guarded delete in pipelines, so a burst of N costs a few
// round trips instead of 2 N.
// (A later removal's ZRANGE may list a member an earlier one deletes: its delete then finds no
// key. Nothing between them in the run can add a member: position writes come after events.)
bool SyncWorker::run_accounts(const std::vector<RemovalEvent>& events, std::size_t from,
                              std::size_t to) {
  for (std::size_t j = from; j < to; ++j) {
    args_.clear();
    args_.add("ZRANGE").add(fmt_.account_key(events[j].text)).add("0").add("-1");
    if (auto a = client_.append(args_); !a) {
      lost_connection(a.error());
      return false;
    }
  }
  if (auto w = client_.send(); !w) {
    lost_connection(w.error());
    return false;
  }
  SyncStrategy::VersionedKeys keys;
  bool refused = false;
  for (std::size_t j = from; j < to; ++j) {  // every reply is read, even after a refusal
    const RemovalEvent& e = events[j];
    auto r = client_.read_reply();
    if (!r) {
      lost_connection(r.error());
      return false;
    }
    if ((*r)->type != REDIS_REPLY_ARRAY) {
      set_error("ZRANGE " + fmt_.account_key(e.text) + ": " + reply_text(r->get()));
      refused = true;
      continue;
    }
    for (std::size_t i = 0; i < (*r)->elements; ++i) {
      const std::string_view m((*r)->element[i]->str, (*r)->element[i]->len);
      const std::size_t c = m.find(':');
      if (c == std::string_view::npos) continue;
      ParsedKey k{std::string(m.substr(0, c)), e.text, std::string(m.substr(c + 1))};
      if (e.ns && k.ns != ns_name(*e.ns)) continue;
      keys.emplace_back(std::move(k), e.version);
    }
  }
  return !refused && writes_->delete_keys(keys);
}

// Pattern removals take their keys from Redis itself (SCAN, or the account's set), so positions
// that live only in Redis (evicted from the segment) are removed too. Each delete is guarded by
// the removal's version: a position written after the removal survives it.
// A namespace, glob or everything removal: the keys come from SCAN.
bool SyncWorker::run_scan(const RemovalEvent& e) {
  SyncStrategy::VersionedKeys keys;
  const std::string pattern =
      fmt_.scan_pattern(e.kind == RemovalEvent::Kind::ns ? e.ns : std::nullopt);
  std::string cursor = "0";
  do {
    args_.clear();
    args_.add("SCAN")
        .add(cursor)
        .add("MATCH")
        .add(pattern)
        .add("COUNT")
        .add("1000")
        .add("TYPE")
        .add("hash");
    auto r = client_.command(args_);
    if (!r) {
      lost_connection(r.error());
      return false;
    }
    const redisReply* rep = r->get();
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
      set_error("SCAN " + pattern + ": " + reply_text(rep));
      return false;
    }
    cursor.assign(rep->element[0]->str, rep->element[0]->len);
    keys.clear();
    std::string full;  // a key's text, for the glob
    for (std::size_t i = 0; i < rep->element[1]->elements; ++i) {
      const redisReply* k = rep->element[1]->element[i];
      auto pk = fmt_.parse_key({k->str, k->len});
      if (!pk) continue;
      if (e.kind == RemovalEvent::Kind::glob) {
        if (!detail::key_matches(e.text.c_str(), full, pk->ns, pk->account, pk->instrument))
          continue;
      }
      keys.emplace_back(std::move(*pk), e.version);
    }
    if (!writes_->delete_keys(keys)) return false;
  } while (cursor != "0");
  return true;
}

// The change stream's entries of removals by pattern [from, to), once their deletes are all in
// Redis: one fenced transaction. (A writer that dies before it replays the removal from its
// journal: deletes again, then the entry.)
bool SyncWorker::append_patterns(const std::vector<RemovalEvent>& events, std::size_t from,
                                 std::size_t to) {
  if (!fmt_.change_stream()) return true;  // (RedisGuard::fence only: FencedWrites)
  return writes_->write_plain([&](Commands& out) {
    for (std::size_t j = from; j < to; ++j) {
      const RemovalEvent& e = events[j];
      const std::string_view ns = e.ns ? ns_name(*e.ns) : std::string_view();
      switch (e.kind) {
        case RemovalEvent::Kind::account:
          fmt_.add_pattern_change("account", ns, e.text, e.version, out);
          break;
        case RemovalEvent::Kind::ns:
          fmt_.add_pattern_change("namespace", ns, {}, e.version, out);
          break;
        case RemovalEvent::Kind::glob:
          fmt_.add_pattern_change("glob", {}, e.text, e.version, out);
          break;
        case RemovalEvent::Kind::all:
          fmt_.add_pattern_change("all", {}, {}, e.version, out);
          break;
        default:
          break;
      }
    }
  });
}

// Events in version order. `done` counts the ones written (the caller keeps the rest).
bool SyncWorker::write_events(std::vector<RemovalEvent>& events, std::size_t& done) {
  done = 0;
  std::size_t i = 0;
  while (i < events.size()) {
    if (events[i].kind == RemovalEvent::Kind::account) {  // a run of them, pipelined together
      std::size_t k = i;
      while (k < events.size() && k - i < batch_size_ &&
             events[k].kind == RemovalEvent::Kind::account)
        ++k;
      if (!run_accounts(events, i, k) || !append_patterns(events, i, k)) return false;
      for (; i < k; ++i) tail_.done(events[i].journal_pos);
      done = i;
      continue;
    }
    if (events[i].kind != RemovalEvent::Kind::spill &&
        events[i].kind != RemovalEvent::Kind::erase) {
      if (!run_scan(events[i]) || !append_patterns(events, i, i + 1)) return false;
      tail_.done(events[i].journal_pos);
      done = ++i;
      continue;
    }
    // A run of per-key events, batch_size at most, each guarded by its key's version.
    std::size_t n = 0;
    while (i + n < events.size() && n < batch_size_ &&
           (events[i + n].kind == RemovalEvent::Kind::spill ||
            events[i + n].kind == RemovalEvent::Kind::erase))
      ++n;
    if (!writes_->write_key_events(std::span(events).subspan(i, n))) return false;
    for (std::size_t j = 0; j < n; ++j) {
      if (events[i + j].kind == RemovalEvent::Kind::spill)
        synced_max_ = std::max(synced_max_, events[i + j].version);
      tail_.done(events[i + j].journal_pos);
    }
    i += n;
    done = i;
  }
  return true;
}

bool SyncWorker::flush_round() {
  if (trades_on_ &&
      (recheck_trades_ || (trades_blocked_ != 0 && monotonic_ns() >= next_trade_check_ns_))) {
    check_trade_keys();  // sync_trades.cpp
    if (!client_.connected()) return false;
  }
  if (reload_scripts_) {  // the server lost them (SCRIPT FLUSH, a restart we did not notice)
    if (const std::string err = load_scripts(); !err.empty()) {
      lost_connection(err);
      return false;
    }
  }
  std::vector<RemovalEvent> events;
  events.reserve(key_events_.size() + pattern_events_.size());
  for (auto& [k, e] : key_events_) events.push_back(std::move(e));
  for (auto& e : pattern_events_) events.push_back(std::move(e));
  key_events_.clear();
  pattern_events_.clear();
  std::sort(events.begin(), events.end(),
            [](const RemovalEvent& a, const RemovalEvent& b) { return a.version < b.version; });
  std::size_t done = 0;
  bool ok = write_events(events, done);
  if (!ok) {
    for (std::size_t i = done; i < events.size(); ++i) merge_event(std::move(events[i]));
  } else {
    ok = writes_->write_slots();
  }
  // Orphan trade ids (sync_trades.cpp): once every change before them is in Redis.
  if (ok && dirty_.empty() && key_events_.empty() && pattern_events_.empty() && trades_due())
    ok = write_due_trades();
  // (run() resets the oldest-change age and the clean mark once nothing is pending.)
  if (ok && !last_error_.empty() && client_.connected()) set_error("");
  return ok;
}

}  // namespace poscache::detail
