#include "writer/redis/warm_start.hpp"

#include <algorithm>
#include <chrono>

#include "shm/clock.hpp"

namespace poscache::detail {

std::uint64_t WarmLoader::restore(const shm::SlotPayload& p) {
  if (const std::uint32_t existing = t_.find(p); existing != shm::kNil) {
    // Redis has one hash per key; keep the newer if it ever differs.
    if (t_.peek(existing).version >= p.version) return 0;
    t_.remove(existing, Table::Removal::invalidation);
  }
  auto newer_first = [](const Age& a, const Age& b) { return a > b; };  // std heap: min at front
  std::uint64_t dropped = 0;
  if (t_.full()) {
    if (heap_.empty()) {
      for (std::uint32_t s = 0; s < t_.capacity(); ++s)
        heap_.emplace_back(t_.peek(s).updated_at_ns, t_.peek(s).version, s);
      std::make_heap(heap_.begin(), heap_.end(), newer_first);
    }
    const auto [t, v, victim] = heap_.front();
    if (std::make_pair(p.updated_at_ns, p.version) < std::make_pair(t, v))
      return 1;  // older than all loaded
    std::pop_heap(heap_.begin(), heap_.end(), newer_first);
    heap_.pop_back();
    t_.remove(victim, Table::Removal::eviction);
    dropped = 1;
  }
  const std::uint32_t s = t_.insert_synced(p);
  if (!heap_.empty()) {
    heap_.emplace_back(p.updated_at_ns, p.version, s);
    std::push_heap(heap_.begin(), heap_.end(), newer_first);
  }
  return dropped;
}

Expected<WarmStartReport> warm_start(
    const RedisConfig& config, const RedisFormat& fmt,
    const std::function<std::uint64_t(const shm::SlotPayload&)>& restore,
    const std::function<void()>& tick, const LogSink& log) {
  const auto t0 = std::chrono::steady_clock::now();
  auto say = [&](LogLevel l, const std::string& m) {
    if (log) log(l, m);
  };
  auto c = RedisClient::connect(config);
  if (!c) return fail("warm start: " + c.error());
  RedisClient& client = *c;
  WarmStartReport rep;
  const std::string pattern = fmt.scan_pattern(std::nullopt);
  say(LogLevel::info, "warm start: loading positions under '" + config.prefix + "' from redis " +
                          redis_endpoint(config));
  Args args;
  std::string cursor = "0";
  std::vector<ParsedKey> keys;
  auto last_log = t0;
  const std::int64_t now = shm::realtime_ns();
  do {
    args.clear();
    args.add("SCAN").add(cursor).add("MATCH").add(pattern).add("COUNT").add("1000").add("TYPE").add(
        "hash");
    auto r = client.command(args);
    if (!r) return fail("warm start: " + r.error());
    const redisReply* page = r->get();
    if (page->type != REDIS_REPLY_ARRAY || page->elements != 2) {
      return fail("warm start: SCAN " + pattern + " failed: " + reply_text(page));
    }
    cursor.assign(page->element[0]->str, page->element[0]->len);
    keys.clear();
    for (std::size_t i = 0; i < page->element[1]->elements; ++i) {
      const redisReply* k = page->element[1]->element[i];
      if (auto pk = fmt.parse_key({k->str, k->len})) keys.push_back(std::move(*pk));
    }
    for (const ParsedKey& k : keys) {
      args.clear();
      args.add("HGETALL").add(fmt.position_key(k.ns, k.account, k.instrument));
      if (auto a = client.append(args); !a) return fail("warm start: " + a.error());
    }
    std::size_t read = 0;
    for (const ParsedKey& k : keys) {
      // Also within a page: a slow page (a loaded host, a sanitizer build) must not keep the
      // heartbeat and the lease's renewal waiting (a 300 ms lease lapsed 141 times in a load
      // under ThreadSanitizer when they ran once per page of 1000).
      if (++read % 128 == 0) tick();
      auto h = client.read_reply();
      if (!h) return fail("warm start: " + h.error());
      if ((*h)->type == REDIS_REPLY_ARRAY && (*h)->elements == 0) continue;  // expired meanwhile
      ++rep.scanned;
      const auto ns = fmt.namespace_id(k.ns);
      if (!ns) {
        if (rep.unknown_namespace++ == 0) {
          say(LogLevel::warn, "warm start: " + fmt.position_key(k.ns, k.account, k.instrument) +
                                  ": namespace '" + k.ns +
                                  "' is not configured here; left in Redis (counted, logged once)");
        }
        continue;
      }
      if (std::find(config.unsynced_namespaces.begin(), config.unsynced_namespaces.end(), k.ns) !=
          config.unsynced_namespaces.end()) {
        if (rep.unsynced++ == 0) {
          say(LogLevel::warn,
              "warm start: " + fmt.position_key(k.ns, k.account, k.instrument) + ": namespace '" +
                  k.ns +
                  "' is not synced (sync = none); its positions in Redis, from "
                  "an earlier configuration, are not loaded (counted, logged once)");
        }
        continue;
      }
      auto p = fmt.decode(k, *ns, h->get());
      if (!p) {
        if (rep.malformed++ < 10) say(LogLevel::warn, "warm start: skipped " + p.error());
        continue;
      }
      const std::int64_t ttl = fmt.namespaces()[*ns].expire_after.count();
      if (ttl > 0 && p->updated_at_ns + ttl <= now) {
        ++rep.expired;
        continue;
      }
      rep.max_version = std::max(rep.max_version, p->version);
      rep.beyond_capacity += restore(*p);
      ++rep.loaded;
    }
    tick();
    const auto t = std::chrono::steady_clock::now();
    if (t - last_log >= std::chrono::seconds(1)) {
      say(LogLevel::info, "warm start: " + std::to_string(rep.scanned) + " positions read so far");
      last_log = t;
    }
  } while (cursor != "0");
  rep.loaded -= std::min(rep.loaded, rep.beyond_capacity);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace poscache::detail
