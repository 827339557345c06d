// What feeds poscache-writer's apply loop. The daemon polls every source in turn; each applies at
// most `budget` commands per poll through the executor and returns how many it handled, so one
// busy source cannot starve the others or the writer's tick(). Sources: the JSON-lines unix
// socket (socket_source.hpp), producer rings (ring_source.hpp), a Redis stream, and the
// synthetic demo feed (writer/daemon/generator.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "writer/ingest/executor.hpp"

namespace poscache::ingest {

// Per-source counts, for the daemon's stats line and the operator.
struct SourceCounters {
  std::uint64_t received = 0;  // commands (lines, messages, entries) read
  std::uint64_t applied = 0;   // executed with status applied
  std::uint64_t ignored = 0;   // duplicate, stale_source, not_found: the three below
  std::uint64_t rejected = 0;  // refused by the decoder or the executor (error sent back)
  std::uint64_t duplicates = 0, stale = 0, not_found = 0;
};

class Source {
 public:
  virtual ~Source() = default;
  virtual std::size_t poll(CommandExecutor& exec, std::int64_t now_ns, std::size_t budget) = 0;
  [[nodiscard]] virtual std::string name() const = 0;
  [[nodiscard]] virtual SourceCounters counters() const { return {}; }
};

inline void count(SourceCounters& c, const CommandResult& r) {
  switch (r.status) {
    case CommandStatus::applied:
      ++c.applied;
      break;
    case CommandStatus::rejected:
      ++c.rejected;
      break;
    case CommandStatus::duplicate:
      ++c.ignored;
      ++c.duplicates;
      break;
    case CommandStatus::stale_source:
      ++c.ignored;
      ++c.stale;
      break;
    default:
      ++c.ignored;
      ++c.not_found;
      break;
  }
}

}  // namespace poscache::ingest
