// The sync thread's fenced writes (RedisGuard::fence): the transactions behind the writer lease
// (writer/redis/lease.hpp). Events and the round's order: writer/redis/sync_write.cpp.
#include <algorithm>
#include <charconv>
#include <cstring>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "shm/seqlock.hpp"
#include "writer/redis/sync_worker.hpp"

namespace poscache::detail {

using namespace poscache::shm;

// ---- the fence (RedisGuard::fence; the lease and the fence: writer/redis/lease.hpp) ----------
static_assert(RedisFormat::kAddMember == kSlotNewKey &&
              RedisFormat::kDropUnset == kSlotFieldsDropped);

SyncWorker::Tx SyncWorker::read_exec(std::size_t queued, std::vector<bool>& ok) {
  ok.assign(queued, false);
  Reply exec;
  for (std::size_t i = 0; i < queued + 2; ++i) {  // +OK, +QUEUED (or a queuing error) ..., EXEC
    auto r = client_.read_reply();
    if (!r) {
      lost_connection(r.error());
      return Tx::lost;
    }
    if (i == queued + 1) exec = std::move(*r);
  }
  if (exec->type == REDIS_REPLY_NIL) return Tx::tripped;
  auto refused = [&](const std::string& text) {
    Counted::add(counted_.errors);
    if (text.find("NOSCRIPT") != std::string::npos) {
      reload_scripts_ = true;
    } else if (text != last_error_) {
      log(LogLevel::error,
          "redis " + redis_endpoint(cfg_) + ": a write was refused: " + text + " (kept, retried)");
      set_error(text);
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

SyncWorker::Tx SyncWorker::fenced_guarded(
    std::size_t n, const std::function<void(std::size_t, Args&)>& key_of,
    const std::function<void(const Versions&, Commands&)>& build) {
  tx_.clear();
  lease_.add_fence(tx_);
  for (std::size_t i = 0; i < n; ++i) {
    Args& a = tx_.cmd("HGET");
    key_of(i, a);
    a.add("version");
  }
  if (auto a = tx_.append_to(client_); !a) {
    lost_connection(a.error());
    return Tx::lost;
  }
  auto ours = lease_.check_fence(client_);
  if (!ours) {
    lost_connection(ours.error());
    return Tx::lost;
  }
  Versions versions(n);
  for (std::size_t i = 0; i < n; ++i) {  // every reply is read, whatever the fence said
    auto r = client_.read_reply();
    if (!r) {
      lost_connection(r.error());
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
    return client_.connected() ? Tx::tripped : Tx::lost;
  }
  tx_.clear();
  tx_.cmd("MULTI");
  build(versions, tx_);
  const std::int64_t now = monotonic_ns();
  const bool renewing = lease_.renewal_due(now);
  if (renewing) lease_.add_renewal(tx_);
  tx_.cmd("EXEC");
  const std::size_t queued = tx_.size() - 2;
  if (auto a = tx_.append_to(client_); !a) {
    lost_connection(a.error());
    return Tx::lost;
  }
  std::vector<bool> ok;
  const Tx t = read_exec(queued, ok);
  if (t == Tx::committed && renewing) lease_.renewed(now);
  if (t == Tx::tripped) take_lease();
  return t;
}

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
bool SyncWorker::write_slots_fenced() {
  std::vector<std::uint32_t> round;
  round.swap(dirty_);
  for (std::uint32_t s : round) in_dirty_[s] &= static_cast<std::uint8_t>(~1u);  // flags stay
  struct Item {
    std::uint32_t slot;
    std::uint64_t version;
    std::uint64_t key_hash;
    std::int64_t updated_at;  // its latest change's apply time (the sync-lag metric)
    std::uint8_t flags;
    std::uint32_t commands;
  };
  struct Chunk {
    std::vector<Item> items;
    Commands cmds;
    Args entry;                  // its change-stream entry (one XADD after its positions)
    std::size_t stream_cmd = 0;  // that XADD's place among the queued commands (0: none)
    TradeWrite trades;           // its positions' trade ids (sync_trades.cpp), after the XADD
    std::size_t trade_cmds = 0;
    std::size_t queued = 0;
    bool renewing = false;
    std::int64_t built_at = 0;
  };
  Chunk chunks[2];
  std::size_t next = 0;
  auto requeue = [&](std::uint32_t s, std::uint8_t flags) {
    in_dirty_[s] |= static_cast<std::uint8_t>(flags << 1);
    if ((in_dirty_[s] & 1) == 0) {
      in_dirty_[s] |= 1;
      dirty_.push_back(s);
    }
  };
  auto give_back = [&](Chunk& c) {
    for (const Item& it : c.items) requeue(it.slot, it.flags);
    c.items.clear();
    c.trades.clear();
  };
  auto give_back_all = [&]() {
    for (Chunk& c : chunks) give_back(c);
    for (std::size_t j = next; j < round.size(); ++j) requeue(round[j], 0);
    next = round.size();
    return false;
  };
  std::uint64_t words[kPayloadWords];
  auto build = [&](Chunk& c, bool with_fence) {
    c.items.clear();
    c.cmds.clear();
    if (with_fence) lease_.add_fence(c.cmds);
    c.cmds.cmd("MULTI");
    fmt_.begin_changes(c.entry);
    std::size_t commands = 0;
    while (next < round.size() && c.items.size() < batch_size_) {
      const std::uint32_t s = round[next++];
      if (!read_bounded(v_.slots[s], words, kPayloadWords)) {
        requeue(s, 0);  // mid-write for a long time (a stopped writer?): later
        continue;
      }
      SlotPayload p;
      std::memcpy(&p, words, sizeof p);
      const auto flags = static_cast<std::uint8_t>(in_dirty_[s] >> 1);
      if (p.ns == kFreeNamespace || p.ns >= fmt_.namespaces().size()) {
        in_dirty_[s] &= 1;  // removed meanwhile: the flags were its key's
        continue;
      }
      if (trades_held_back(p.ns, p.key_hash)) {  // its ids could not go with it (sync_trades.cpp)
        requeue(s, 0);
        continue;
      }
      // relaxed: only this thread stores it. Redis has this version: skip, unless a flag came
      // after the write that carried it (the mark's batch arrived later than the slot's read).
      const std::uint64_t synced = load_relaxed(&v_.book[s].synced_version);
      if (p.version <= synced && flags == 0) continue;
      in_dirty_[s] &= 1;
      // A change read ahead of its batch: its flags may still be on the way. Without the
      // member, an account invalidation (which finds keys through the set) would miss the key;
      // and a kill before the batch arrived would lose the flag for good (the slot is synced).
      std::uint8_t write_flags = flags;
      if (p.created_at_ns >= horizon_ns_) write_flags |= kSlotNewKey;
      if (p.updated_at_ns >= horizon_ns_) write_flags |= kSlotFieldsDropped;
      const std::size_t n = fmt_.add_plain_upsert(p, write_flags, set_sha_, c.cmds);
      fmt_.add_change(c.entry, true, ns_name(p.ns), {p.account, p.account_len},
                      {p.instrument, p.instrument_len}, p.version);
      c.items.push_back(
          {s, p.version, p.key_hash, p.updated_at_ns, flags, static_cast<std::uint32_t>(n)});
      commands += n;
    }
    c.stream_cmd = fmt_.finish_changes(c.entry, c.cmds) > 0 ? commands + 1 : 0;
    // The trade ids of the fills whose effects the contents just read hold (S1 above; S2, S3 in
    // catch_up_trades). A fill still in flight after 2 ms: the chunk goes next round instead.
    c.trades.clear();
    c.trade_cmds = 0;
    if (!c.items.empty() && !catch_up_trades()) {
      give_back(c);
      for (std::size_t j = next; j < round.size(); ++j) requeue(round[j], 0);
      next = round.size();
      c.cmds.clear();
      if (with_fence) lease_.add_fence(c.cmds);
      c.cmds.cmd("MULTI");
      c.stream_cmd = 0;
    }
    if (!trades_.empty()) {
      for (const Item& it : c.items) take_trades(it.key_hash, it.version, c.trades);
      bool held = false;  // a fill landed since the read, in a namespace held back: next round
      for (const auto& [ns, pairs] : c.trades.zadd)
        held = held || (ns < 32 && (trades_blocked_ >> ns) & 1u);
      if (held) {
        give_back(c);
        c.cmds.clear();
        if (with_fence) lease_.add_fence(c.cmds);
        c.cmds.cmd("MULTI");
        c.stream_cmd = 0;
      }
      c.trade_cmds = add_trade_commands(c.trades, c.cmds);
    }
    c.built_at = monotonic_ns();
    c.renewing = lease_.renewal_due(c.built_at);
    if (c.renewing) lease_.add_renewal(c.cmds);
    c.cmds.cmd("EXEC");
    c.queued = c.cmds.size() - (with_fence ? 4 : 2);
  };
  // Acknowledges what a committed transaction wrote; requeues a position a command failed for.
  std::vector<bool> ok;
  auto settle = [&](Chunk& c) {
    // Without its stream entry the positions are written again (same versions: idempotent),
    // with the entry, so that followers hear of them.
    bool entry_ok = c.stream_cmd == 0 || ok[c.stream_cmd - 1];
    // Their trade ids too (a refused ZADD: a key of another type, a hand edit): written again.
    const std::size_t trades_from = c.queued - c.trade_cmds - (c.renewing ? 1 : 0);
    for (std::size_t j = 0; j < c.trade_cmds; ++j) entry_ok = entry_ok && ok[trades_from + j];
    if (!entry_ok && c.trade_cmds > 0) recheck_trades_ = true;  // a trades key of another type?
    if (entry_ok) {
      trades_written(c.trades);
      Counted::add(counted_.trade_ids, c.trades.entries.size());
    }
    c.trades.clear();
    if (!c.items.empty()) Counted::add(counted_.transactions);
    const std::int64_t now_rt = realtime_ns();
    std::size_t k = 0;
    for (const Item& it : c.items) {
      bool good = entry_ok;
      for (std::uint32_t j = 0; j < it.commands; ++j) good = good && ok[k + j];
      k += it.commands;
      if (!good) {
        requeue(it.slot, it.flags);
        continue;
      }
      // release: pairs with the apply thread's acquire load before it evicts this slot
      if (it.version > load_relaxed(&v_.book[it.slot].synced_version))
        store_release(&v_.book[it.slot].synced_version, it.version);
      synced_max_ = std::max(synced_max_, it.version);
      count_written(it.updated_at, now_rt);
    }
    c.items.clear();
    if (c.renewing) lease_.renewed(c.built_at);
  };
  // The connection fence (lease.hpp) lets each transaction go with its own fence, two in
  // flight; without it (CLIENT KILL not allowed) the fence's answer comes first, every time.
  const bool pipelined = lease_.kill_fence();
  // Reads chunk f's replies (its fence first when it went along) and settles it.
  auto collect = [&](Chunk& f, bool with_fence) -> Tx {
    bool ours = true;
    if (with_fence) {
      auto o = lease_.check_fence(client_);
      if (!o) {
        lost_connection(o.error());
        return Tx::lost;
      }
      ours = *o;
    }
    const Tx t = read_exec(f.queued, ok);
    if (t == Tx::lost) return t;
    if (t == Tx::tripped) {  // the lease was written after our WATCH: nothing of f ran
      give_back(f);
      return t;
    }
    settle(f);  // committed, or refused with the positions whose commands ran
    if (!ours && lease_.holder().epoch == 0) return Tx::tripped;  // lapsed, nobody took it
    if (!ours) {
      // Cannot happen while every taker kills the holder's connection: a writer that took the
      // lease without (an older poscache, a hand edit) and we wrote after it.
      log(LogLevel::error,
          "redis " + redis_endpoint(cfg_) +
              ": a transaction committed after another writer took "
              "the lease " +
              lease_.key() + " (epoch " + std::to_string(lease_.holder().epoch) +
              ") without ending this writer's connection: the connection fence was broken");
      return Tx::tripped;
    }
    return t;
  };
  // Queues and sends a chunk's transaction; false on a lost connection.
  auto send = [&](Chunk& c) {
    auto a = c.cmds.append_to(client_);
    if (a) a = client_.send();
    if (!a) lost_connection(a.error());
    return static_cast<bool>(a);
  };
  int inflight = -1;
  for (int cur = 0;; cur ^= 1) {
    Chunk& c = chunks[cur];
    build(c, pipelined);
    const bool has = !c.items.empty() || c.renewing;
    if (pipelined && has && !send(c)) return give_back_all();  // before the previous one is read
    if (inflight >= 0) {
      const Tx t = collect(chunks[inflight], pipelined);
      inflight = -1;
      if (t == Tx::lost) return give_back_all();
      if (t != Tx::committed) {
        if (pipelined && has && collect(c, true) == Tx::lost) return give_back_all();
        give_back_all();
        if (t == Tx::tripped) take_lease();  // ours again (expired; the key touched) or fenced
        return false;
      }
    }
    if (!has) break;
    if (!pipelined) {  // the fence's answer first
      Commands fence;
      lease_.add_fence(fence);
      if (auto a = fence.append_to(client_); !a) {
        lost_connection(a.error());
        return give_back_all();
      }
      auto ours = lease_.check_fence(client_);
      if (!ours) {
        lost_connection(ours.error());
        return give_back_all();
      }
      if (!*ours) {
        give_back_all();
        take_lease();
        return false;
      }
      if (!send(c)) return give_back_all();
    }
    inflight = cur;
  }
  return true;
}

}  // namespace poscache::detail
