// The writer facade's Redis side (Writer::Impl, writer/writer_impl.hpp): the mirror's start
// (the journal's leftovers, the lease, a warm start, the sync thread), a follower's steps and a
// standby's promotion, and the Redis calls of the public API.
#include <algorithm>
#include <cstdio>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "writer/writer_impl.hpp"

namespace poscache {

using namespace shm;

// With Redis: the journal's leftovers first, a warm start on an empty segment (before it turns
// ready), then the sync thread.
void Writer::Impl::start_redis(bool empty_segment, detail::Journal::Scan scan) {
  const auto& pending = scan.valid;
  if (!cfg.redis) {
    if (!pending.empty()) {
      cfg.log(LogLevel::warn, std::to_string(pending.size()) +
                                  " removals in the segment's journal are not in Redis yet; "
                                  "they stay there until a writer with Redis configured writes "
                                  "them");
    }
    return;
  }
  const RedisConfig& rc = *cfg.redis;
  if (cfg.follow) {  // no lease, no sync: the positions and the stream of the writer that has it
    if (!pending.empty()) {
      cfg.log(LogLevel::warn, std::to_string(pending.size()) +
                                  " removals in the segment's journal are not in Redis yet; a "
                                  "follower writes nothing to Redis: they are dropped");
    }
    follower =
        std::make_unique<detail::Follower>(rc, cfg.namespaces, table, cfg.log, cfg.on_follow);
    if (auto ok = follower->start(); !ok) {
      throw Error(ok.error() + " (the segment stays initializing)");
    }
    return;
  }
  sync = make_sync();
  table.set_sync(&sync->handoff(), unsynced_mask());
  // The lease before anything is loaded or written: a second writer on the prefix stops here,
  // told who holds it. (Redis unreachable: the sync thread takes it once it connects.)
  if (auto lease = sync->worker().open_lease(); !lease) throw Error(lease.error());
  for (const auto& [n, e] : pending) sync->handoff().replay(detail::from_entry(*e, n), table.now());
  for (const std::uint64_t n : scan.invalid) sync->worker().skip(n);  // reported: tail passes
  bool started = false;
  if (!pending.empty()) {
    cfg.log(LogLevel::info, "journal: " + std::to_string(pending.size()) +
                                " removals a previous writer left go to Redis first");
  }
  if (empty_segment && rc.warm_start) {
    if (!pending.empty()) {
      // Load only after Redis has the removals: a warm start before them would bring back
      // what they removed.
      sync->start();
      started = true;
      if (!sync->flush(rc.connect_timeout + rc.close_timeout)) {
        throw Error("warm start: " + std::to_string(pending.size()) +
                    " removals left in the segment's journal could not be written to Redis "
                    "first (the segment stays initializing; start with --cold-start, or "
                    "RedisConfig::warm_start = false, to start without loading)");
      }
    }
    warm_start(rc, started);
  }
  if (reattached) queue_unsynced();
  if (!started) sync->start();
}

std::unique_ptr<detail::RedisSync> Writer::Impl::make_sync() {
  const Geometry g = geometry_for(table.capacity());
  auto* base = static_cast<std::byte*>(mapping.base());
  return std::make_unique<detail::RedisSync>(
      *cfg.redis, cfg.namespaces,
      detail::SegmentView{&header(), reinterpret_cast<const Slot*>(base + g.slots_offset),
                          reinterpret_cast<SlotBook*>(base + g.book_offset), table.capacity(),
                          table.next_version_word()},
      journal, cfg.log);
}

// sync = none: never written to Redis, nor loaded from it
std::uint32_t Writer::Impl::unsynced_mask() const {
  std::uint32_t unsynced = 0;
  for (const std::string& name : cfg.redis->unsynced_namespaces) {
    for (std::size_t i = 0; i < cfg.namespaces.size(); ++i)
      if (cfg.namespaces[i].name == name) unsynced |= 1u << i;
  }
  return unsynced;
}

// A standby whose writer's lease is free becomes the writer: everything the stream holds first,
// then the lease (taken by the sync thread's connection, which its fence then uses), what the
// stream got meanwhile (nothing, unless a writer wrote between the two), then the sync. Looked
// at every third of the lease's ttl (at most every second): a dead writer's lease has expired
// at most a ttl after its last renewal, so the standby takes over within ttl + ttl / 3, and at
// once when the dead writer was a process of this host.
void Writer::Impl::maybe_promote() {
  const std::int64_t now = monotonic_ns();
  if (now < next_lease_check) return;
  const std::int64_t every = std::chrono::nanoseconds(cfg.redis->lease_ttl).count() / 3;
  next_lease_check = now + std::min<std::int64_t>(every, 1'000'000'000);
  if (!follower->lease_vacant()) return;
  for (int i = 0; i < 10'000 && follower->step(std::chrono::milliseconds(0)) > 0; ++i) {
  }
  auto s = make_sync();
  auto lease = s->worker().open_lease();
  const std::uint64_t epoch = load_relaxed(&header().redis_lease_epoch);
  if (!lease || epoch == 0) {
    s.reset();
    store_relaxed(&header().redis_lease_epoch, std::uint64_t{0});
    store_relaxed(&header().redis_state, static_cast<std::uint32_t>(RedisState::off));
    cfg.log(LogLevel::info, "standby: the lease was free but another took it (" +
                                (lease ? std::string("redis unreachable") : lease.error()) +
                                "): following on");
    return;
  }
  for (int i = 0; i < 10'000 && follower->step(std::chrono::milliseconds(0)) > 0; ++i) {
  }
  follower.reset();
  store_relaxed(&header().follow_state, static_cast<std::uint32_t>(FollowState::none));
  // Versions go on above the old writer's, and above the wall clock as any new writer's.
  table.raise_next_version(static_cast<std::uint64_t>(realtime_ns()));
  sync = std::move(s);
  table.set_sync(&sync->handoff(), unsynced_mask());
  sync->start();
  cfg.log(LogLevel::warn, "standby: promoted: the lease of '" + cfg.redis->prefix +
                              "' is ours (epoch " + std::to_string(epoch) +
                              "); this process is the writer now");
}

void Writer::Impl::warm_start(const RedisConfig& rc, bool sync_running) {
  detail::RedisFormat fmt(rc.prefix, cfg.namespaces);
  detail::WarmLoader loader(table);
  // A load longer than a third of the lease's ttl must not let it lapse: the sync thread
  // renews it once it runs; until then, this thread does (and keeps the heartbeat going).
  const std::function<void()> keep_going = [this, sync_running] {
    store_relaxed(&header().heartbeat_ns, table.now());
    if (!sync_running) sync->worker().keep_lease();
  };
  auto rep = detail::warm_start(
      rc, fmt, [&loader](const SlotPayload& p) { return loader.restore(p); }, keep_going, cfg.log);
  if (!rep) {
    throw Error(rep.error() +
                " (the segment stays initializing; start with --cold-start, or "
                "RedisConfig::warm_start = false, to start empty)");
  }
  // LRU order by updated_at, as if the positions had arrived in that order
  table.rebuild_lists(keep_going);
  warm = *rep;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f", warm.seconds);
  cfg.log(LogLevel::info,
          "warm start: loaded " + std::to_string(warm.loaded) + " positions in " + secs + " s");
  if (warm.beyond_capacity > 0) {
    cfg.log(LogLevel::warn, "warm start: " + std::to_string(warm.beyond_capacity) +
                                " positions did not fit in capacity " +
                                std::to_string(table.capacity()) +
                                " and stay only in Redis (the least recently updated)");
  }
  if (warm.expired + warm.unknown_namespace + warm.malformed + warm.unsynced > 0) {
    cfg.log(LogLevel::warn, "warm start: skipped " + std::to_string(warm.expired) + " expired, " +
                                std::to_string(warm.unknown_namespace) +
                                " of unknown namespaces, " + std::to_string(warm.malformed) +
                                " malformed, " + std::to_string(warm.unsynced) +
                                " of namespaces not synced (sync = none)");
  }
}

// Re-attached: every slot whose version Redis has not acknowledged goes to the sync thread
// (the batches a killed writer held in its memory are gone; the slots are not).
void Writer::Impl::queue_unsynced() {
  const std::int64_t t = table.now();
  for (std::uint32_t s = 0; s < table.capacity(); ++s) {
    if (table.unsynced(s))
      sync->handoff().mark(s, t, detail::kSlotNewKey | detail::kSlotFieldsDropped);  // unknown
  }
}

std::size_t Writer::follow(std::chrono::milliseconds wait) {
  if (!impl_->follower) {
    throw Error("follow(): segment '" + impl_->cfg.segment +
                "' is not kept by a follower (WriterConfig::follow)");
  }
  const std::size_t n = impl_->follower->step(wait);
  if (impl_->cfg.standby && n == 0) impl_->maybe_promote();
  return n;
}

bool Writer::following() const noexcept {
  return impl_->follower != nullptr;
}

bool Writer::set_redis_password(std::string password) {
  if (!impl_->sync) return false;
  impl_->sync->worker().set_password(std::move(password));
  return true;
}

bool Writer::sync_redis(std::chrono::milliseconds timeout) {
  if (!impl_->sync) return true;
  return impl_->sync->flush(timeout);
}

std::uint64_t Writer::redis_ticket() const noexcept {
  return impl_->sync ? impl_->sync->handoff().ticket() : 0;
}
bool Writer::redis_acknowledged(std::uint64_t ticket) const noexcept {
  return impl_->sync && impl_->sync->handoff().acknowledged(ticket);
}
bool Writer::mirrors_to_redis() const noexcept {
  return impl_->sync != nullptr;
}

RedisSyncMetrics Writer::redis_sync_metrics() const noexcept {
  return impl_->sync ? impl_->sync->worker().metrics() : RedisSyncMetrics{};
}

bool Writer::mirror_trades(const detail::TradeLog& log) {
  if (!impl_->sync) return false;
  impl_->sync->worker().attach_trades(log);
  // Every entry the log holds now is up to this version: the sync writes those no position
  // write takes once this hand-off is merged and written (sync_trades.cpp).
  impl_->sync->handoff().hand_off_version();
  return true;
}

}  // namespace poscache
