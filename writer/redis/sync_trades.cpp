// The sync thread's trade ids: the fill de-duplication window's log (writer/trade_log.hpp, THE
// PROTOCOL) mirrored into {prefix}:{ns}:@trades (writer/redis/redis_format.hpp), so that a
// promoted standby or a warm-started writer refuses a fill this writer applied
// (docs/exactly-once.md).
//
// WHERE AN ID GOES. With the fence, each trade id rides in the MULTI/EXEC that writes its fill's
// position at a version at least its own (FencedWrites::build, writer/redis/fenced_writes.cpp:
// the chunk's contents are read first, then catch_up_trades, then the ids of those positions up
// to the versions read): Redis holds a fill's effect and its id together or neither. An id whose
// position no write takes (the position was spilled, erased or invalidated before its write) is
// an orphan: once every change up to its version is in Redis (nothing pending, its version
// within the merged batches' horizon) it goes in a transaction of its own
// (SyncStrategy::write_plain), as do all ids with RedisGuard::scripts (a Cluster: the ids' key is
// not in the positions' slot), after their positions. Until they are written nothing is
// acknowledged (has_pending): a producer's `synced` covers its fills' ids.
//
// Each transaction trims the set to the window's capacity: Redis holds what the window holds.
#include <algorithm>
#include <atomic>
#include <thread>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "writer/redis/sync_worker.hpp"

