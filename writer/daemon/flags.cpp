// poscache-writer's flags (flags.hpp): declared once, read at start and again on each reload.
#include "writer/daemon/flags.hpp"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>

#include "writer/http/server.hpp"

namespace poscache::daemon {

void add_flags(CLI::App& app, Flags& f) {
  app.add_option("-c,--config", f.config_file,
                 "TOML config file (flags override it; see config/demo.toml)");
  app.add_option("-s,--segment", f.segment, "segment name under /dev/shm [POSCACHE_SEGMENT]");
  app.add_option("--capacity", f.capacity, "positions the segment holds [POSCACHE_CAPACITY]");
  app.add_option("--mode", f.mode, "segment file mode, octal (default 0640) [POSCACHE_MODE]");
  app.add_option(
      "-n,--namespace", f.ns_flags,
      "name:preset[:stale_after[:expire_after]], repeatable; replaces the config's namespaces");
  app.add_option("--refresh", f.refresh_flags,
                 "ns:on[:timeout[:retries]]: read-through for a namespace, on stale, miss, both or "
                 "none (request only), repeatable (docs/read-through.md)");
  app.add_option("--no-sync", f.no_sync_flags,
                 "a namespace kept in the segment only (sync = none: never written to Redis, nor "
                 "loaded from it), repeatable");
  app.add_flag(
      "--recreate", f.recreate,
      "replace an existing segment that does not match (readers follow the new generation)");
  app.add_flag("--fresh", f.fresh, "always start a new generation, dropping what the segment held");
  app.add_flag("--no-huge-pages", f.no_huge_pages,
               "leave a new segment on 4 KiB pages (default: 2 MiB pages when the kernel allows) "
               "[POSCACHE_HUGE_PAGES=off]");
  app.add_flag("--generate", f.generate, "feed the segment from the synthetic generator");
  app.add_flag("--no-generate", f.no_generate,
               "no synthetic generator, whatever the config file says");
  app.add_option("--rate", f.rate, "generator: updates per second");
  app.add_option("--accounts", f.accounts, "generator: number of accounts");
  app.add_option("--instruments", f.instruments, "generator: number of instruments");
  app.add_option("--socket", f.socket_path,
                 "the JSON-lines ingest socket (default /dev/shm/SEGMENT.sock)");
  app.add_flag("--no-socket", f.no_socket, "no ingest socket, whatever the config file says");
  app.add_option("--stream", f.stream_flags,
                 "consume this Redis stream (repeatable; replaces the config's [ingest] streams; "
                 "needs Redis)");
  app.add_option("--http", f.http_listen,
                 "serve /metrics, /health and /v1/ on this address (e.g. 127.0.0.1:9108; a bare "
                 "port is on 127.0.0.1; default off)");
  app.add_flag("--no-http", f.no_http, "no HTTP API, whatever the config file says");
  app.add_option("--admin-token-file", f.admin_token_file,
                 "turns POST /v1/invalidate on: the bearer token is this file's first line (mode "
                 "0600)");
  app.add_flag("--busy-poll", f.busy_poll,
               "poll producer rings without ever sleeping: pushes applied within ~1 us, one core "
               "spent");
  app.add_option("--run-for", f.run_for,
                 "stop after this long (e.g. 30s); default: until SIGINT/SIGTERM");
  app.add_option("--stats-interval", f.stats_interval, "log counters this often (default 5s)");
  app.add_option("--log-level", f.log_level,
                 "trace, debug, info, warn, error [POSCACHE_LOG_LEVEL]");
  app.add_flag("--print-config", f.print_only,
               "print the effective settings (file, then environment, then flags) as TOML that "
               "--config takes back, and exit");
  app.add_flag("--remove", f.remove,
               "remove every file of the segment in /dev/shm and exit; refused while its writer "
               "lives");
  auto* rg =
      "Redis (any of these turns the sync on; the password only from the config file or "
      "POSCACHE_REDIS_PASSWORD)";
  app.add_option("--redis-host", f.redis_host, "Redis host [POSCACHE_REDIS_HOST]")->group(rg);
  app.add_option("--redis-port", f.redis_port, "Redis port (default 6379) [POSCACHE_REDIS_PORT]")
      ->group(rg);
  app.add_option("--redis-socket", f.redis_socket,
                 "Redis unix socket, instead of host:port [POSCACHE_REDIS_SOCKET]")
      ->group(rg);
  app.add_option("--redis-db", f.redis_db, "Redis database number [POSCACHE_REDIS_DB]")->group(rg);
  app.add_option("--redis-user", f.redis_user, "Redis ACL username [POSCACHE_REDIS_USERNAME]")
      ->group(rg);
  app.add_option("--redis-prefix", f.redis_prefix,
                 "key prefix (default poscache:v1) [POSCACHE_REDIS_PREFIX]")
      ->group(rg);
  app.add_option("--redis-flush-interval", f.redis_flush,
                 "how often changes go to Redis (default 5ms)")
      ->group(rg);
  app.add_flag("--cold-start", f.cold_start,
               "start an empty segment empty, without loading it from Redis")
      ->group(rg);
  app.add_flag("--follow", f.follow,
               "keep the segment from Redis as another writer (the lease holder on the prefix) "
               "changes it: its positions, then its change stream; no lease, no writes to Redis, "
               "no ingest")
      ->group(rg);
  app.add_flag("--standby", f.standby,
               "a follower that becomes the writer when the prefix's lease is free (its writer "
               "died): it applies the whole stream, takes the lease, then opens its ingest "
               "(socket, rings, streams) and syncs")
      ->group(rg);
  app.add_flag("--no-redis", f.no_redis,
               "no Redis at all, whatever the config file or environment say")
      ->group(rg);
}

DaemonConfig build_config(const Flags& flags) {
  DaemonConfig cfg;
  cfg.writer.namespaces = {preset_trading("spot"), preset_lending("lending"),
                           preset_quote("quotes")};
  if (!flags.config_file.empty()) load_toml_file(flags.config_file, cfg);
  load_env(cfg);
  if (flags.segment) cfg.writer.segment = *flags.segment;
  if (flags.capacity) cfg.writer.capacity = *flags.capacity;
  if (flags.mode) {
    char* end = nullptr;
    const unsigned long m = std::strtoul(flags.mode->c_str(), &end, 8);
    if (flags.mode->empty() || *end != '\0' || m > 0777)
      throw Error("--mode '" + *flags.mode + "' must be octal permission bits such as 0640");
    cfg.writer.mode = static_cast<mode_t>(m);
  }
  if (!flags.ns_flags.empty()) {
    cfg.writer.namespaces.clear();
    cfg.unsynced_namespaces.clear();  // the file's namespaces are replaced, their sync too
    for (const auto& f : flags.ns_flags)
      cfg.writer.namespaces.push_back(parse_namespace_flag(f).value());
  }
  for (const auto& f : flags.refresh_flags) {
    auto [name, p] = parse_refresh_flag(f).value();
    cfg.refresh[name] = p;
  }
  if (flags.recreate) cfg.writer.recreate_on_mismatch = true;
  if (flags.fresh) cfg.writer.fresh = true;
  if (flags.no_huge_pages) cfg.writer.huge_pages = false;
  if (flags.generate) cfg.generator.enabled = true;
  if (flags.no_generate) cfg.generator.enabled = false;
  if (flags.rate) cfg.generator.rate = *flags.rate;
  if (flags.accounts) cfg.generator.accounts = static_cast<std::uint32_t>(*flags.accounts);
  if (flags.instruments) cfg.generator.instruments = static_cast<std::uint32_t>(*flags.instruments);
  auto flag_duration = [](const char* flag, const std::string& text) {
    auto d = parse_duration(text);
    if (!d) throw Error(std::string(flag) + ": " + d.error());
    return *d;
  };
  if (flags.socket_path) cfg.ingest.socket_config.path = *flags.socket_path;
  if (flags.no_socket) cfg.ingest.socket = false;
  if (flags.busy_poll) cfg.ingest.busy_poll = true;
  if (!flags.stream_flags.empty()) cfg.ingest.stream.streams = flags.stream_flags;
  if (auto ok = ingest::validate(cfg.ingest.stream); !ok) throw Error(ok.error());
  if (flags.http_listen) {
    auto addr = http::parse_listen(*flags.http_listen);
    if (!addr) throw Error("--http: " + addr.error());
    cfg.http.listen = *addr;
  }
  if (flags.admin_token_file) cfg.http.admin_token_file = *flags.admin_token_file;
  if (flags.no_http) cfg.http.listen.clear();
  if (flags.run_for) cfg.run_for = flag_duration("--run-for", *flags.run_for);
  if (flags.stats_interval)
    cfg.stats_interval = flag_duration("--stats-interval", *flags.stats_interval);
  if (flags.log_level) cfg.log_level = *flags.log_level;
  auto redis = [&]() -> RedisConfig& {
    return cfg.writer.redis ? *cfg.writer.redis : cfg.writer.redis.emplace();
  };
  if (flags.redis_host) redis().host = *flags.redis_host;
  if (flags.redis_port) redis().port = *flags.redis_port;
  if (flags.redis_socket) redis().unix_socket = *flags.redis_socket;
  if (flags.redis_db) redis().db = *flags.redis_db;
  if (flags.redis_user) redis().username = *flags.redis_user;
  if (flags.redis_prefix) redis().prefix = *flags.redis_prefix;
  if (flags.redis_flush) {
    const auto d = flag_duration("--redis-flush-interval", *flags.redis_flush);
    if (d.count() % 1'000'000 != 0)
      throw Error("--redis-flush-interval: '" + *flags.redis_flush +
                  "' must be a whole number of milliseconds");
    redis().flush_interval = std::chrono::duration_cast<std::chrono::milliseconds>(d);
  }
  if (flags.cold_start && cfg.writer.redis) cfg.writer.redis->warm_start = false;
  if (flags.no_redis) cfg.writer.redis.reset();
  if (flags.follow ||
      flags.standby) {  // its changes come from Redis only (a standby's: until promoted)
    cfg.writer.follow = true;
    cfg.writer.standby = flags.standby;
    const std::string flag = flags.standby ? "--standby" : "--follow";
    if (cfg.generator.enabled) throw Error(flag + ": a follower runs no generator (--no-generate)");
    if (!flags.standby && !cfg.ingest.stream.streams.empty())
      throw Error("--follow: a follower consumes no input stream ([ingest] streams)");
    if (!flags.standby) cfg.ingest.socket = false;
  }
  if (auto ok = validate(cfg.writer); !ok) throw Error(ok.error());  // Redis settings included
  if (!cfg.ingest.stream.streams.empty() && !cfg.writer.redis) {
    throw Error("[ingest] streams (" + cfg.ingest.stream.streams.front() +
                ") need a Redis server: configure [redis] (or --redis-host / --redis-socket)");
  }
  const auto level = spdlog::level::from_str(cfg.log_level);
  if (level == spdlog::level::off && cfg.log_level != "off") {
    throw Error("log level '" + cfg.log_level + "' is not trace, debug, info, warn, error or off");
  }
  for (const std::string& ns : flags.no_sync_flags) {
    if (std::find(cfg.unsynced_namespaces.begin(), cfg.unsynced_namespaces.end(), ns) ==
        cfg.unsynced_namespaces.end())
      cfg.unsynced_namespaces.push_back(ns);
  }
  for (const std::string& ns : cfg.unsynced_namespaces) {
    if (std::none_of(cfg.writer.namespaces.begin(), cfg.writer.namespaces.end(),
                     [&](const NamespaceSpec& n) { return n.name == ns; }))
      throw Error("sync = none names namespace '" + ns + "', which is not configured");
  }
  if (cfg.writer.redis) cfg.writer.redis->unsynced_namespaces = cfg.unsynced_namespaces;
  return cfg;
}

}  // namespace poscache::daemon
