// The daemon's periodic log line (--stats-interval): the table's rates and counters, the Redis
// sync or the follower, then one line per source that received commands.
#pragma once

#include <memory>
#include <vector>

#include "poscache/writer.hpp"
#include "writer/ingest/source.hpp"

namespace poscache::daemon {

void log_stats(const WriterStats& st, const WriterStats& last, double secs, bool following,
               bool redis, const std::vector<std::unique_ptr<ingest::Source>>& sources);

}  // namespace poscache::daemon