namespace poscache::detail {

using namespace poscache::shm;

namespace {
void hex16(std::uint64_t v, char* out) noexcept {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = kDigits[v & 0xF];
}

// A set member: "<version>:<id hash>", each 16 lowercase hex digits. The score (the version as
// a double) cannot tell apart versions 256 apart past 2^60; members of equal score sort by their
// bytes, so with the version first the set orders exactly by version and the trim drops the
// oldest.
void add_member(Args& pairs, std::uint64_t version, std::uint64_t id_hash) {
  char member[33];
  hex16(version, member);
  member[16] = ':';
  hex16(id_hash, member + 17);
  pairs.add(version).add(std::string_view(member, sizeof member));
}
}  // namespace

void SyncWorker::attach_trades(const TradeLog& log) {
  trade_log_ = log;  // before the release below: the sync thread reads it after its acquire
  trades_attached_.store(true, std::memory_order_release);
}

void SyncWorker::read_trades() {
  if (!trades_on_) {
    if (!trades_attached_.load(std::memory_order_acquire)) return;
    trades_on_ = true;
    // From where a previous writer on this window left off (everything below is in Redis).
    const std::uint64_t head = load_acquire(trade_log_.head);
    const std::uint64_t oldest = head > trade_log_.capacity ? head - trade_log_.capacity : 0;
    trade_tail_ = std::max(oldest, std::min(load_relaxed(trade_log_.mirrored), head));
  }
  const TradeLog& l = trade_log_;
  const std::uint64_t cap = l.capacity;
  if (trades_reread_) {  // Redis lost the sets: every id the window holds is written again
    trades_reread_ = false;
    trades_.clear();
    trades_by_key_.clear();
    const std::uint64_t head = load_acquire(l.head);
    trade_tail_ = head > cap ? head - cap : 0;
    store_relaxed(l.mirrored, trade_tail_);
  }
  const std::uint64_t head = load_acquire(l.head);  // TS3: pairs with TW3's release of head
  if (head == trade_tail_) return;
  std::uint64_t from = trade_tail_;
  std::vector<std::pair<std::uint64_t, PendingTrade>> copied;
  copied.reserve(std::min(head - from, cap));
  if (head - from > cap) from = head - cap;
  for (std::uint64_t i = from; i < head; ++i) {
    const TradeLogEntry& e = l.ring[i % cap];
    copied.push_back({i,
                      {load_relaxed(&e.id_hash), load_relaxed(&e.version),
                       load_relaxed(&e.key_hash), load_relaxed(&e.ns)}});
  }
  // An entry read here may have been overwritten by the entry `cap` later. The window stores
  // `reserved` and a release fence before each entry (TradeWindow::record), so if a copy read
  // such a store, a reserved past it is visible after this fence: a reserved this low rules it
  // out (writer/trade_log.hpp).
  std::atomic_thread_fence(std::memory_order_acquire);
  const std::uint64_t reserved = load_relaxed(l.reserved);
  const std::uint64_t lost_below = reserved > cap ? reserved - cap : 0;
  std::uint64_t lost = from - trade_tail_;
  for (const auto& [i, t] : copied) {
    if (i < lost_below) {
      ++lost;
      continue;
    }
    if (t.ns >= fmt_.namespaces().size() || ((unsynced_mask_ >> t.ns) & 1u) != 0) continue;
    trades_.emplace(i, t);
    trades_by_key_.emplace(t.key_hash, i);
  }
  trade_tail_ = head;
  if (lost > 0) {
    trades_lost_ += lost;
    log(LogLevel::error,
        "redis " + redis_endpoint(cfg_) + ": " + std::to_string(lost) +
            " fill trade ids were overwritten in the window before they reached Redis (the "
            "sync is more than trade_window = " +
            std::to_string(cap) + " fills behind; " + std::to_string(trades_lost_) +
            " so far): a standby promoted now would not refuse them if resent");
  }
}

bool SyncWorker::catch_up_trades() {
  read_trades();
  if (!trades_on_) return true;  // no window: nothing to attach
  // TS2: no fill in flight. A fill takes microseconds; give it up to 2 ms, spinning first, then
  // yielding (on a 2-core host the apply thread may need this core).
  const std::int64_t deadline = monotonic_ns() + 2'000'000;
  for (int i = 0; load_acquire(trade_log_.pending_count) != 0; ++i) {
    if (i < 256) continue;
    if (monotonic_ns() > deadline) return false;
    std::this_thread::yield();
  }
  read_trades();
  return true;
}

void SyncWorker::take_trades(std::uint64_t key_hash, std::uint64_t version, TradeWrite& w) {
  auto [b, e] = trades_by_key_.equal_range(key_hash);
  for (auto it = b; it != e; ++it) {
    const PendingTrade& t = trades_.at(it->second);
    if (t.version > version) continue;  // its fill came after the content read: a later write
    add_member(w.zadd[t.ns], t.version, t.id_hash);
    w.entries.push_back(it->second);
  }
}

std::size_t SyncWorker::add_trade_commands(const TradeWrite& w, Commands& cmds) {
  for (const auto& [ns, pairs] : w.zadd) {
    const std::string key = fmt_.trades_key(ns_name(static_cast<std::uint16_t>(ns)));
    cmds.cmd("ZADD").add(key).append(pairs);
    cmds.cmd("ZREMRANGEBYRANK")
        .add(key)
        .add("0")
        .add_int(-static_cast<std::int64_t>(trade_log_.capacity) - 1);
  }
  return 2 * w.zadd.size();
}

void SyncWorker::trades_written(const TradeWrite& w) {
  for (std::uint64_t i : w.entries) {
    auto it = trades_.find(i);
    if (it == trades_.end()) continue;
    auto [b, e] = trades_by_key_.equal_range(it->second.key_hash);
    for (auto k = b; k != e; ++k) {
      if (k->second == i) {
        trades_by_key_.erase(k);
        break;
      }
    }
    trades_.erase(it);
  }
  if (trades_on_)  // relaxed: read only by a writer opening this window later
    store_relaxed(trade_log_.mirrored, trades_.empty() ? trade_tail_ : trades_.begin()->first);
}

bool SyncWorker::trades_due() const noexcept {
  for (const auto& [i, t] : trades_)  // in log order: the oldest (usually due) first
    if (t.version <= trade_horizon_) return true;
  return false;
}

void SyncWorker::check_trade_keys() {
  recheck_trades_ = false;
  next_trade_check_ns_ = monotonic_ns() + 1'000'000'000;
  std::uint32_t blocked = 0;
  for (std::size_t ns = 0; ns < fmt_.namespaces().size() && ns < 32; ++ns) {
    if (((unsynced_mask_ >> ns) & 1u) != 0) continue;
    const std::string key = fmt_.trades_key(ns_name(static_cast<std::uint16_t>(ns)));
    Args a;
    a.add("TYPE").add(key);
    auto r = client_.command(a);
    if (!r) {
      lost_connection(r.error());
      return;
    }
    const std::string type = reply_text(r->get());
    if (type == "zset" || type == "none") continue;
    blocked |= 1u << ns;
    if (((trades_blocked_ >> ns) & 1u) == 0) {
      const std::string why =
          key + " is a " + type + ", not the sorted set of the namespace's fill trade ids";
      log(LogLevel::error, "redis " + redis_endpoint(cfg_) + ": " + why +
                               ": positions with new fills in '" +
                               std::string(ns_name(static_cast<std::uint16_t>(ns))) +
                               "' are held back (not written to Redis) until it is deleted");
      set_error(why);
    }
  }
  for (std::size_t ns = 0; ns < 32; ++ns) {
    if (((trades_blocked_ >> ns) & 1u) != 0 && ((blocked >> ns) & 1u) == 0)
      log(LogLevel::info, "redis " + redis_endpoint(cfg_) + ": " +
                              fmt_.trades_key(ns_name(static_cast<std::uint16_t>(ns))) +
                              " is a sorted set again: the positions held back go out");
  }
  trades_blocked_ = blocked;
}

bool SyncWorker::trades_held_back(std::uint16_t ns, std::uint64_t key_hash) const {
  if (ns >= 32 || ((trades_blocked_ >> ns) & 1u) == 0) return false;
  return trades_by_key_.count(key_hash) != 0;
}

bool SyncWorker::write_due_trades() {
  TradeWrite& w = trade_write_;
  bool held_back = false;
  for (;;) {
    w.clear();
    for (const auto& [i, t] : trades_) {
      if (t.version > trade_horizon_) continue;
      if (t.ns < 32 && ((trades_blocked_ >> t.ns) & 1u) != 0) {
        held_back = true;
        continue;
      }
      add_member(w.zadd[t.ns], t.version, t.id_hash);
      w.entries.push_back(i);
      if (w.entries.size() == batch_size_) break;
    }
    if (w.entries.empty()) return !held_back;  // false: no progress, the loop sleeps
    if (!writes_->write_plain([&](Commands& c) { add_trade_commands(w, c); })) return false;
    trades_written(w);
    Counted::add(counted_.trade_ids, w.entries.size());
    Counted::add(counted_.transactions);
  }
}

}  // namespace poscache::detail
