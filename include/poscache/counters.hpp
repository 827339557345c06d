// poscache — the table's counters: one list for every place that holds or shows them (the
// segment header, WriterStats, SegmentStats, poscache-inspect).
#pragma once

#include <cstdint>
#include <string_view>

namespace poscache {

// In the segment header these are written by the writer only, with relaxed stores: statistics,
// not synchronization (shm/layout.hpp).
struct Counters {
  std::uint64_t live = 0;            // positions in the table
  std::uint64_t inserts = 0;         // new positions
  std::uint64_t updates = 0;         // changes to a position in the table
  std::uint64_t evictions = 0;       // removed to make room (least recently updated)
  std::uint64_t expirations = 0;     // removed by their namespace's expire_after
  std::uint64_t erases = 0;          // removed one by one on request
  std::uint64_t invalidations = 0;   // removed by account/namespace/glob/all requests
  std::uint64_t rejects = 0;         // changes refused (bad input, stale source seq)
  std::uint64_t index_rebuilds = 0;  // index copies rebuilt (tombstones, re-attach)
  std::uint64_t repairs = 0;         // damage a re-attach repaired (cut writes, corrupt entries)
  std::uint64_t tombstones = 0;      // in the active index (a gauge)
};

struct CounterField {
  std::string_view name;
  std::string_view help;
  std::uint64_t Counters::*member;
};

// Every counter, in order, with its name and meaning: what tools iterate.
inline constexpr CounterField kCounterFields[] = {
    {"live", "positions in the table", &Counters::live},
    {"inserts", "new positions", &Counters::inserts},
    {"updates", "changes to a position in the table", &Counters::updates},
    {"evictions", "removed to make room (least recently updated)", &Counters::evictions},
    {"expirations", "removed by their namespace's expire_after", &Counters::expirations},
    {"erases", "removed one by one on request", &Counters::erases},
    {"invalidations", "removed by account, namespace, glob or all requests",
     &Counters::invalidations},
    {"rejects", "changes refused (bad input, stale source sequence)", &Counters::rejects},
    {"index_rebuilds", "index copies rebuilt", &Counters::index_rebuilds},
    {"repairs", "damage a re-attach repaired", &Counters::repairs},
    {"tombstones", "tombstones in the active index", &Counters::tombstones},
};
static_assert(sizeof(kCounterFields) / sizeof(kCounterFields[0]) ==
                  sizeof(Counters) / sizeof(std::uint64_t),
              "every counter is listed");

}  // namespace poscache
