// poscache — what the writer publishes about its Redis mirror and its removal journal, for
// tools and health checks (poscache-inspect, monitoring). The trading reader's API
// (poscache/reader.hpp) carries none of it.
#pragma once

#include <cstdint>
#include <string>

#include "poscache/reader.hpp"

namespace poscache {

struct MirrorStatus {
  // off | connecting | up | down | fenced ("off": no Redis configured; "fenced": another writer
  // took the Redis lease, this writer writes nothing more to Redis)
  std::string state = "off";
  std::string last_error;   // the sync thread's last error, empty once writes succeed again
  std::uint64_t dirty = 0;  // changes not yet acknowledged by Redis
  std::int64_t oldest_unsynced_age_ns = 0;
  std::uint64_t synced_version = 0;     // the highest version Redis acknowledged
  std::uint64_t journal_pending = 0;    // removals recorded in the segment, not yet in Redis
  std::uint64_t journal_overflows = 0;  // removals that found the journal full (memory only)
  std::uint64_t lease_epoch = 0;        // the Redis writer lease's epoch it holds (0: none)
  std::uint64_t data_losses = 0;        // times Redis was found without the data it was given
  std::uint64_t repushed = 0;           // positions queued to be written again to refill it
  bool refilling = false;               // a refill is under way (not all of it written yet)
  bool evicting_policy = false;         // Redis's maxmemory-policy may evict keys (a warning)
  // A follower (poscache-writer --follow): none | loading | following | down ("none": the
  // segment's writer is not a follower, and the fields below are 0).
  std::string follow_state = "none";
  std::int64_t follow_lag_ns = 0;    // the last batch's largest lag behind the writer it follows
  std::uint64_t follow_entries = 0;  // change-stream entries applied
  std::uint64_t follow_reloads = 0;  // whole loads of the prefix (the first one included)
};

// Reads the header's mirror lines (relaxed gauges; the error text under its seqlock).
MirrorStatus mirror_status(const Reader& reader);

}  // namespace poscache
