// Warm start: every position under the prefix, from Redis into a fresh segment, before it turns
// ready. SCAN (TYPE hash) walks the keys, a pipelined HGETALL per SCAN page reads them.
#pragma once

#include <cstdint>
#include <functional>
#include <tuple>
#include <vector>

#include "poscache/redis.hpp"
#include "poscache/writer_config.hpp"
#include "writer/redis/redis_format.hpp"
#include "writer/table.hpp"

namespace poscache::detail {

struct WarmStartReport {
  std::uint64_t scanned = 0;            // position hashes found under the prefix
  std::uint64_t loaded = 0;             // put into the segment
  std::uint64_t beyond_capacity = 0;    // did not fit: the oldest by updated_at stay only in Redis
  std::uint64_t expired = 0;            // past their namespace's expire_after
  std::uint64_t unknown_namespace = 0;  // a namespace this writer does not have
  std::uint64_t unsynced = 0;           // of a namespace with sync = none: left in Redis
  std::uint64_t malformed = 0;          // a field that does not parse (logged, with the key)
  std::uint64_t max_version = 0;
  double seconds = 0;
};

// `restore` puts one position into the segment; it returns how many positions did not fit
// because of it (0, or 1: either this one or the one it displaced). `tick` keeps the writer's
// heartbeat going during a long load.
Expected<WarmStartReport> warm_start(
    const RedisConfig& config, const RedisFormat& format,
    const std::function<std::uint64_t(const shm::SlotPayload&)>& restore,
    const std::function<void()>& tick, const LogSink& log);

// The table's side of a warm start: one position from Redis, with its own version and
// timestamps, already synced. Once the table is full, a min-heap of (updated_at, version) over
// the loaded positions keeps exactly the most recently updated `capacity` of them; the others
// stay only in Redis.
class WarmLoader {
 public:
  explicit WarmLoader(Table& table) : t_(table) {}
  // Returns the number of positions that did not fit because of this one (0 or 1).
  std::uint64_t restore(const shm::SlotPayload& p);

 private:
  using Age = std::tuple<std::int64_t, std::uint64_t, std::uint32_t>;  // updated_at, version, slot
  Table& t_;
  std::vector<Age> heap_;  // built the first time the table is full
};

}  // namespace poscache::detail
