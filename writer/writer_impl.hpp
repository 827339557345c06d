// Writer::Impl: what the facade (writer/writer.cpp) holds, shared with its Redis side
// (writer/writer_redis.cpp). Private to the writer library.
#pragma once

#include <cstdint>
#include <memory>

#include "poscache/writer.hpp"
#include "shm/segment.hpp"
#include "writer/follow/follower.hpp"
#include "writer/input.hpp"
#include "writer/journal.hpp"
#include "writer/producer_table.hpp"
#include "writer/reader_table.hpp"
#include "writer/redis/redis_sync.hpp"
#include "writer/redis/warm_start.hpp"
#include "writer/table.hpp"
#include "writer/writer_lock.hpp"

namespace poscache {

struct Writer::Impl {
  WriterConfig cfg;
  detail::InputRules rules;
  detail::WriterLock lock;
  shm::Mapping mapping;
  detail::ProducerTable producers;
  detail::ReaderTable readers;  // where reader processes count their reads (reaped in tick())
  std::int64_t next_reap = 0;
  detail::Table table;
  detail::Journal journal;
  std::unique_ptr<detail::RedisSync> sync;     // null without Redis, and in a follower
  std::unique_ptr<detail::Follower> follower;  // only in a follower (WriterConfig::follow)
  std::int64_t next_lease_check = 0;           // a standby's next look at the lease (monotonic)
  detail::WarmStartReport warm;
  bool reattached = false;
  std::uint64_t huge_page_bytes = 0;  // of the segment, mapped with 2 MiB pages (at open)
  std::int64_t last_heartbeat = 0;

  explicit Impl(const WriterConfig& c) : cfg(c), rules(cfg.namespaces) {}
  shm::SegmentHeader& header() const noexcept { return table.header(); }
  // The table, for a change of this writer's own (every change of the facade goes through here).
  // A follower refuses with an Error: its positions come from Redis only, and a change of its
  // own would never reach Redis and would be overwritten or removed by the next load.
  detail::Table& table_for_change() {
    if (follower) [[unlikely]]
      refuse_in_follower();
    return table;
  }
  [[noreturn]] void refuse_in_follower() const;
  void start_redis(bool empty_segment, detail::Journal::Scan scan);
  std::unique_ptr<detail::RedisSync> make_sync();
  std::uint32_t unsynced_mask() const;
  void maybe_promote();
  void warm_start(const RedisConfig& rc, bool sync_running);
  void queue_unsynced();
};

}  // namespace poscache
