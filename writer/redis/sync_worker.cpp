#include "writer/redis/sync_worker.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>

#include "shm/atomic.hpp"
#include "shm/clock.hpp"
#include "shm/seqlock.hpp"
#include "shm/values/key_text.hpp"
#include "writer/redis/fenced_writes.hpp"
#include "writer/redis/script_writes.hpp"

namespace poscache::detail {

using namespace poscache::shm;

SyncWorker::SyncWorker(const RedisConfig& config, std::vector<NamespaceSpec> namespaces,
                       SegmentView view, const Journal& journal, ChangeChannel& channel,
                       LogSink log)
    : cfg_(config),
      fmt_(config.prefix, std::move(namespaces)),
      v_(view),
      journal_(journal),
      tail_(journal),
      ch_(channel),
      log_(std::move(log)),
      batch_size_(config.batch_size) {
  in_dirty_.assign(v_.capacity, 0);
  // The one place the guard is looked at: everything after asks the strategy.
  if (cfg_.guard == RedisGuard::fence) {
    writes_ = std::make_unique<FencedWrites>(*this);
  } else {
    writes_ = std::make_unique<ScriptWrites>(*this);
  }
  for (const std::string& name : cfg_.unsynced_namespaces) {
    if (auto id = fmt_.namespace_id(name)) unsynced_mask_ |= 1u << *id;
  }
  if (journal_.present()) overflows_seen_ = journal_.overflows();
  set_state(RedisState::connecting);
}

SyncWorker::~SyncWorker() {
  stop();
}

void SyncWorker::start() {
  thread_ = std::thread([this] { run(); });
}

void SyncWorker::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  thread_.join();
}

// ---- pending state (sync thread) ------------------------------------------------------------
void SyncWorker::drain() {
  ChangeBatch* b = nullptr;
  while (ch_.to_sync.pop(b)) {
    if (fenced_) {  // nothing is written any more: the journal moves past it
      for (const RemovalEvent& e : b->events) tail_.done(e.journal_pos);
    } else {
      trade_horizon_ = std::max(trade_horizon_, b->last_version);
      merge(*b);
    }
    ch_.merged_seq.store(b->seq, std::memory_order_relaxed);
    b->slots.clear();
    b->flags.clear();
    b->events.clear();
    b->first_ns = 0;
    b->last_ns = 0;
    ch_.to_apply.push(b);  // cannot fail: it holds at most the batches that exist
  }
}

void SyncWorker::merge(ChangeBatch& b) {
  if (b.empty()) return;
  if (oldest_ns_ == 0 || b.first_ns < oldest_ns_) oldest_ns_ = b.first_ns;
  horizon_ns_ = std::max(horizon_ns_, b.last_ns);
  for (RemovalEvent& e : b.events) merge_event(std::move(e));
  for (const auto& [s, f] : b.flags) {
    if (s < v_.capacity) in_dirty_[s] |= static_cast<std::uint8_t>(f << 1);
  }
  for (std::uint32_t s : b.slots) {
    if (s < v_.capacity && (in_dirty_[s] & 1) == 0) {
      in_dirty_[s] |= 1;
      dirty_.push_back(s);
    }
  }
}

std::string SyncWorker::event_key(const RemovalEvent& e) const {
  const SlotPayload& p = e.payload;
  return fmt_.position_key(ns_name(p.ns), {p.account, p.account_len},
                           {p.instrument, p.instrument_len});
}

void SyncWorker::merge_event(RemovalEvent&& e) {
  if (e.kind == RemovalEvent::Kind::spill || e.kind == RemovalEvent::Kind::erase) {
    std::string key = event_key(e);
    auto it = key_events_.find(key);
    if (it == key_events_.end()) {
      key_events_.emplace(std::move(key), std::move(e));
    } else if (it->second.version < e.version) {
      tail_.done(
          it->second.journal_pos);  // superseded by e, which is pending and journaled after it
      it->second = std::move(e);
    } else {
      tail_.done(e.journal_pos);
    }
    return;
  }
  // A pattern removal supersedes every older per-key event it covers: dropping them keeps an
  // older spill from re-creating a key after the pattern removed it.
  for (auto it = key_events_.begin(); it != key_events_.end();) {
    const SlotPayload& p = it->second.payload;
    if (it->second.version < e.version && covers(e, ns_name(p.ns), p)) {
      tail_.done(it->second.journal_pos);
      it = key_events_.erase(it);
    } else {
      ++it;
    }
  }
  pattern_events_.push_back(std::move(e));
}

