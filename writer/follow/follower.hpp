// A follower: this host's segment kept equal to what the writer holding the Redis lease keeps
// in Redis, so readers here map it as usual (poscache-writer --follow; README "Followers").
//
// It takes no lease and writes nothing to Redis. Its changes come from two places:
//   * a LOAD of every position under the prefix (SCAN + HGETALL, as a warm start), at start and
//     whenever the change stream cannot take it further. Before the load it notes where the
//     stream is (last-generated-id and entries-added, read in one MULTI); after it, every local
//     position the load did not find is removed (it was removed in Redis), and the stream is
//     tailed from the noted point, so what changed during the load comes again;
//   * the CHANGE STREAM {prefix}:@changes (writer/redis/redis_format.hpp: an entry per
//     transaction, its positions' changes as pairs), read in order, 16 entries at a time, in
//     one MULTI [XRANGE key (last COUNT n; XINFO
//     STREAM key] so that the read and the stream's counters are one moment:
//       - more entries trimmed (entries-added - length) than this follower has read: entries
//         it never saw are gone (it fell more than change_stream_retention behind): load again;
//       - a batch that reached the end of the stream must end at entries-added; otherwise the
//         stream is not the one it was reading (Redis lost its data, the stream was deleted and
//         written again): load again;
//     then one pipelined HGETALL per key an `upsert` entry names (the hash holds that version or
//     a newer one, or nothing: removed since, its removal entry follows), and the entries
//     applied in order, in slices of up to RedisConfig::batch_size positions, each slice one
//     change to readers (Table::begin_batch/end_batch), the heartbeat stored between them:
//       - upsert: the position with its writer's version and timestamps, in place over an older
//         version (Table::apply_synced); an equal or older version is skipped;
//       - removal, pattern: the positions they cover that are older than them
//         (Table::apply_removal), as Redis removed them.
//     Versions decide everything, so applying an entry twice, or a hash newer than its entry,
//     changes nothing that a later entry would not: the copy converges to Redis.
//   When the stream is empty it waits in XREAD BLOCK (at most `wait`) for the next entry.
//
// Lag: the applied position's updated_at (the writer's apply time, CLOCK_REALTIME) against this
// host's clock when it is applied here: on one host exact; across hosts it includes their clock
// offset (keep them in NTP sync). Published per batch in the header (follow_lag_ns).
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "poscache/redis.hpp"
#include "poscache/writer_config.hpp"
#include "writer/net/redis_client.hpp"
#include "writer/redis/lease.hpp"
#include "writer/redis/redis_format.hpp"
#include "writer/table.hpp"

namespace poscache::detail {

// A stream entry id "ms-seq".
struct StreamId {
  std::uint64_t ms = 0, seq = 0;
  static StreamId parse(std::string_view text);
  [[nodiscard]] std::string text() const;
  auto operator<=>(const StreamId&) const = default;
};

class Follower {
 public:
  Follower(const RedisConfig& config, std::vector<NamespaceSpec> namespaces, Table& table,
           LogSink log, std::function<void(std::int64_t)> on_applied);

  // The first load, before the segment turns ready: an error names what failed.
  Expected<bool> start();
  // Applies what the stream holds past the last entry applied, waiting up to `wait` for one
  // when there is none; reconnects (with backoff) and loads again when it must. Returns the
  // number of entries applied.
  std::size_t step(std::chrono::milliseconds wait);
  [[nodiscard]] std::uint64_t reloads() const noexcept { return reloads_; }
  // A standby's question: would a take of the writer lease succeed now (Lease::vacant)? False
  // while Redis cannot be reached.
  bool lease_vacant();

 private:
  bool connect();
  // The load: every position under the prefix, then the stream from the point noted before it.
  bool reload(const std::string& why);
  bool read_batch(std::size_t& applied);
  // Sends tx_ (MULTI ... EXEC), reads every reply, keeps EXEC's; false on a lost connection.
  bool run_tx(Reply& exec);
  void set_state(shm::FollowState s);
  void lost(const std::string& why);
  void say(LogLevel level, const std::string& text) const {
    if (log_) log_(level, text);
  }

  RedisConfig cfg_;
  RedisFormat fmt_;
  Table& t_;
  LogSink log_;
  std::function<void(std::int64_t)> on_applied_;
  std::optional<RedisClient> client_;
  Lease lease_;      // only asked whether it is vacant: a standby's take is the sync thread's
  std::string key_;  // {prefix}:@changes
  StreamId last_;    // the last entry applied (0-0: none yet)
  std::uint64_t position_ = 0;  // entries-added of the stream when `last_` was its last entry
  std::uint64_t reloads_ = 0;
  std::uint32_t unsynced_mask_ = 0;  // namespaces with sync = none: never in Redis
  std::chrono::steady_clock::time_point next_connect_{};
  std::chrono::milliseconds backoff_{0};
  std::string last_error_;
  Commands tx_;
  // the batch being applied: its keys' hashes, fetched together
  std::vector<std::pair<ParsedKey, std::uint16_t>> fetch_;
};

}  // namespace poscache::detail
