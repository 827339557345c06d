// The sync thread: owns the hiredis connection and writes what the apply thread handed off
// (writer/pending_changes.hpp). How its writes are guarded (RedisConfig::guard) is a strategy
// chosen once, in the constructor (writer/redis/sync_strategy.hpp). The whole protocol:
// writer/redis/redis_sync.hpp.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "poscache/redis.hpp"
#include "poscache/writer_config.hpp"
#include "poscache/writer_stats.hpp"
#include "shm/layout.hpp"
#include "writer/journal.hpp"
#include "writer/net/redis_client.hpp"
#include "writer/pending_changes.hpp"
#include "writer/redis/redis_format.hpp"
#include "writer/redis/sync_strategy.hpp"
#include "writer/trade_log.hpp"

namespace poscache::detail {

// What of the segment the sync thread touches: slots (read with the readers' seqlock protocol),
// the SlotBooks' synced_version (its release stores), the header's Redis state (its stores).
struct SegmentView {
  shm::SegmentHeader* h = nullptr;
  const shm::Slot* slots = nullptr;
  shm::SlotBook* book = nullptr;
  std::uint64_t capacity = 0;
  const std::uint64_t* next_version = nullptr;  // the writer area's (apply thread: hand-offs)
};

class SyncWorker {
 public:
  SyncWorker(const RedisConfig& config, std::vector<NamespaceSpec> namespaces, SegmentView view,
             const Journal& journal, ChangeChannel& channel, LogSink log);
  ~SyncWorker();
  SyncWorker(const SyncWorker&) = delete;
  SyncWorker& operator=(const SyncWorker&) = delete;

  // Before start(), on the caller's thread: connects and takes the lease (RedisGuard::fence), so
  // that a second writer on the prefix is refused before it turns ready. The error names the
  // holder; an unreachable Redis is not an error (the thread connects later; logged).
  Expected<bool> open_lease();
  // Before start(), on the caller's thread (a long warm start): renews the lease when due.
  void keep_lease();
  void start();
  // Lets the thread write what it has for up to close_timeout, then joins it.
  void stop();
  [[nodiscard]] bool running() const noexcept { return thread_.joinable(); }
  // A corrupt journal entry (re-attach, before start()): counted as done so the tail passes it.
  void skip(std::uint64_t entry) { tail_.done(entry + 1); }
  // Any thread: what it has done (relaxed reads of counters only this thread moves).
  [[nodiscard]] RedisSyncMetrics metrics() const noexcept;
  // Any thread, once: the fill de-duplication window's log (writer/trade_log.hpp). Its trade ids
  // are mirrored into {prefix}:{ns}:@trades from then on (sync_trades.cpp); the caller then has
  // the apply thread hand off its version (PendingChanges::hand_off_version).
  void attach_trades(const TradeLog& log);
  // A new password (SIGHUP after a rotation): used from the next connection on; the one open
  // now stays authenticated. Any thread.
  void set_password(std::string password) {
    std::lock_guard lock(password_mu_);
    new_password_ = std::move(password);
  }

 private:
  // The guard's writes (SyncStrategy: fenced_writes.hpp, script_writes.hpp) are the worker's
  // parts: they write its pending state on its connection, on its thread.
  friend class FencedWrites;
  friend class ScriptWrites;

  // sync_worker.cpp: the loop, the pending state, the connection, the header's Redis fields
  void run();
  void drain();
  void merge(ChangeBatch& b);
  void merge_event(RemovalEvent&& e);
  [[nodiscard]] bool has_pending() const noexcept;
  void connect();
  std::string load_scripts();  // the strategy's; empty on success (then no reload is due)
  void check_server();         // run id, maxmemory-policy (at connect)
  void start_refill(const std::string& why);  // Redis lost its data: write the segment again
  void feed_refill();                         // queues the next slots of the refill, rate-limited
  // Another writer writes the prefix now: nothing more is written (the fence's lease found it).
  void become_fenced(const std::string& why);
  void lost_connection(const std::string& why);
  void set_state(shm::RedisState state);
  void set_error(const std::string& text);
  void publish();
  void report_overflows();
  std::string event_key(const RemovalEvent& e) const;
  std::string_view ns_name(std::uint16_t ns) const noexcept {
    return shm::fixed_name(v_.h->namespaces[ns].name);
  }
  void log(LogLevel level, const std::string& msg) const {
    if (log_) log_(level, msg);
  }
  // A slot goes back into the dirty set (once), with what Redis may hold of its key (`flags`,
  // the kSlot* flags of writer/pending_changes.hpp).
  void requeue(std::uint32_t s, std::uint8_t flags = 0) {
    in_dirty_[s] |= static_cast<std::uint8_t>(flags << 1);
    if ((in_dirty_[s] & 1) == 0) {
      in_dirty_[s] |= 1;
      dirty_.push_back(s);
    }
  }
  // sync_trades.cpp: the trade ids (writer/trade_log.hpp, THE PROTOCOL)
  struct PendingTrade {
    std::uint64_t id_hash, version, key_hash;
    std::uint32_t ns;
  };
  // What a transaction carries of them: ZADD/ZREMRANGEBYRANK per namespace, and the entries.
  struct TradeWrite {
    std::map<std::uint32_t, Args> zadd;  // ns -> its ZADD's score/member pairs
    std::vector<std::uint64_t> entries;  // log indices
    void clear() {
      zadd.clear();
      entries.clear();
    }
  };
  void read_trades();      // TS3 without TS2: the entries committed so far (never waits)
  bool catch_up_trades();  // TS2 + TS3: false if a fill stayed in flight (the caller requeues)
  // The pending entries of position `key_hash` up to `version`, into `w`.
  void take_trades(std::uint64_t key_hash, std::uint64_t version, TradeWrite& w);
  std::size_t add_trade_commands(const TradeWrite& w, Commands& cmds);  // returns how many
  void trades_written(const TradeWrite& w);  // committed: they leave the pending set
  [[nodiscard]] bool trades_due() const noexcept;
  // A namespace whose trades key is not a sorted set (a hand edit): a ZADD there fails inside
  // the MULTI while the position's write goes through, so its positions with pending ids are
  // held back until the key is fixed (checked at connect, after a refused write, then every s).
  void check_trade_keys();
  [[nodiscard]] bool trades_held_back(std::uint16_t ns, std::uint64_t key_hash) const;
  bool write_due_trades();  // the entries no position write took (orphans), once all is written
  // sync_round.cpp: one round of writes (its order: events, then slots, then orphan trade ids)
  bool flush_round();
  bool write_events(std::vector<RemovalEvent>& events, std::size_t& done);
  bool run_accounts(const std::vector<RemovalEvent>& events, std::size_t from, std::size_t to);
  bool run_scan(const RemovalEvent& e);
  bool append_patterns(const std::vector<RemovalEvent>& events, std::size_t from, std::size_t to);

