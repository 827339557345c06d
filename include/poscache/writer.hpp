// poscache — the writer library: owns one segment, applies changes, keeps LRU and TTL.
//
//   poscache::WriterConfig cfg;
//   cfg.segment = "positions";
//   cfg.capacity = 1'000'000;
//   cfg.namespaces = {poscache::preset_trading("spot"), poscache::preset_quote("marks")};
//   auto w = poscache::Writer::open(cfg);      // throws poscache::Error, naming what is wrong
//   auto u = w->make_update("spot", "wallet1", "SOL", {{"qty", "12.5"}, {"avg_price", "141.2"}});
//   if (!u) log(u.error()); else w->upsert(*u);
//   w->tick();                                  // heartbeat, expiry, wake waiting readers
//
// Exactly one Writer per segment: a second one, in any process, fails at once naming the first.
// The writer never waits for a reader. A Writer is single-threaded: call it from one thread.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "poscache/counters.hpp"
#include "poscache/decimal.hpp"
#include "poscache/error.hpp"
#include "poscache/position.hpp"
#include "poscache/redis.hpp"
#include "poscache/schema.hpp"
#include "poscache/update.hpp"

namespace poscache {

namespace detail {
struct TradeLog;  // writer/trade_log.hpp (internal: the ingest's fill de-duplication window)
}

enum class LogLevel : std::uint8_t { debug, info, warn, error };
// Where the writer library reports what an operator should see (Redis connected or lost, warm
// start progress). Called from the opening thread and from the sync thread. Default: stderr.
using LogSink = std::function<void(LogLevel, std::string_view)>;

struct WriterConfig {
  std::string segment = "poscache";
  std::uint64_t capacity = 1 << 20;
  std::vector<NamespaceSpec> namespaces;
  mode_t mode = 0640;  // who may map it: by default only the writer's user writes, its group reads
  // An existing segment whose capacity or namespaces differ from this config is refused unless
  // `recreate_on_mismatch`; `fresh` re-creates even a compatible one (a new generation).
  bool recreate_on_mismatch = false;
  bool fresh = false;
  // Turn a newly created segment's pages into 2 MiB pages (MADV_COLLAPSE, Linux 6.1+), whatever
  // /dev/shm's mount option: with 4 KiB pages nearly every random access to a large table also
  // misses the TLB. Readers map it 2 MiB-aligned and share the huge pages. If the kernel refuses,
  // the segment stays on 4 KiB pages and the writer logs why.
  bool huge_pages = true;
  std::chrono::nanoseconds heartbeat_interval = std::chrono::milliseconds(10);
  // Readers blocked in wait_for_change() are woken at most this often (a system call per wake).
  std::chrono::nanoseconds wake_interval = std::chrono::microseconds(100);
  // How many expired positions one tick() removes at most (keeps the apply loop responsive).
  std::size_t expire_budget = 4096;
  // Record every change in the segment's change ring (shm/change_ring.hpp), which readers follow
  // with Reader::changes(). Off saves the writer about two cache lines of stores per change;
  // readers' changes() then answers `unavailable`.
  bool change_ring = true;
  // Mirror the segment to Redis (write-behind, on a thread of its own) and warm start from it.
  std::optional<RedisConfig> redis;
  // A follower (poscache-writer --follow): the segment is kept from `redis` (its prefix's
  // positions, then its change stream) as another writer, the lease holder, changes them; this
  // one takes no lease and writes nothing to Redis. Call follow() in the apply loop; its own
  // changes (upsert, erase, invalidate, apply) are refused with an Error. Needs `redis`.
  bool follow = false;
  // A standby (poscache-writer --standby): a follower that becomes the writer when the lease is
  // free (its holder's lease expired, or its holder was a process of this host that is gone).
  // follow() applies everything the stream holds, takes the lease with a fresh epoch and starts
  // the Redis sync: following() turns false and the writer's own changes are allowed. Of
  // several standbys exactly one takes it; the others go on following it. Implies `follow`.
  bool standby = false;
  // A follower calls it with the lag of each position it applies (its apply time here minus the
  // writer's, CLOCK_REALTIME): for benchmarks and tests. Called from the thread in follow().
  std::function<void(std::int64_t lag_ns)> on_follow;
  // Where the writer logs (stderr if unset). Called from the applying thread and, with Redis,
  // from the sync thread: it must be thread-safe (spdlog's loggers are).
  LogSink log;
};

struct KeyRef {
  NamespaceId ns = 0;
  std::string account;
  std::string instrument;
};

enum class ApplyStatus : std::uint8_t {
  inserted,
  updated,
  erased,
  not_found,     // erase of a key that is not there
  stale_source,  // source_seq older than (or equal to) the stored one: refused, counted
  bad_input,     // refused, counted; `ApplyResult::error` says why
};
// Checks a WriterConfig without touching any segment (what Writer::open checks first); errors
// name the setting and the value.
Expected<bool> validate(const WriterConfig& config);

std::string_view to_string(ApplyStatus s) noexcept;

struct ApplyResult {
  ApplyStatus status = ApplyStatus::bad_input;
  std::uint64_t version = 0;  // the version written (inserted/updated)
  bool evicted = false;       // an insert pushed out the least recently updated position
};

// Invalidation requests. Each removes positions and counts them as invalidations.
struct InvalidateAccount {
  std::string account;
  std::optional<NamespaceId> ns;
};
struct InvalidateNamespace {
  NamespaceId ns = 0;
};
struct InvalidateMatching {
  std::string glob;
};  // fnmatch over "ns:account:instrument"
struct InvalidateAll {};
struct Erase {
  KeyRef key;
};

using Op = std::variant<Update, Erase, InvalidateAccount, InvalidateNamespace, InvalidateMatching,
                        InvalidateAll>;

struct BatchResult {
  bool applied = false;  // false: the batch was refused whole (see error), nothing applied
  std::string error;     // names the op index and what was wrong
  std::vector<ApplyResult> results;  // one per op when applied
  std::size_t removed = 0;           // positions removed by the batch's invalidations
};

struct WriterStats : Counters {
  std::uint64_t capacity = 0, generation = 0, next_version = 0;
  bool reattached = false;  // this writer re-attached to a segment left by an earlier writer
  std::uint64_t segment_bytes = 0;            // the segment's size
  std::uint64_t huge_page_bytes = 0;          // of it, mapped with 2 MiB pages (read at open)
  std::vector<std::uint64_t> namespace_live;  // live positions by namespace id
  // Warm start (a fresh or empty segment loaded from Redis at open)
  std::uint64_t warm_loaded = 0;           // positions loaded
  std::uint64_t warm_beyond_capacity = 0;  // positions Redis holds that did not fit (left in Redis)
  std::uint64_t warm_skipped = 0;  // expired, unknown or unsynced namespace, malformed (logged)
  // Redis sync, as published in the header: off, connecting, up, down
  std::string redis_state = "off";
  std::uint64_t redis_dirty = 0;  // changes not yet acknowledged by Redis
  std::int64_t redis_oldest_unsynced_age_ns = 0;
  std::uint64_t redis_synced_version = 0;
  std::uint64_t redis_lease_epoch = 0;  // the Redis writer lease's epoch held (0: none)
  // A follower (WriterConfig::follow): none | loading | following | down, its last batch's lag
  // behind the writer it follows, the stream entries it applied, its whole loads.
  std::string follow_state = "none";
  std::int64_t follow_lag_ns = 0;
  std::uint64_t follow_entries = 0;
  std::uint64_t follow_reloads = 0;
  std::uint64_t journal_pending =
      0;  // removals recorded in the segment's journal, not yet in Redis
  std::uint64_t journal_overflows =
      0;  // removals that found the journal full (kept in memory only)
};

// The Redis sync thread's counters (Writer::redis_sync_metrics, the daemon's /metrics).
struct RedisSyncMetrics {
  std::uint64_t positions_written = 0;  // position writes Redis acknowledged
  std::uint64_t transactions = 0;       // transactions (or script calls) Redis acknowledged
  std::uint64_t trade_ids_written = 0;  // fill trade ids mirrored (docs/exactly-once.md)
  std::uint64_t errors = 0;             // writes Redis refused (kept, retried)
  std::uint64_t reconnects = 0;         // connections lost (and retried with backoff)
  // Sync lag: from a change's apply (its updated_at) to Redis acknowledging the position write
  // that carried it. Upper bounds in ns (the last bucket +Inf), counts per bucket.
  static constexpr std::array<std::int64_t, 12> kLagBoundsNs = {
      100'000,    250'000,    500'000,    1'000'000,   2'500'000,     5'000'000,
      10'000'000, 25'000'000, 50'000'000, 100'000'000, 1'000'000'000, 10'000'000'000};
  std::array<std::uint64_t, kLagBoundsNs.size() + 1> lag_counts{};
  std::uint64_t lag_count = 0;
  std::uint64_t lag_sum_ns = 0;
};

class Writer {
 public:
  static std::unique_ptr<Writer> open(const WriterConfig& config);
  // Removes every file of segment `name` in /dev/shm (docs/operations.md, "The files in
  // /dev/shm"): the segment, <name>.readers, .trades, .streams, the default socket <name>.sock,
  // then <name>.lock. Refuses, throwing Error naming the holder's pid, while a writer lives.
  // Readers that still map it read on until they close it. Returns the paths it removed.
  static std::vector<std::string> remove_segment(const std::string& name);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // --- building updates (validation: every error names the part, the value and the limit) ---
  Expected<NamespaceId> namespace_id(std::string_view ns) const;
  Expected<Update> make_update(
      std::string_view ns, std::string_view account, std::string_view instrument,
      std::span<const std::pair<std::string_view, std::string_view>> fields,
      std::uint64_t source_seq = 0, UpdateMode mode = UpdateMode::merge) const;
  Expected<Update> make_update(
      std::string_view ns, std::string_view account, std::string_view instrument,
      std::initializer_list<std::pair<std::string_view, std::string_view>> fields,
      std::uint64_t source_seq = 0, UpdateMode mode = UpdateMode::merge) const {
    return make_update(ns, account, instrument, std::span(fields.begin(), fields.size()),
                       source_seq, mode);
  }
  // Typed: values are mantissas at each field's scale (or integers), by value slot (a text
  // field's bytes from its first slot: poscache/position.hpp put_text); `mask` says which fields
  // are given.
  Expected<Update> make_update(NamespaceId ns, std::string_view account,
                               std::string_view instrument, std::uint32_t mask,
                               const int128* values, std::uint64_t source_seq = 0,
                               UpdateMode mode = UpdateMode::merge) const;
  Expected<KeyRef> make_key(std::string_view ns, std::string_view account,
                            std::string_view instrument) const;

