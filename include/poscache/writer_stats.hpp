// poscache — what a Writer reports: its statistics (Writer::stats), the Redis sync's counters
// (Writer::redis_sync_metrics) and a producer's counts in the producer table.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "poscache/counters.hpp"

namespace poscache {

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
  // The index rebuilt a slice per removal (writer/index_rebuild.hpp): slices done, and the
  // longest time one operation spent on it (a slice, or finishing a rebuild at once when a bulk
  // removal crossed the hard limit).
  std::uint64_t index_rebuild_slices = 0;
  std::int64_t index_step_longest_ns = 0;
  // The operations that did index maintenance, by its time: upper bounds in ns (the last
  // bucket +Inf), counts per bucket (not cumulative).
  static constexpr std::array<std::int64_t, 10> kIndexStepBoundsNs = {
      1'000, 2'000, 5'000, 10'000, 20'000, 50'000, 100'000, 1'000'000, 10'000'000, 100'000'000};
  std::array<std::uint64_t, kIndexStepBoundsNs.size() + 1> index_step_counts{};
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

// A producer's counts as the daemon's ring source publishes them in the producer table
// (Writer::producer_counts; poscache-inspect producers).
struct ProducerCounts {
  std::uint64_t pushed = 0, applied = 0, rejected = 0, full = 0, synced = 0;
};

}  // namespace poscache
