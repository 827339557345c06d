// The sync thread's fenced writes (RedisGuard::fence): the transactions behind the writer lease
// (writer/redis/lease.hpp). A round's order: writer/redis/sync_round.cpp; the protocol:
// writer/redis/redis_sync.hpp.
#include "writer/redis/fenced_writes.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "shm/seqlock.hpp"

namespace poscache::detail {

using namespace poscache::shm;

static_assert(RedisFormat::kAddMember == kSlotNewKey &&
              RedisFormat::kDropUnset == kSlotFieldsDropped);

FencedWrites::FencedWrites(SyncWorker& worker) : w_(worker), lease_(worker.cfg_) {
  w_.fmt_.set_change_stream(w_.cfg_.change_stream_retention);
}

// The account set's script only: the positions themselves are plain commands.
std::string FencedWrites::load_scripts() {
  auto set = w_.client_.load_script(kAccountSetScript);
  if (!set) return set.error();
  set_sha_ = *set;
  return {};
}

// The schema too is written by the holder only.
SyncStrategy::Opened FencedWrites::open(std::string& err) {
  if (!take_lease()) {
    if (w_.fenced_) return Opened::fenced;
    err = w_.last_error_;  // the connection failed while taking it (logged)
    return Opened::failed;
  }
  w_.fmt_.schema_args(args_);
  const Tx done = fenced_guarded(
      0, [](std::size_t, Args&) {}, [&](const Versions&, Commands& out) { out.add(args_); });
  if (w_.fenced_) return Opened::fenced;
  if (done == Tx::committed) return Opened::up;
  err = "redis " + redis_endpoint(w_.cfg_) + ": HSET " + w_.fmt_.schema_key() +
        " failed: " + (w_.last_error_.empty() ? "transaction aborted" : w_.last_error_);
  return Opened::failed;
}

std::string FencedWrites::guard_note() const {
  return ", writer lease epoch " + std::to_string(lease_.epoch());
}

void FencedWrites::idle() {
  renew_if_idle();
}

void FencedWrites::close() {
  lease_.release(w_.client_);
}

bool FencedWrites::take_lease() {
  const RedisConfig& cfg = w_.cfg_;
  const std::uint64_t had = lease_.epoch();
  auto o = lease_.take(w_.client_);
  if (!o) {
    w_.lost_connection(o.error());
    return false;
  }
  switch (*o) {
    case Lease::Outcome::taken:
      w_.log(LogLevel::info, "redis " + redis_endpoint(cfg) + ": took the writer lease " +
                                 lease_.key() + ", epoch " + std::to_string(lease_.epoch()) +
                                 " (ttl " + std::to_string(cfg.lease_ttl.count()) + " ms)");
      // A segment with positions and a Redis with no trace of any writer of the prefix: it lost
      // them (or never had them); either way they go to Redis.
      if (lease_.counter_lost() && load_relaxed(&w_.v_.h->counters.live) > 0) {
        w_.start_refill("it has no " + cfg.prefix + ":@epoch while the segment holds " +
                        std::to_string(load_relaxed(&w_.v_.h->counters.live)) + " positions");
      }
      break;
    case Lease::Outcome::retaken:
      if (lease_.counter_lost()) {
        w_.start_refill("the lease and " + cfg.prefix + ":@epoch it held are gone");
        break;
      }
      w_.log(LogLevel::warn, "redis " + redis_endpoint(cfg) + ": the writer lease " + lease_.key() +
                                 " had expired (Redis unreachable or this writer paused longer "
                                 "than its ttl); nobody took it since, so epoch " +
                                 std::to_string(had) + " goes on");
      break;
    case Lease::Outcome::ours:
      break;
    case Lease::Outcome::held:
      w_.become_fenced("the writer lease " + lease_.key() + " on prefix '" + cfg.prefix +
                       "' is held by another writer (" + lease_.holder().describe() +
                       "); only one writer may write a prefix");
      return false;
    case Lease::Outcome::superseded:
      w_.become_fenced("another writer took the writer lease " + lease_.key() + " (epoch " +
                       std::to_string(lease_.holder().epoch) + ") after this writer's epoch " +
                       std::to_string(had));
      return false;
  }
  if (!lease_.kill_fence() && !kill_warned_) {
    w_.log(LogLevel::warn, "redis " + redis_endpoint(cfg) + ": CLIENT KILL is not allowed (" +
                               lease_.kill_error() +
                               "): a writer taking the lease cannot end this one's connection, "
                               "so every sync transaction waits for its fence's answer first "
                               "(slower; allow +client|kill for this user to pipeline them)");
    kill_warned_ = true;
  }
  store_relaxed(&w_.v_.h->redis_lease_epoch, lease_.epoch());
  return true;
}

bool FencedWrites::renew_if_idle() {
  if (!lease_.renewal_due(monotonic_ns())) return true;
  return fenced_guarded(
             0, [](std::size_t, Args&) {}, [](const Versions&, Commands&) {}) == Tx::committed;
}

// ---- the fence (the lease and the fence: writer/redis/lease.hpp) ----------------------------
FencedWrites::Tx FencedWrites::read_exec(std::size_t queued, std::vector<bool>& ok) {
  RedisClient& client = w_.client_;
  ok.assign(queued, false);
  Reply exec;
  for (std::size_t i = 0; i < queued + 2; ++i) {  // +OK, +QUEUED (or a queuing error) ..., EXEC
    auto r = client.read_reply();
    if (!r) {
      w_.lost_connection(r.error());
      return Tx::lost;
    }
    if (i == queued + 1) exec = std::move(*r);
  }
  if (exec->type == REDIS_REPLY_NIL) return Tx::tripped;
  auto refused = [&](const std::string& text) {
    SyncWorker::Counted::add(w_.counted_.errors);
    if (text.find("NOSCRIPT") != std::string::npos) {
      w_.reload_scripts_ = true;
    } else if (text != w_.last_error_) {
      w_.log(LogLevel::error, "redis " + redis_endpoint(w_.cfg_) +
                                  ": a write was refused: " + text + " (kept, retried)");
      w_.set_error(text);
    }
  };
  if (exec->type != REDIS_REPLY_ARRAY || exec->elements != queued) {  // EXECABORT, ...
    refused(reply_text(exec.get()));
    return Tx::refused;
  }
  bool all = true;
  for (std::size_t i = 0; i < queued; ++i) {
    ok[i] = exec->element[i]->type != REDIS_REPLY_ERROR;
    if (!ok[i]) {
      all = false;
      refused(reply_text(exec->element[i]));
    }
  }
  return all ? Tx::committed : Tx::refused;
}

FencedWrites::Tx FencedWrites::fenced_guarded(
    std::size_t n, const std::function<void(std::size_t, Args&)>& key_of,
    const std::function<void(const Versions&, Commands&)>& build) {
  RedisClient& client = w_.client_;
  tx_.clear();
  lease_.add_fence(tx_);
  for (std::size_t i = 0; i < n; ++i) {
    Args& a = tx_.cmd("HGET");
    key_of(i, a);
    a.add("version");
  }
  if (auto a = tx_.append_to(client); !a) {
    w_.lost_connection(a.error());
    return Tx::lost;
  }
  auto ours = lease_.check_fence(client);
  if (!ours) {
    w_.lost_connection(ours.error());
    return Tx::lost;
  }
  Versions versions(n);
  for (std::size_t i = 0; i < n; ++i) {  // every reply is read, whatever the fence said
    auto r = client.read_reply();
    if (!r) {
      w_.lost_connection(r.error());
      return Tx::lost;
    }
    if ((*r)->type == REDIS_REPLY_STRING) {
      std::uint64_t v = 0;
      std::from_chars((*r)->str, (*r)->str + (*r)->len, v);
      versions[i] = v;
    }
  }
  if (!*ours) {
    take_lease();  // expired and nobody took it: ours again (retried next round); else fenced
    return client.connected() ? Tx::tripped : Tx::lost;
  }
  tx_.clear();
  tx_.cmd("MULTI");
  build(versions, tx_);
  const std::int64_t now = monotonic_ns();
  const bool renewing = lease_.renewal_due(now);
  if (renewing) lease_.add_renewal(tx_);
  tx_.cmd("EXEC");
  const std::size_t queued = tx_.size() - 2;
  if (auto a = tx_.append_to(client); !a) {
    w_.lost_connection(a.error());
    return Tx::lost;
  }
  std::vector<bool> ok;
  const Tx t = read_exec(queued, ok);
  if (t == Tx::committed && renewing) lease_.renewed(now);
  if (t == Tx::tripped) take_lease();
  return t;
}

// ---- events ---------------------------------------------------------------------------------
// One fenced transaction, each key's version read first.
bool FencedWrites::write_key_events(std::span<const RemovalEvent> events) {
  const RedisFormat& fmt = w_.fmt_;
  const Tx t = fenced_guarded(
      events.size(), [&](std::size_t j, Args& a) { a.add(w_.event_key(events[j])); },
      [&](const Versions& held, Commands& out) {
        fmt.begin_changes(entry_);
        for (std::size_t j = 0; j < events.size(); ++j) {
          const RemovalEvent& e = events[j];
          const SlotPayload& p = e.payload;
          const std::string_view ns = w_.ns_name(p.ns);
          const std::string_view account(p.account, p.account_len);
          const std::string_view instrument(p.instrument, p.instrument_len);
          if (e.kind == RemovalEvent::Kind::spill) {
            // Redis holds this version or a newer one: a slot read already carried it.
            if (held[j] && *held[j] >= e.version) continue;
            fmt.add_plain_upsert(p, RedisFormat::kAddMember | RedisFormat::kDropUnset, set_sha_,
                                 out);
            fmt.add_change(entry_, true, ns, account, instrument, e.version);
          } else {
            if (held[j] && *held[j] > e.version) continue;  // written after the erase
            fmt.add_plain_delete(ns, account, instrument, out);
            fmt.add_change(entry_, false, ns, account, instrument, e.version);
          }
        }
        fmt.finish_changes(entry_, out);
      });
  return t == Tx::committed;
}

// Behind the fence, each key's version read first.
bool FencedWrites::delete_keys(const VersionedKeys& keys) {
  const std::size_t batch = w_.batch_size_;
  for (std::size_t base = 0; base < keys.size(); base += batch) {
    const std::size_t n = std::min(batch, keys.size() - base);
    const Tx t = fenced_guarded(
        n,
        [&](std::size_t i, Args& a) {
          const ParsedKey& k = keys[base + i].first;
          a.add(w_.fmt_.position_key(k.ns, k.account, k.instrument));
        },
        [&](const Versions& held, Commands& out) {
          for (std::size_t i = 0; i < n; ++i) {
            const auto& [k, version] = keys[base + i];
            if (held[i] && *held[i] > version) continue;  // written after the removal
            w_.fmt_.add_plain_delete(k.ns, k.account, k.instrument, out);
          }
        });
    if (t != Tx::committed) return false;
  }
  return true;
}

bool FencedWrites::write_plain(const std::function<void(Commands&)>& build) {
  return fenced_guarded(
             0, [](std::size_t, Args&) {}, [&](const Versions&, Commands& out) { build(out); }) ==
         Tx::committed;
}

// ---- slots ----------------------------------------------------------------------------------
// Every dirty slot's current content, fenced: transactions of up to batch_size positions, each
// [WATCH @writer, HGET @writer epoch, MULTI, the positions' plain commands, EXEC]. With the
// connection fence (lease.hpp) the next transaction is built while Redis runs the previous one
// and sent before its replies are read, two in flight like a plain pipeline; without it, each
// waits for its fence's answer before its MULTI goes.
// ORDER: one connection, transactions in the order they are built, each slot read when its
// transaction is built: a key's versions reach Redis in the order they were read, and a read is
// never older than the last one (the slot only moves forward). Events (removals, spills) go
// before the slots of a round and read the versions Redis holds first, so a removal never
// deletes a newer write of its key that a slot read already carried (redis_sync.hpp).
bool FencedWrites::write_slots() {
  SlotRound r;
  r.slots.swap(w_.dirty_);
  for (std::uint32_t s : r.slots) w_.in_dirty_[s] &= static_cast<std::uint8_t>(~1u);  // flags stay
  // The connection fence (lease.hpp) lets each transaction go with its own fence, two in
  // flight; without it (CLIENT KILL not allowed) the fence's answer comes first, every time.
  const bool pipelined = lease_.kill_fence();
  int inflight = -1;
  for (int cur = 0;; cur ^= 1) {
    Chunk& c = r.chunks[cur];
    build(r, c, pipelined);
    const bool has = !c.items.empty() || c.renewing;
    if (pipelined && has && !send(c)) return give_back_all(r);  // before the previous one is read
    if (inflight >= 0) {
      const Tx t = collect(r, r.chunks[inflight], pipelined);
      inflight = -1;
      if (t == Tx::lost) return give_back_all(r);
      if (t != Tx::committed) {
        if (pipelined && has && collect(r, c, true) == Tx::lost) return give_back_all(r);
        give_back_all(r);
        if (t == Tx::tripped) take_lease();  // ours again (expired; the key touched) or fenced
        return false;
      }
    }
    if (!has) break;
    if (!pipelined) {  // the fence's answer first
      Commands fence;
      lease_.add_fence(fence);
      if (auto a = fence.append_to(w_.client_); !a) {
        w_.lost_connection(a.error());
        return give_back_all(r);
      }
      auto ours = lease_.check_fence(w_.client_);
      if (!ours) {
        w_.lost_connection(ours.error());
        return give_back_all(r);
      }
      if (!*ours) {
        give_back_all(r);
        take_lease();
        return false;
      }
      if (!send(c)) return give_back_all(r);
    }
    inflight = cur;
  }
  return true;
}

void FencedWrites::build(SlotRound& r, Chunk& c, bool with_fence) {
  const RedisFormat& fmt = w_.fmt_;
  std::vector<std::uint8_t>& in_dirty = w_.in_dirty_;
  c.items.clear();
  c.cmds.clear();
  if (with_fence) lease_.add_fence(c.cmds);
  c.cmds.cmd("MULTI");
  fmt.begin_changes(c.entry);
  std::size_t commands = 0;
  std::uint64_t words[kPayloadWords];
  while (r.next < r.slots.size() && c.items.size() < w_.batch_size_) {
    const std::uint32_t s = r.slots[r.next++];
    if (!read_bounded(w_.v_.slots[s], words, kPayloadWords)) {
      w_.requeue(s);  // mid-write for a long time (a stopped writer?): later
      continue;
    }
    SlotPayload p;
    std::memcpy(&p, words, sizeof p);
    const auto flags = static_cast<std::uint8_t>(in_dirty[s] >> 1);
    if (p.ns == kFreeNamespace || p.ns >= fmt.namespaces().size()) {
      in_dirty[s] &= 1;  // removed meanwhile: the flags were its key's
      continue;
    }
    if (w_.trades_held_back(p.ns, p.key_hash)) {  // its ids could not go with it (sync_trades.cpp)
      w_.requeue(s);
      continue;
    }
    // relaxed: only this thread stores it. Redis has this version: skip, unless a flag came
    // after the write that carried it (the mark's batch arrived later than the slot's read).
    const std::uint64_t synced = load_relaxed(&w_.v_.book[s].synced_version);
    if (p.version <= synced && flags == 0) continue;
    in_dirty[s] &= 1;
    // A change read ahead of its batch: its flags may still be on the way. Without the
    // member, an account invalidation (which finds keys through the set) would miss the key;
    // and a kill before the batch arrived would lose the flag for good (the slot is synced).
    std::uint8_t write_flags = flags;
    if (p.created_at_ns >= w_.horizon_ns_) write_flags |= kSlotNewKey;
    if (p.updated_at_ns >= w_.horizon_ns_) write_flags |= kSlotFieldsDropped;
    const std::size_t n = fmt.add_plain_upsert(p, write_flags, set_sha_, c.cmds);
    fmt.add_change(c.entry, true, w_.ns_name(p.ns), {p.account, p.account_len},
                   {p.instrument, p.instrument_len}, p.version);
    c.items.push_back(
        {s, p.version, p.key_hash, p.updated_at_ns, flags, static_cast<std::uint32_t>(n)});
    commands += n;
  }
  c.stream_cmd = fmt.finish_changes(c.entry, c.cmds) > 0 ? commands + 1 : 0;
  // The trade ids of the fills whose effects the contents just read hold (the reads above are
  // TS1 of writer/trade_log.hpp; TS2, TS3 in catch_up_trades). A fill still in flight after 2 ms:
  // the chunk goes next round instead.
  c.trades.clear();
  c.trade_cmds = 0;
  if (!c.items.empty() && !w_.catch_up_trades()) {
    restart(c, with_fence);
    for (std::size_t j = r.next; j < r.slots.size(); ++j) w_.requeue(r.slots[j]);
    r.next = r.slots.size();
  }
  if (!w_.trades_.empty()) {
    for (const Item& it : c.items) w_.take_trades(it.key_hash, it.version, c.trades);
    bool held = false;  // a fill landed since the read, in a namespace held back: next round
    for (const auto& [ns, pairs] : c.trades.zadd)
      held = held || (ns < 32 && (w_.trades_blocked_ >> ns) & 1u);
    if (held) restart(c, with_fence);
    c.trade_cmds = w_.add_trade_commands(c.trades, c.cmds);
  }
  c.built_at = monotonic_ns();
  c.renewing = lease_.renewal_due(c.built_at);
  if (c.renewing) lease_.add_renewal(c.cmds);
  c.cmds.cmd("EXEC");
  c.queued = c.cmds.size() - (with_fence ? 4 : 2);
}

void FencedWrites::restart(Chunk& c, bool with_fence) {
  give_back(c);
  c.cmds.clear();
  if (with_fence) lease_.add_fence(c.cmds);
  c.cmds.cmd("MULTI");
  c.stream_cmd = 0;
}

// Acknowledges what a committed transaction wrote; requeues a position a command failed for.
void FencedWrites::settle(SlotRound& r, Chunk& c) {
  const std::vector<bool>& ok = r.ok;
  // Without its stream entry the positions are written again (same versions: idempotent),
  // with the entry, so that followers hear of them.
  bool entry_ok = c.stream_cmd == 0 || ok[c.stream_cmd - 1];
  // Their trade ids too (a refused ZADD: a key of another type, a hand edit): written again.
  const std::size_t trades_from = c.queued - c.trade_cmds - (c.renewing ? 1 : 0);
  for (std::size_t j = 0; j < c.trade_cmds; ++j) entry_ok = entry_ok && ok[trades_from + j];
  if (!entry_ok && c.trade_cmds > 0) w_.recheck_trades_ = true;  // a trades key of another type?
  if (entry_ok) {
    w_.trades_written(c.trades);
    SyncWorker::Counted::add(w_.counted_.trade_ids, c.trades.entries.size());
  }
  c.trades.clear();
  if (!c.items.empty()) SyncWorker::Counted::add(w_.counted_.transactions);
  const std::int64_t now_rt = realtime_ns();
  std::size_t k = 0;
  for (const Item& it : c.items) {
    bool good = entry_ok;
    for (std::uint32_t j = 0; j < it.commands; ++j) good = good && ok[k + j];
    k += it.commands;
    if (!good) {
      w_.requeue(it.slot, it.flags);
      continue;
    }
    // release: pairs with the apply thread's acquire load before it evicts this slot
    if (it.version > load_relaxed(&w_.v_.book[it.slot].synced_version))
      store_release(&w_.v_.book[it.slot].synced_version, it.version);
    w_.synced_max_ = std::max(w_.synced_max_, it.version);
    w_.count_written(it.updated_at, now_rt);
  }
  c.items.clear();
  if (c.renewing) lease_.renewed(c.built_at);
}

// Reads chunk c's replies (its fence first when it went along) and settles it.
FencedWrites::Tx FencedWrites::collect(SlotRound& r, Chunk& c, bool with_fence) {
  bool ours = true;
  if (with_fence) {
    auto o = lease_.check_fence(w_.client_);
    if (!o) {
      w_.lost_connection(o.error());
      return Tx::lost;
    }
    ours = *o;
  }
  const Tx t = read_exec(c.queued, r.ok);
  if (t == Tx::lost) return t;
  if (t == Tx::tripped) {  // the lease was written after our WATCH: nothing of c ran
    give_back(c);
    return t;
  }
  settle(r, c);  // committed, or refused with the positions whose commands ran
  if (!ours && lease_.holder().epoch == 0) return Tx::tripped;  // lapsed, nobody took it
  if (!ours) {
    // Cannot happen while every taker kills the holder's connection: a writer that took the
    // lease without (an older poscache, a hand edit) and we wrote after it.
    w_.log(LogLevel::error,
           "redis " + redis_endpoint(w_.cfg_) +
               ": a transaction committed after another writer took "
               "the lease " +
               lease_.key() + " (epoch " + std::to_string(lease_.holder().epoch) +
               ") without ending this writer's connection: the connection fence was broken");
    return Tx::tripped;
  }
  return t;
}

bool FencedWrites::send(Chunk& c) {
  auto a = c.cmds.append_to(w_.client_);
  if (a) a = w_.client_.send();
  if (!a) w_.lost_connection(a.error());
  return static_cast<bool>(a);
}

void FencedWrites::give_back(Chunk& c) {
  for (const Item& it : c.items) w_.requeue(it.slot, it.flags);
  c.items.clear();
  c.trades.clear();
}

bool FencedWrites::give_back_all(SlotRound& r) {
  for (Chunk& c : r.chunks) give_back(c);
  for (std::size_t j = r.next; j < r.slots.size(); ++j) w_.requeue(r.slots[j]);
  r.next = r.slots.size();
  return false;
}

}  // namespace poscache::detail