  // --- changes --------------------------------------------------------------------------------
  ApplyResult upsert(const Update& update);
  // The same for many updates, applied in order, with their memory accesses overlapped: much
  // faster than a loop of upsert() when positions are spread over a large table. results[i] is
  // the outcome of updates[i]; a malformed update is refused alone (bad_input), not the batch.
  void upsert_batch(std::span<const Update> updates, std::span<ApplyResult> results);
  // The same for updates whose key hashes a producer already computed (shm/hash.hpp key_hash;
  // the producer rings): the writer skips hashing and the key's character checks, and proves
  // each claim instead (an update's key must sit in a slot whose stored hash equals the claim;
  // a new key is checked and hashed in full). A false claim is refused (bad_input), never
  // applied.
  void upsert_batch(std::span<const Update> updates, std::span<const std::uint64_t> key_hashes,
                    std::span<ApplyResult> results);
  ApplyResult erase(const KeyRef& key);
  std::size_t invalidate_account(std::string_view account,
                                 std::optional<NamespaceId> ns = std::nullopt);
  std::size_t invalidate_namespace(NamespaceId ns);
  // `glob` (fnmatch) over "namespace:account:instrument", 1 to 256 characters (throws Error
  // otherwise, naming the length). Each invalidation returns how many positions it removed.
  std::size_t invalidate_matching(std::string_view glob);
  std::size_t invalidate_all();
  // Checks every op first; if any is malformed (unknown namespace, bad key), nothing is applied.
  BatchResult apply(std::span<const Op> ops);

