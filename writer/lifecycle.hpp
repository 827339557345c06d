// A writer's segment from open to close: what Writer::open finds under the segment's name and
// does about it (re-attach, replace, create), the repairs of a re-attach, the writer's liveness
// words, and the retirement of a replaced generation. The bytes themselves are created and
// checked in shm/segment.cpp; the apply engine that re-attach rebuilds is writer/table.hpp.
#pragma once

#include <chrono>
#include <cstdint>

#include "poscache/writer_config.hpp"
#include "shm/segment.hpp"
#include "writer/journal.hpp"
#include "writer/table.hpp"

namespace poscache::detail {

// The segment Writer::open works on: an existing one of ours that matches the config
// (created = false), or a new one (created = true, state initializing). An existing file that
// does not match is replaced only when the config says so (fresh, recreate_on_mismatch) or when
// it is provably a creation of ours that was cut short; anything else is refused, naming what
// was found. A replaced segment is marked retired first, so its readers follow.
struct OpenedSegment {
  shm::Mapping mapping;
  bool created = false;
};
OpenedSegment open_segment(const WriterConfig& config, std::int64_t now_ns);

// Re-attach to a segment left by an earlier writer (crashed or closed): put back the slot a
// kill caught mid-write (from the undo record), drop what only corruption can produce, rebuild
// the index and the lists from the slots, and finish the removals the journal holds. Returns
// the journal's pending entries, for the Redis sync to replay.
Journal::Scan reattach(Table& table, const Journal& journal, const LogSink& log);

// The writer's liveness words in the header: pid, start time, heartbeat.
void stamp_writer(shm::SegmentHeader& h, std::chrono::nanoseconds heartbeat_interval,
                  std::int64_t now_ns);

// How the mapping took huge pages, said once at open. Returns the bytes on 2 MiB pages.
std::uint64_t report_pages(const shm::Mapping& m, const WriterConfig& config, bool created);

}  // namespace poscache::detail