// Trade ids count once every change up to their version is merged: a producer's `synced`
// then waits for its fills' ids too (sync_trades.cpp).
bool SyncWorker::has_pending() const noexcept {
  return !dirty_.empty() || !key_events_.empty() || !pattern_events_.empty() || trades_due();
}

// ---- connection -------------------------------------------------------------------------------
void SyncWorker::connect() {
  {
    std::lock_guard lock(password_mu_);
    if (new_password_) cfg_.password = std::move(*std::exchange(new_password_, std::nullopt));
  }
  auto c = RedisClient::connect(cfg_);
  std::string err;
  if (c) {
    client_ = std::move(*c);
    err = load_scripts();
    if (err.empty()) check_server();
    if (err.empty()) {
      switch (writes_->open(err)) {
        case SyncStrategy::Opened::up:
          backoff_ns_ = 0;
          set_state(RedisState::up);
          log(LogLevel::info, "redis " + redis_endpoint(cfg_) + ": connected" +
                                  (was_up_ ? " again" : "") + ", syncing under prefix '" +
                                  cfg_.prefix + "'" + writes_->guard_note());
          was_up_ = true;
          return;
        case SyncStrategy::Opened::fenced:
          return;
        case SyncStrategy::Opened::failed:
          break;
      }
    }
    client_.close();
  } else {
    err = c.error();
  }
  const std::int64_t min_ns = std::chrono::nanoseconds(cfg_.reconnect_min).count();
  const std::int64_t max_ns = std::chrono::nanoseconds(cfg_.reconnect_max).count();
  backoff_ns_ = backoff_ns_ == 0 ? min_ns : std::min(max_ns, backoff_ns_ * 2);
  next_connect_ns_ = monotonic_ns() + backoff_ns_;
  // Log the first failure and every change of reason, not every retry.
  if (err != last_error_) {
    log(LogLevel::error, err + " (retrying with backoff up to " +
                             std::to_string(cfg_.reconnect_max.count()) +
                             " ms; updates go on, changes are kept until Redis is back)");
  }
  set_error(err);
  set_state(RedisState::down);
}

// Another writer writes this prefix now: everything this one would write could replace newer
// data. Nothing more goes to Redis; the segment goes on serving readers; health says fenced.
void SyncWorker::become_fenced(const std::string& why) {
  fenced_ = true;
  refilling_ = false;
  ch_.refilling.store(false, std::memory_order_release);  // nothing more will be written
  store_relaxed(&v_.h->redis_warnings, load_relaxed(&v_.h->redis_warnings) & ~kRedisRefilling);
  const std::size_t dropped = dirty_.size() + key_events_.size() + pattern_events_.size();
  if (!opening_)  // (at open the writer refuses to start, with this error)
    log(LogLevel::error,
        "redis " + redis_endpoint(cfg_) + ": FENCED: " + why +
            ". This writer writes nothing more to " + "Redis (" + std::to_string(dropped) +
            " unwritten changes dropped) and goes on serving readers from the segment; stop it, "
            "or restart it once the other writer is gone");
  for (auto& [k, e] : key_events_) tail_.done(e.journal_pos);
  for (const RemovalEvent& e : pattern_events_) tail_.done(e.journal_pos);
  key_events_.clear();
  pattern_events_.clear();
  for (std::uint32_t s : dirty_) in_dirty_[s] = 0;
  dirty_.clear();
  set_error("fenced: " + why);
  set_state(RedisState::fenced);
  store_relaxed(&v_.h->redis_lease_epoch, std::uint64_t{0});
  client_.close();
}