  // Heartbeat, expiry (expire_after), index upkeep, waking readers. Call at least every
  // heartbeat_interval; cheap when there is nothing to do.
  void tick();
  // Only the heartbeat part of tick(): tells readers the writer is alive. For a writer that is
  // busy in a long operation of its own and cannot run the whole tick().
  void heartbeat();
  // Marks the segment closed (data stays readable) and releases the writer lock. With Redis, first
  // lets the sync thread write what is unsynced, for up to RedisConfig::close_timeout.
  void close();

  // With Redis: hands every change made so far to the sync thread and waits until Redis has
  // acknowledged all of them. False on timeout (Redis down or slow); nothing is lost either way.
  bool sync_redis(std::chrono::milliseconds timeout);
  // A new Redis password (after a rotation): the sync thread uses it from its next connection
  // on; the connection open now stays authenticated. False without Redis.
  bool set_redis_password(std::string password);
  // Without waiting: a ticket for every change made so far, and whether Redis now holds all the
  // changes of a ticket. Without Redis, redis_ticket() is 0 and redis_acknowledged() false.
  [[nodiscard]] std::uint64_t redis_ticket() const noexcept;
  [[nodiscard]] bool redis_acknowledged(std::uint64_t ticket) const noexcept;
  [[nodiscard]] bool mirrors_to_redis() const noexcept;
  // With Redis: what the sync thread has done since the writer opened (for /metrics): any
  // thread, relaxed reads of its counters. All zero without Redis.
  [[nodiscard]] RedisSyncMetrics redis_sync_metrics() const noexcept;
  // With Redis: mirror the trade ids of a fill de-duplication window (the ingest's TradeWindow,
  // writer/trade_log.hpp) into {prefix}:{ns}:@trades, each with its fill's position. Apply
  // thread; the log must outlive the writer's Redis sync (close() first). False without Redis.
  bool mirror_trades(const detail::TradeLog& log);

