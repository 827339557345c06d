// GET /metrics: the Prometheus text exposition format (version 0.0.4) of one segment and the
// daemon that writes it. Names follow Prometheus' conventions: a `poscache_` prefix, base units
// (`_seconds`, `_bytes`), `_total` on counters. What each series is, is in its HELP line.
#pragma once

#include <string>

#include "poscache/reader.hpp"
#include "writer/http/http_counters.hpp"
#include "writer/http/loop_board.hpp"

namespace poscache::http {

// Everything a scrape shows: the segment header (counters, live positions per namespace, the
// writer's liveness, the Redis mirror), the producer table, the apply loop's snapshot, and the
// HTTP server's own counts (`http` may be null: not served).
std::string render_metrics(const Reader& reader, const LoopSnapshot& loop,
                           const HttpCounters* http = nullptr);

// A label value with \, " and newline escaped, as the format wants.
std::string escape_label(std::string_view v);

}  // namespace poscache::http
