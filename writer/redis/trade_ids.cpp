#include "writer/redis/trade_ids.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

#include "writer/redis/redis_client.hpp"
#include "writer/redis/redis_format.hpp"

namespace poscache::detail {

Expected<std::vector<MirroredTrade>> load_trade_ids(const RedisConfig& config,
                                                    const std::vector<NamespaceSpec>& namespaces,
                                                    const LogSink& log, std::uint64_t* malformed) {
  auto c = RedisClient::connect(config);
  if (!c) return fail("trade ids: " + c.error());
  const RedisFormat fmt(config.prefix, namespaces);
  std::vector<MirroredTrade> out;
  std::uint64_t bad = 0;
  constexpr std::int64_t kPage = 10'000;
  for (std::size_t ns = 0; ns < namespaces.size(); ++ns) {
    const auto& unsynced = config.unsynced_namespaces;
    if (std::find(unsynced.begin(), unsynced.end(), namespaces[ns].name) != unsynced.end())
      continue;
    const std::string key = fmt.trades_key(namespaces[ns].name);
    for (std::int64_t from = 0;; from += kPage) {
      Args a;
      a.add("ZRANGE").add(key).add_int(from).add_int(from + kPage - 1).add("WITHSCORES");
      auto r = c->command(a);
      if (!r) return fail("trade ids: ZRANGE " + key + ": " + r.error());
      const redisReply* rep = r->get();
      if (rep->type == REDIS_REPLY_ERROR)
        return fail("trade ids: ZRANGE " + key + ": " + reply_text(rep));
      if (rep->type != REDIS_REPLY_ARRAY)
        return fail("trade ids: ZRANGE " + key + ": not an array reply");
      for (std::size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply* m = rep->element[i];
        const redisReply* s = rep->element[i + 1];
        std::uint64_t h = 0;
        const char* end = m->str + m->len;
        const auto [p, ec] = std::from_chars(m->str, end, h, 16);
        // RESP2 (Debian 12's hiredis speaks nothing else): the score as text
        const double score = s->type == REDIS_REPLY_STRING ? std::strtod(s->str, nullptr) : -1;
        if (m->type != REDIS_REPLY_STRING || m->len != 16 || ec != std::errc() || p != end ||
            !(score >= 0) || !std::isfinite(score)) {
          if (bad++ == 0 && log)
            log(LogLevel::warn, "trade ids: " + key + " holds a member that is not a " +
                                           "mirrored trade id (skipped): '" +
                                           std::string(m->str ? m->str : "", m->len) + "'");
          continue;
        }
        out.push_back({static_cast<std::uint16_t>(ns), h, static_cast<std::uint64_t>(score)});
      }
      if (rep->elements < 2 * static_cast<std::size_t>(kPage)) break;
    }
  }
  if (malformed != nullptr) *malformed = bad;
  return out;
}

}  // namespace poscache::detail
