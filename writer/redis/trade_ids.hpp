// The trade ids a writer mirrored ({prefix}:{ns}:@trades, writer/redis/redis_format.hpp), read
// back by the writer that takes over: a promoted standby, a warm start on a fresh segment. Their
// window (writer/ingest/trade_window.hpp, load()) then refuses those fills if they are resent.
#pragma once

#include <cstdint>
#include <vector>

#include "poscache/redis.hpp"
#include "poscache/writer_config.hpp"

namespace poscache::detail {

struct MirroredTrade {
  std::uint16_t ns;       // index into the namespaces given
  std::uint64_t id_hash;  // trade_id_hash of the trade id (writer/trade_log.hpp)
  std::uint64_t version;  // the version its fill wrote
};

// Every namespace's set but those with sync = none (RedisConfig::unsynced_namespaces), read
// 10 000 members per ZRANGE. A member that is not 16 hex digits is skipped and counted in
// `malformed` (logged once, with its key). The error names the key and what failed.
Expected<std::vector<MirroredTrade>> load_trade_ids(const RedisConfig& config,
                                                    const std::vector<NamespaceSpec>& namespaces,
                                                    const LogSink& log,
                                                    std::uint64_t* malformed = nullptr);

}  // namespace poscache::detail
