// The daemon's fill de-duplication window: opened beside the segment, filled with what Redis
// holds of the trade ids a writer applied (a promoted standby, a warm start on a fresh segment),
// and mirrored to Redis from then on (docs/exactly-once.md).
#pragma once

#include <memory>

#include "poscache/writer.hpp"
#include "writer/daemon/config.hpp"
#include "writer/ingest/trade_window.hpp"

namespace poscache::daemon {

// Throws poscache::Error (the window's file) like TradeWindow. A Redis that cannot be read is
// logged as an error, not thrown: the writer serves, and the sync mirrors what it applies.
std::unique_ptr<ingest::TradeWindow> open_trade_window(Writer& writer, const DaemonConfig& cfg,
                                                       std::uint64_t generation);

}  // namespace poscache::daemon
