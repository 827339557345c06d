// What the apply loop tells the HTTP threads: its sources' counters, the executor's counters and
// the apply-time histogram. The loop owns them as plain integers (it is their only writer) and
// copies them here every 50 ms with try_lock, so it never waits for a scrape; a scrape reads the
// last copy under the lock. The segment's own counters need none of this: the HTTP threads read
// them from the header like any reader.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "writer/ingest/executor.hpp"
#include "writer/ingest/source.hpp"

namespace poscache::http {

// Time the apply loop spends per applied change: each poll of a source is timed, and its
// duration is divided among the changes it applied (a batch of 256 ring upserts is 256
// observations of a 256th of the batch). Decoding is included; waiting for input is not.
struct ApplyHistogram {
  // Upper bounds in ns (Prometheus `le`, cumulative when rendered); the last bucket is +Inf.
  static constexpr std::array<std::int64_t, 13> kBoundsNs = {
      100,    250,    500,     1'000,   2'500,     5'000,     10'000,
      25'000, 50'000, 100'000, 250'000, 1'000'000, 10'000'000};
  std::array<std::uint64_t, kBoundsNs.size() + 1> counts{};  // per bucket, not cumulative
  std::uint64_t count = 0;
  std::uint64_t sum_ns = 0;

  void observe(std::int64_t each_ns, std::uint64_t n) noexcept {
    std::size_t b = 0;
    while (b < kBoundsNs.size() && each_ns > kBoundsNs[b]) ++b;
    counts[b] += n;
    count += n;
    sum_ns += static_cast<std::uint64_t>(each_ns < 0 ? 0 : each_ns) * n;
  }
};

struct SourceReport {
  std::string name;
  ingest::SourceCounters counters;
};

struct LoopSnapshot {
  std::vector<SourceReport> sources;
  ingest::ExecutorCounters executor;
  ApplyHistogram apply;
  bool redis_on = false;   // the writer mirrors to Redis: `redis` is its sync thread's work
  RedisSyncMetrics redis;  // Writer::redis_sync_metrics
  std::int64_t published_at_ns = 0;  // CLOCK_REALTIME of the copy (0: never published)
};

class LoopBoard {
 public:
  // Apply loop: `fill(snapshot)` under the lock if it is free at once; false (and nothing done)
  // if a reader holds it. The next publication carries the counts on.
  template <class Fill>
  bool try_publish(Fill&& fill) {
    std::unique_lock lock(m_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    fill(snap_);
    return true;
  }
  [[nodiscard]] LoopSnapshot read() const {
    std::lock_guard lock(m_);
    return snap_;
  }

 private:
  mutable std::mutex m_;
  LoopSnapshot snap_;
};

}  // namespace poscache::http