// What the server says about itself: a new run id is a restart (its data is checked by the
// lease's counter); an evicting maxmemory-policy can drop positions silently: a warning in the
// log and in health (CONFIG may be refused by the ACL: then nothing is known, nothing said).
void SyncWorker::check_server() {
  recheck_trades_ = true;  // the trade sets' types, before the next write (sync_trades.cpp)
  Args a;
  a.add("INFO").add("server");
  if (auto r = client_.command(a); r && (*r)->type == REDIS_REPLY_STRING) {
    const std::string_view info((*r)->str, (*r)->len);
    if (const auto at = info.find("run_id:"); at != std::string_view::npos) {
      const std::string id(info.substr(at + 7, info.find_first_of("\r\n", at) - at - 7));
      if (!run_id_.empty() && id != run_id_)
        log(LogLevel::warn, "redis " + redis_endpoint(cfg_) + " restarted (run id " + run_id_ +
                                " -> " + id + "); checking that it kept its data");
      run_id_ = id;
    }
  }
  a.clear();
  a.add("CONFIG").add("GET").add("maxmemory-policy");
  if (auto r = client_.command(a); r && (*r)->type == REDIS_REPLY_ARRAY && (*r)->elements == 2) {
    const std::string policy((*r)->element[1]->str, (*r)->element[1]->len);
    const bool evicts = policy != "noeviction";
    if (evicts && !evicts_) {
      log(LogLevel::warn, "redis " + redis_endpoint(cfg_) + ": maxmemory-policy is " + policy +
                              ": Redis may evict positions (and the lease) when it is full, "
                              "holding less than the segment until the writer notices and "
                              "refills it; set noeviction");
    }
    evicts_ = evicts;
    std::uint32_t w = load_relaxed(&v_.h->redis_warnings);
    w = evicts ? (w | kRedisEvicts) : (w & ~kRedisEvicts);
    store_relaxed(&v_.h->redis_warnings, w);
  }
}

void SyncWorker::start_refill(const std::string& why) {
  ++losses_;
  log(LogLevel::error, "redis " + redis_endpoint(cfg_) + " lost the data it was given (" + why +
                           "): refilling it from the segment in the background, up to " +
                           std::to_string(cfg_.refill_rate) +
                           " positions/s; positions only Redis held (evicted from the "
                           "segment) are gone with it");
  refilling_ = true;
  trades_reread_ = true;  // the trade ids went with the rest
  ch_.refilling.store(true, std::memory_order_release);
  refill_next_ = 0;
  refill_queued_ = 0;
  refill_started_ns_ = refill_fed_ns_ = monotonic_ns();
  store_relaxed(&v_.h->redis_data_losses, losses_);
  store_relaxed(&v_.h->redis_warnings, load_relaxed(&v_.h->redis_warnings) | kRedisRefilling);
}

void SyncWorker::feed_refill() {
  const std::int64_t now = monotonic_ns();
  auto budget = static_cast<std::uint64_t>(static_cast<double>(now - refill_fed_ns_) *
                                           static_cast<double>(cfg_.refill_rate) / 1e9);
  if (budget == 0) return;
  refill_fed_ns_ = now;
  budget = std::min<std::uint64_t>(budget, 8 * batch_size_);  // after a stall: no burst
  std::uint64_t words[kPayloadWords];
  constexpr std::uint8_t kUnknown = (kSlotNewKey | kSlotFieldsDropped) << 1;
  while (budget > 0 && refill_next_ < v_.capacity) {
    const auto s = static_cast<std::uint32_t>(refill_next_++);
    if (read_bounded(v_.slots[s], words, kPayloadWords)) {
      SlotPayload p;
      std::memcpy(&p, words, sizeof p);
      if (p.ns == kFreeNamespace || p.ns >= fmt_.namespaces().size() ||
          ((unsynced_mask_ >> p.ns) & 1u) != 0)
        continue;
    }  // (mid-write for long: queued; the write reads it again)
    in_dirty_[s] |= kUnknown;
    if ((in_dirty_[s] & 1) == 0) {
      in_dirty_[s] |= 1;
      dirty_.push_back(s);
    }
    if (oldest_ns_ == 0) oldest_ns_ = realtime_ns();
    ++refill_queued_;
    ++repushed_;
    --budget;
  }
  store_relaxed(&v_.h->redis_repushed, repushed_);
  if (refill_next_ >= v_.capacity) {
    refilling_ = false;  // all queued; the header's bit clears once they are written (run())
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.2f",
                  static_cast<double>(monotonic_ns() - refill_started_ns_) / 1e9);
    log(LogLevel::info, "redis " + redis_endpoint(cfg_) + ": refill queued " +
                            std::to_string(refill_queued_) + " positions in " + secs + " s");
  }
}

