#include "writer/redis/trade_ids.hpp"

#include <algorithm>
#include <charconv>
#include <string>

#include "shm/values/quote.hpp"
#include "writer/net/redis_client.hpp"
#include "writer/redis/redis_format.hpp"

namespace poscache::detail {
namespace {
// 16 lowercase hex digits, exactly.
bool hex16(std::string_view t, std::uint64_t& v) {
  if (t.size() != 16) return false;
  for (const char c : t)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return std::from_chars(t.data(), t.data() + 16, v, 16).ec == std::errc();
}
// "<version>:<id hash>" (writer/redis/sync_trades.cpp).
bool parse_member(std::string_view m, std::uint64_t& version, std::uint64_t& id_hash) {
  return m.size() == 33 && m[16] == ':' && hex16(m.substr(0, 16), version) &&
         hex16(m.substr(17), id_hash);
}
}  // namespace

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
        std::uint64_t version = 0, h = 0;
        if (m->type != REDIS_REPLY_STRING || !parse_member({m->str, m->len}, version, h)) {
          if (bad++ == 0 && log)
            log(LogLevel::warn,
                "trade ids: " + key + " holds a member that is not a mirrored trade id, " +
                    "<16 hex digits of the version>:<16 of the id's hash> (skipped): " +
                    detail::quoted(std::string_view(m->str ? m->str : "", m->len)));
          continue;
        }
        out.push_back({static_cast<std::uint16_t>(ns), h, version});
      }
      if (rep->elements < 2 * static_cast<std::size_t>(kPage)) break;
    }
  }
  if (malformed != nullptr) *malformed = bad;
  return out;
}

}  // namespace poscache::detail
