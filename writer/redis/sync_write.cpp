// The sync thread's writes: one round of events, then dirty slots, pipelined.
#include <algorithm>
#include <cstring>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "shm/seqlock.hpp"
#include "values/key_text.hpp"
#include "writer/redis/sync_worker.hpp"

namespace poscache::detail {

using namespace poscache::shm;

// ---- writing --------------------------------------------------------------------------------
// Reads `n` replies of the pipeline. A connection failure returns false (the caller keeps
// everything of this round); an error reply marks that command failed (ok[i] = false) and is
// logged; NOSCRIPT (scripts flushed on the server) reloads the scripts.
bool SyncWorker::check_replies(std::size_t n, std::vector<bool>* ok) {
  for (std::size_t i = 0; i < n; ++i) {
    auto r = client_.read_reply();
    if (!r) {
      lost_connection(r.error());
      return false;
    }
    const bool good = (*r)->type != REDIS_REPLY_ERROR;
    if (ok != nullptr) (*ok)[i] = good;
    if (!good) {
      Counted::add(counted_.errors);
      const std::string text = reply_text(r->get());
      if (text.rfind("NOSCRIPT", 0) == 0) {
        reload_scripts_ = true;  // after every reply in flight is read: see flush_round()
      } else if (text != last_error_) {
        log(LogLevel::error, "redis " + redis_endpoint(cfg_) + ": a write was refused: " + text +
                                 " (kept, retried)");
        set_error(text);
      }
    }
  }
  return true;
}

// Guarded deletes of (key, version of its removal), batch_size per round trip.
bool SyncWorker::delete_pipelined(const std::vector<std::pair<ParsedKey, std::uint64_t>>& keys) {
  for (std::size_t base = 0; base < keys.size(); base += batch_size_) {
    const std::size_t n = std::min(batch_size_, keys.size() - base);
    if (cfg_.guard == RedisGuard::fence) {  // behind the fence, each key's version read first
      const Tx t = fenced_guarded(
          n,
          [&](std::size_t i, Args& a) {
            const ParsedKey& k = keys[base + i].first;
            a.add(fmt_.position_key(k.ns, k.account, k.instrument));
          },
          [&](const Versions& held, Commands& out) {
            for (std::size_t i = 0; i < n; ++i) {
              const auto& [k, version] = keys[base + i];
              if (held[i] && *held[i] > version) continue;  // written after the removal
              fmt_.add_plain_delete(k.ns, k.account, k.instrument, out);
            }
          });
      if (t != Tx::committed) return false;
      continue;
    }
    std::vector<bool> ok(n, true);
    for (int attempt = 0; attempt < 2; ++attempt) {
      for (std::size_t i = 0; i < n; ++i) {
        const auto& [k, version] = keys[base + i];
        fmt_.delete_args(delete_sha_, k.ns, k.account, k.instrument, version, args_);
        if (auto a = client_.append(args_); !a) {
          lost_connection(a.error());
          return false;
        }
      }
      if (!check_replies(n, &ok)) return false;
      if (std::all_of(ok.begin(), ok.end(), [](bool b) { return b; })) break;
      if (attempt == 1) return false;  // refused twice: keep the events, try next round
    }
  }
  return true;
}

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
  std::vector<std::pair<ParsedKey, std::uint64_t>> keys;
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
  return !refused && delete_pipelined(keys);
}

// Pattern removals take their keys from Redis itself (SCAN, or the account's set), so positions
// that live only in Redis (evicted from the segment) are removed too. Each delete is guarded by
// the removal's version: a position written after the removal survives it.
// A namespace, glob or everything removal: the keys come from SCAN.
bool SyncWorker::run_scan(const RemovalEvent& e) {
  std::vector<std::pair<ParsedKey, std::uint64_t>> keys;
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
    if (!delete_pipelined(keys)) return false;
  } while (cursor != "0");
  return true;
}