Expected<bool> SyncWorker::open_lease() {
  opening_ = true;
  connect();
  opening_ = false;
  if (fenced_) return fail(last_error_.substr(std::string_view("fenced: ").size()));
  return true;
}

void SyncWorker::keep_lease() {
  if (client_.connected() && !fenced_) writes_->idle();
}

std::string SyncWorker::load_scripts() {
  std::string err = writes_->load_scripts();
  if (err.empty()) reload_scripts_ = false;
  return err;
}

RedisSyncMetrics SyncWorker::metrics() const noexcept {
  RedisSyncMetrics m;
  const auto get = [](const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  };
  m.positions_written = get(counted_.positions);
  m.transactions = get(counted_.transactions);
  m.trade_ids_written = get(counted_.trade_ids);
  m.errors = get(counted_.errors);
  m.reconnects = get(counted_.reconnects);
  for (std::size_t b = 0; b < m.lag_counts.size(); ++b) m.lag_counts[b] = get(counted_.lag[b]);
  m.lag_count = get(counted_.lag_count);
  m.lag_sum_ns = get(counted_.lag_sum_ns);
  return m;
}

void SyncWorker::count_written(std::int64_t updated_at_ns, std::int64_t now_ns) noexcept {
  Counted::add(counted_.positions);
  const std::int64_t lag = std::max<std::int64_t>(0, now_ns - updated_at_ns);
  std::size_t b = 0;
  while (b < RedisSyncMetrics::kLagBoundsNs.size() && lag > RedisSyncMetrics::kLagBoundsNs[b]) ++b;
  Counted::add(counted_.lag[b]);
  Counted::add(counted_.lag_count);
  Counted::add(counted_.lag_sum_ns, static_cast<std::uint64_t>(lag));
}

void SyncWorker::lost_connection(const std::string& why) {
  Counted::add(counted_.reconnects);
  client_.close();
  log(LogLevel::error, why + " (reconnecting; nothing unacknowledged is dropped)");
  set_error(why);
  set_state(RedisState::down);
  backoff_ns_ = std::chrono::nanoseconds(cfg_.reconnect_min).count();
  next_connect_ns_ = monotonic_ns() + backoff_ns_;
}

// ---- state in the header ----------------------------------------------------------------------
void SyncWorker::set_state(RedisState state) {
  store_relaxed(&v_.h->redis_state, static_cast<std::uint32_t>(state));
}

// The error text is under its own seqlock (redis_error_seq), like a slot: odd while it changes.
void SyncWorker::set_error(const std::string& text) {
  last_error_ = text;
  SegmentHeader& h = *v_.h;
  std::uint64_t words[kRedisErrorWords] = {};
  const std::size_t n = std::min(text.size(), sizeof words);
  std::memcpy(words, text.data(), n);
  const std::uint64_t s = seqlock_begin(&h.redis_error_seq);  // SW1, SW2 (shm/seqlock.hpp)
  for (std::size_t i = 0; i < kRedisErrorWords; ++i) store_relaxed(&h.redis_error[i], words[i]);
  store_relaxed(&h.redis_error_len, static_cast<std::uint32_t>(n));
  seqlock_publish(&h.redis_error_seq, s);  // SW4
}