  RedisConfig cfg_;
  std::mutex password_mu_;                   // guards new_password_ (set from another thread)
  std::optional<std::string> new_password_;  // taken into cfg_ at the next connect
  RedisFormat fmt_;
  SegmentView v_;
  Journal journal_;
  JournalTail tail_;
  ChangeChannel& ch_;
  LogSink log_;
  std::size_t batch_size_;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  RedisClient client_;
  // The guard's writes, chosen once from cfg_.guard (the constructor).
  std::unique_ptr<SyncStrategy> writes_;
  bool fenced_ = false;   // another writer took the lease: nothing more is written
  bool opening_ = false;  // in open_lease()
  // Refilling a Redis that lost its data: every live position of a synced namespace is queued
  // again (with both slot flags: nothing of it can be assumed in Redis), slot by slot from
  // refill_next_, at most RedisConfig::refill_rate per second on top of the changes.
  bool refilling_ = false;
  std::uint64_t refill_next_ = 0;
  std::uint64_t refill_queued_ = 0;  // by this refill
  std::int64_t refill_started_ns_ = 0, refill_fed_ns_ = 0;
  std::uint64_t repushed_ = 0, losses_ = 0;  // published in the header
  std::uint32_t unsynced_mask_ = 0;          // namespaces with sync = none
  std::string run_id_;                       // the server's, at the last connect
  bool evicts_ = false;                      // its maxmemory-policy may evict keys
  std::vector<std::uint32_t> dirty_;
  // per slot: kInDirty (in dirty_) | the kSlot* flags of writer/pending_changes.hpp shifted left by
  // one (what Redis may hold of the slot's key), until a write of the slot commits
  std::vector<std::uint8_t> in_dirty_;
  // The latest change time of the batches merged so far: a slot read whose insert (created_at)
  // or last change (updated_at) is not below it may come from a batch not merged yet, whose
  // flags are not in in_dirty_ yet, so the write assumes both (FencedWrites::build).
  std::int64_t horizon_ns_ = 0;
  std::unordered_map<std::string, RemovalEvent> key_events_;
  std::vector<RemovalEvent> pattern_events_;
  std::int64_t oldest_ns_ = 0;  // oldest change still pending (0: none)
  std::uint64_t synced_max_ = 0;
  std::int64_t next_connect_ns_ = 0;
  std::int64_t backoff_ns_ = 0;
  std::string last_error_;
  bool was_up_ = false;
  bool reload_scripts_ = false;  // a reply said NOSCRIPT: the next round loads them first
  Args args_;
  // Trade ids (sync_trades.cpp): the log, the entries read from it not yet in Redis (by log
  // index, and by position), how far it was read, and the horizon: the newest version of the
  // batches merged (an entry up to it whose position write did not take it is an orphan).
  std::atomic<bool> trades_attached_{false};
  TradeLog trade_log_;
  bool trades_on_ = false;
  bool trades_reread_ = false;  // Redis lost its data: read the whole log again
  std::map<std::uint64_t, PendingTrade> trades_;
  std::unordered_multimap<std::uint64_t, std::uint64_t> trades_by_key_;
  std::uint64_t trade_tail_ = 0;
  std::uint64_t trade_horizon_ = 0;
  std::uint64_t trades_lost_ = 0;
  TradeWrite trade_write_;
  std::uint32_t trades_blocked_ = 0;  // namespaces whose trades key is of another type
  // For metrics(): moved by this thread only (relaxed), read by any.
  struct Counted {
    std::atomic<std::uint64_t> positions{0}, transactions{0}, trade_ids{0}, errors{0},
        reconnects{0}, lag_count{0}, lag_sum_ns{0};
    std::array<std::atomic<std::uint64_t>, RedisSyncMetrics::kLagBoundsNs.size() + 1> lag{};
    static void add(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
      c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
  } counted_;
  // A position write Redis acknowledged, whose latest change was applied at `updated_at_ns`.
  void count_written(std::int64_t updated_at_ns, std::int64_t now_ns) noexcept;
  bool recheck_trades_ = true;
  std::int64_t next_trade_check_ns_ = 0;
  std::uint64_t overflows_seen_ = 0;
  std::int64_t overflow_logged_ns_ = 0;
};

}  // namespace poscache::detail