// The change stream's entries of removals by pattern [from, to), once their deletes are all in
// Redis: one fenced transaction. (A writer that dies before it replays the removal from its
// journal: deletes again, then the entry.)
bool SyncWorker::append_patterns(const std::vector<RemovalEvent>& events, std::size_t from,
                                 std::size_t to) {
  if (!fmt_.change_stream()) return true;
  const Tx t = fenced_guarded(
      0, [](std::size_t, Args&) {},
      [&](const Versions&, Commands& out) {
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
  return t == Tx::committed;
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
    // A run of per-key events, one pipeline per batch_size.
    std::size_t n = 0;
    if (cfg_.guard == RedisGuard::fence) {  // one fenced transaction, each key's version first
      while (i + n < events.size() && n < batch_size_ &&
             (events[i + n].kind == RemovalEvent::Kind::spill ||
              events[i + n].kind == RemovalEvent::Kind::erase))
        ++n;
      const Tx t = fenced_guarded(
          n, [&](std::size_t j, Args& a) { a.add(event_key(events[i + j])); },
          [&](const Versions& held, Commands& out) {
            fmt_.begin_changes(entry_);
            for (std::size_t j = 0; j < n; ++j) {
              const RemovalEvent& e = events[i + j];
              const SlotPayload& p = e.payload;
              if (e.kind == RemovalEvent::Kind::spill) {
                // Redis holds this version or a newer one: a slot read already carried it.
                if (held[j] && *held[j] >= e.version) continue;
                fmt_.add_plain_upsert(p, RedisFormat::kAddMember | RedisFormat::kDropUnset,
                                      set_sha_, out);
                fmt_.add_change(entry_, true, ns_name(p.ns), {p.account, p.account_len},
                                {p.instrument, p.instrument_len}, e.version);
              } else {
                if (held[j] && *held[j] > e.version) continue;  // written after the erase
                fmt_.add_plain_delete(ns_name(p.ns), {p.account, p.account_len},
                                      {p.instrument, p.instrument_len}, out);
                fmt_.add_change(entry_, false, ns_name(p.ns), {p.account, p.account_len},
                                {p.instrument, p.instrument_len}, e.version);
              }
            }
            fmt_.finish_changes(entry_, out);
          });
      if (t != Tx::committed) return false;
      for (std::size_t j = 0; j < n; ++j) {
        if (events[i + j].kind == RemovalEvent::Kind::spill)
          synced_max_ = std::max(synced_max_, events[i + j].version);
        tail_.done(events[i + j].journal_pos);
      }
      i += n;
      done = i;
      continue;
    }
    while (i + n < events.size() && n < batch_size_ &&
           (events[i + n].kind == RemovalEvent::Kind::spill ||
            events[i + n].kind == RemovalEvent::Kind::erase)) {
      const RemovalEvent& e = events[i + n];
      const SlotPayload& p = e.payload;
      Expected<bool> a = true;
      if (e.kind == RemovalEvent::Kind::spill) {
        call_.clear();
        call_.add(fmt_, p);
        a = call_.append_to(client_, upsert_sha_);
      } else {
        fmt_.delete_args(delete_sha_, ns_name(p.ns), {p.account, p.account_len},
                         {p.instrument, p.instrument_len}, e.version, args_);
        a = client_.append(args_);
      }
      if (!a) {
        lost_connection(a.error());
        return false;
      }
      ++n;
    }
    std::vector<bool> ok(n, true);
    if (!check_replies(n, &ok)) return false;
    if (!std::all_of(ok.begin(), ok.end(), [](bool b) { return b; }))
      return false;  // retried next round
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

// Every dirty slot's current content, batch_size per round trip. A slot that changes after it
// was read is marked dirty again by the apply thread and comes back in a later batch.
bool SyncWorker::write_slots() {
  std::vector<std::uint32_t> round;
  round.swap(dirty_);
  for (std::uint32_t s : round)
    in_dirty_[s] &= static_cast<std::uint8_t>(~1u);  // a mark arriving from now on queues it again
  std::uint64_t words[kPayloadWords];
  std::size_t next = 0;
  auto requeue_from = [&](std::size_t from) {
    for (std::size_t j = from; j < round.size(); ++j) {
      const std::uint32_t s = round[j];
      if ((in_dirty_[s] & 1) == 0) {
        in_dirty_[s] |= 1;
        dirty_.push_back(s);
      }
    }
  };
  auto requeue = [&](std::uint32_t s) {
    if ((in_dirty_[s] & 1) == 0) {
      in_dirty_[s] |= 1;
      dirty_.push_back(s);
    }
  };
  // Pipelines of up to batch_size positions, per_call of them per EVALSHA, two in flight: the
  // next one is built and sent while Redis executes the previous one.
  const std::size_t per_call = std::max<std::size_t>(1, cfg_.positions_per_call);
  struct Chunk {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> items;  // (slot, version written)
    std::vector<std::int64_t> updated_at;                        // its apply time (sync lag)
    std::vector<std::size_t> call_end;                           // items index after each call
  };
  Chunk chunks[2];
  int inflight = -1;  // the chunk whose replies are still to be read
  auto fail_all = [&](const std::string& why) {
    if (!why.empty()) lost_connection(why);
    for (const Chunk& c : chunks) {
      for (const auto& [slot, ver] : c.items) requeue(slot);
    }
    requeue_from(next);
    return false;
  };
  // Reads a chunk's replies and acknowledges its positions; false on a lost connection.
  std::vector<bool> ok;
  bool refused = false;
  auto settle = [&](Chunk& c) -> bool {
    ok.assign(c.call_end.size(), true);
    if (!check_replies(c.call_end.size(), &ok)) return false;
    const std::int64_t now_rt = realtime_ns();
    std::size_t from = 0;
    for (std::size_t k = 0; k < c.call_end.size(); ++k) {
      for (std::size_t j = from; j < c.call_end[k]; ++j) {
        const auto [s, ver] = c.items[j];
        if (!ok[k]) {
          requeue(s);
          refused = true;
          continue;
        }
        // release: pairs with the apply thread's acquire load before it evicts this slot
        store_release(&v_.book[s].synced_version, ver);
        synced_max_ = std::max(synced_max_, ver);
        count_written(c.updated_at[j], now_rt);
      }
      if (ok[k]) Counted::add(counted_.transactions);
      from = c.call_end[k];
    }
    c.items.clear();
    c.updated_at.clear();
    c.call_end.clear();
    return true;
  };
  for (int cur = 0;; cur ^= 1) {
    Chunk& c = chunks[cur];
    call_.clear();
    auto send_call = [&]() -> bool {
      if (call_.positions() == 0) return true;
      const bool sent = static_cast<bool>(call_.append_to(client_, upsert_sha_));
      call_.clear();
      c.call_end.push_back(c.items.size());
      return sent;
    };
    bool sent = true;
    while (sent && next < round.size() && c.items.size() < batch_size_) {
      const std::uint32_t s = round[next++];
      if (!read_bounded(v_.slots[s], words, kPayloadWords)) {
        requeue(s);  // mid-write for a long time (a stopped writer?): later
        continue;
      }
      SlotPayload p;
      std::memcpy(&p, words, sizeof p);
      if (p.ns == kFreeNamespace || p.ns >= fmt_.namespaces().size())
        continue;  // removed meanwhile
      // relaxed: only this thread stores it
      const std::uint64_t synced = load_relaxed(&v_.book[s].synced_version);
      if (p.version <= synced) continue;  // Redis has it
      call_.add(fmt_, p);
      c.items.emplace_back(s, p.version);
      c.updated_at.push_back(p.updated_at_ns);
      if (call_.positions() == per_call) sent = send_call();
    }
    if (sent) sent = send_call();
    if (!sent) return fail_all("redis " + redis_endpoint(cfg_) + ": cannot queue a command");
    if (!c.call_end.empty()) {
      if (auto w = client_.send(); !w) return fail_all(w.error());
    }
    if (inflight >= 0 && !settle(chunks[inflight])) return fail_all("");
    if (refused) {  // e.g. NOSCRIPT: read what is in flight, keep the rest for the next round
      if (!c.call_end.empty() && !settle(c)) return fail_all("");
      break;
    }
    if (c.call_end.empty()) break;  // nothing more was sent: the round is done
    inflight = cur;
  }
  if (refused) {
    requeue_from(next);
    return false;
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
    ok = cfg_.guard == RedisGuard::fence ? write_slots_fenced() : write_slots();
  }
  // Orphan trade ids (sync_trades.cpp): once every change before them is in Redis.
  if (ok && dirty_.empty() && key_events_.empty() && pattern_events_.empty() && trades_due())
    ok = write_due_trades();
  // (run() resets the oldest-change age and the clean mark once nothing is pending.)
  if (ok && !last_error_.empty() && client_.connected()) set_error("");
  return ok;
}

}  // namespace poscache::detail