// A full journal is worth one line per episode, not one per removal.
void SyncWorker::report_overflows() {
  if (!journal_.present()) return;
  const std::uint64_t ov = journal_.overflows();
  if (ov == overflows_seen_) return;
  const std::int64_t t = monotonic_ns();
  if (t - overflow_logged_ns_ < 10'000'000'000) return;
  log(LogLevel::warn, "journal full (" + std::to_string(journal_.size()) +
                          " entries): " + std::to_string(ov - overflows_seen_) +
                          " more removals are kept in memory only until Redis has them; a kill -9 "
                          "before then would lose them (" +
                          std::to_string(ov) + " in all)");
  overflows_seen_ = ov;
  overflow_logged_ns_ = t;
}

void SyncWorker::publish() {
  SegmentHeader& h = *v_.h;
  store_relaxed(&h.redis_dirty, dirty_.size() + key_events_.size() + pattern_events_.size());
  store_relaxed(&h.redis_oldest_unsynced_ns, has_pending() ? oldest_ns_ : 0);
  store_relaxed(&h.redis_synced_version, synced_max_);
}

void SyncWorker::run() {
  if (cfg_.sync_cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<unsigned>(cfg_.sync_cpu), &set);
    if (const int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set); err != 0) {
      log(LogLevel::warn, "cannot pin the sync thread to cpu " + std::to_string(cfg_.sync_cpu) +
                              ": " + std::strerror(err));
    }
  }
  pthread_setname_np(pthread_self(), "poscache-sync");
  std::int64_t stop_deadline = 0;
  bool reported_loss = false;
  for (;;) {
    const bool stopping = stop_.load(std::memory_order_acquire);
    drain();
    read_trades();  // after drain: the entries of the fills in the batches merged are in the log
    if (stopping && stop_deadline == 0)
      stop_deadline = monotonic_ns() + std::chrono::nanoseconds(cfg_.close_timeout).count();
    bool progress = false;
    if (!fenced_ && !client_.connected() && monotonic_ns() >= next_connect_ns_) connect();
    if (refilling_ && client_.connected() && !fenced_) feed_refill();
    if (client_.connected() && has_pending()) progress = flush_round();
    if (client_.connected() && !has_pending()) writes_->idle();  // (the lease, when due)
    if (!has_pending() && !fenced_) {  // (fenced: nothing is acknowledged any more)
      oldest_ns_ = 0;
      ch_.clean_seq.store(ch_.merged_seq.load(std::memory_order_relaxed),
                          std::memory_order_release);
      if (!refilling_ && ch_.refilling.load(std::memory_order_relaxed)) {
        ch_.refilling.store(false, std::memory_order_release);  // the refill is all written
        store_relaxed(&v_.h->redis_warnings,
                      load_relaxed(&v_.h->redis_warnings) & ~kRedisRefilling);
      }
    }
    publish();
    report_overflows();
    if (stopping) {
      if (!has_pending() && !refilling_ && ch_.to_sync.read_available() == 0) break;
      if (monotonic_ns() >= stop_deadline) {
        if (!reported_loss) {
          log(LogLevel::error,
              "closing with " + std::to_string(dirty_.size()) + " positions and " +
                  std::to_string(key_events_.size() + pattern_events_.size()) +
                  " removals not written to Redis (" +
                  (last_error_.empty() ? "timeout" : last_error_) +
                  "); the segment keeps the positions and a writer re-attaching to it writes them");
          reported_loss = true;
        }
        break;
      }
    }
    if (!progress) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  if (!fenced_) {
    writes_->close();  // a clean close: the next writer need not wait for the lease's expiry
    store_relaxed(&v_.h->redis_lease_epoch, std::uint64_t{0});
  }
  client_.close();
  if (!fenced_)
    set_state(RedisState::off);  // off: no sync thread any more (the dirty count stays as it was)
}

}  // namespace poscache::detail
