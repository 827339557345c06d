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

#include "poscache/apply.hpp"
#include "poscache/decimal.hpp"
#include "poscache/error.hpp"
#include "poscache/position.hpp"
#include "poscache/schema.hpp"
#include "poscache/update.hpp"
#include "poscache/writer_config.hpp"
#include "poscache/writer_stats.hpp"

namespace poscache {

namespace detail {
struct TradeLog;  // writer/trade_log.hpp (internal: the ingest's fill de-duplication window)
}

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
  using ProducerCounts = poscache::ProducerCounts;
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
  std::unique_ptr<Impl> impl_;
};

}  // namespace poscache