  // A follower (WriterConfig::follow): applies what the change stream holds past the last entry
  // it applied, waiting up to `wait` for one when there is none; reconnects and loads the whole
  // prefix again when it must (Redis lost the stream, or trimmed it past this follower). Returns
  // the entries applied. Throws Error on a writer that is not a follower.
  std::size_t follow(std::chrono::milliseconds wait);
  // A follower not (or no longer: a standby that took the lease) ... false once promoted.
  [[nodiscard]] bool following() const noexcept;

  // Counts a refused update (e.g. one that failed make_update) in the segment's rejects counter.
  void count_reject();

  // --- the producer table (tools read it: poscache-inspect producers) -------------------------
  // The daemon's ring source records each producer it serves. attach returns the entry's id, or
  // -1 when all kMaxProducers entries hold attached producers.
  struct ProducerCounts {
    std::uint64_t pushed = 0, applied = 0, rejected = 0, full = 0, synced = 0;
  };
  int producer_attach(std::string_view name, std::int64_t pid, std::uint32_t uid);
  void producer_counts(int id, const ProducerCounts& counts);
  void producer_error(int id, std::string_view text);
  void producer_detach(int id);

  [[nodiscard]] WriterStats stats() const;
  // The version the next change will get: every change made so far has a lower one.
  [[nodiscard]] std::uint64_t next_version() const noexcept;
  [[nodiscard]] const std::vector<NamespaceSpec>& namespaces() const noexcept;
  [[nodiscard]] const std::string& segment_name() const noexcept;

  // Reads the writer's own copy of a position (no seqlock needed: it is the only writer).
  [[nodiscard]] std::optional<Position> find(const KeyRef& key) const;
  // The same without building a KeyRef (no allocation): the ingest commands' read-modify-write.
  [[nodiscard]] std::optional<Position> find(NamespaceId ns, std::string_view account,
                                             std::string_view instrument) const;
  // The accounts holding `instrument` in namespace `ns`: a walk over every live position
  // (O(live positions)), for commands that fan out, such as a mark across accounts.
  [[nodiscard]] std::vector<std::string> accounts_holding(NamespaceId ns,
                                                          std::string_view instrument) const;

  struct Impl;

 private:
  explicit Writer(std::unique_ptr<Impl> impl);
  [[noreturn]] void refuse_in_follower() const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace poscache
