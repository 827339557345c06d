// poscache-writer: the daemon that owns one segment. It creates (or re-attaches to) the segment,
// then runs the apply loop: poll every source, tick (heartbeat, expiry, wake readers), repeat.
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "poscache/reader.hpp"
#include "poscache/version.h"
#include "poscache/writer.hpp"
#include "shm/clock.hpp"
#include "writer/daemon/config.hpp"
#include "writer/daemon/generator.hpp"
#include "writer/daemon/logging.hpp"
#include "writer/daemon/refresh_setup.hpp"
#include "writer/daemon/stats_log.hpp"
#include "writer/daemon/trades.hpp"
#include "writer/http/server.hpp"
#include "writer/tsc_clock.hpp"

using namespace poscache;
using namespace poscache::daemon;

namespace {
std::atomic<bool> g_stop{false}, g_reload{false};
void on_signal(int) {
  g_stop.store(true, std::memory_order_relaxed);
}
void on_hangup(int) {
  g_reload.store(true, std::memory_order_relaxed);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "poscache-writer: owns a poscache shared-memory segment and applies position updates"};
  app.set_version_flag("--version", "poscache-writer " POSCACHE_VERSION);
  std::string config_file;
  std::optional<std::string> segment, mode, log_level, run_for, stats_interval;
  std::optional<std::uint64_t> capacity, accounts, instruments;
  std::optional<double> rate;
  std::vector<std::string> ns_flags, no_sync_flags, refresh_flags;
  bool recreate = false, fresh = false, no_huge_pages = false, generate = false,
       no_generate = false, cold_start = false, no_redis = false, follow = false, standby = false;
  bool print_only = false;
  std::optional<std::string> socket_path;
  bool no_socket = false, busy_poll = false;
  std::vector<std::string> stream_flags;
  std::optional<std::string> http_listen, admin_token_file;
  bool no_http = false;
  std::optional<std::string> redis_host, redis_socket, redis_user, redis_prefix, redis_flush;
  std::optional<int> redis_port, redis_db;
  app.add_option("-c,--config", config_file,
                 "TOML config file (flags override it; see config/demo.toml)");
  app.add_option("-s,--segment", segment, "segment name under /dev/shm [POSCACHE_SEGMENT]");
  app.add_option("--capacity", capacity, "positions the segment holds [POSCACHE_CAPACITY]");
  app.add_option("--mode", mode, "segment file mode, octal (default 0640) [POSCACHE_MODE]");
  app.add_option(
      "-n,--namespace", ns_flags,
      "name:preset[:stale_after[:expire_after]], repeatable; replaces the config's namespaces");
  app.add_option("--refresh", refresh_flags,
                 "ns:on[:timeout[:retries]]: read-through for a namespace, on stale, miss, both or "
                 "none (request only), repeatable (docs/read-through.md)");
  app.add_option("--no-sync", no_sync_flags,
                 "a namespace kept in the segment only (sync = none: never written to Redis, nor "
                 "loaded from it), repeatable");
  app.add_flag(
      "--recreate", recreate,
      "replace an existing segment that does not match (readers follow the new generation)");
  app.add_flag("--fresh", fresh, "always start a new generation, dropping what the segment held");
  app.add_flag("--no-huge-pages", no_huge_pages,
               "leave a new segment on 4 KiB pages (default: 2 MiB pages when the kernel allows) "
               "[POSCACHE_HUGE_PAGES=off]");
  app.add_flag("--generate", generate, "feed the segment from the synthetic generator");
  app.add_flag("--no-generate", no_generate,
               "no synthetic generator, whatever the config file says");
  app.add_option("--rate", rate, "generator: updates per second");
  app.add_option("--accounts", accounts, "generator: number of accounts");
  app.add_option("--instruments", instruments, "generator: number of instruments");
  app.add_option("--socket", socket_path,
                 "the JSON-lines ingest socket (default /dev/shm/SEGMENT.sock)");
  app.add_flag("--no-socket", no_socket, "no ingest socket, whatever the config file says");
  app.add_option("--stream", stream_flags,
                 "consume this Redis stream (repeatable; replaces the config's [ingest] streams; "
                 "needs Redis)");
  app.add_option("--http", http_listen,
                 "serve /metrics, /health and /v1/ on this address (e.g. 127.0.0.1:9108; a bare "
                 "port is on 127.0.0.1; default off)");
  app.add_flag("--no-http", no_http, "no HTTP API, whatever the config file says");
  app.add_option("--admin-token-file", admin_token_file,
                 "turns POST /v1/invalidate on: the bearer token is this file's first line (mode "
                 "0600)");
  app.add_flag("--busy-poll", busy_poll,
               "poll producer rings without ever sleeping: pushes applied within ~1 us, one core "
               "spent");
  app.add_option("--run-for", run_for,
                 "stop after this long (e.g. 30s); default: until SIGINT/SIGTERM");
  app.add_option("--stats-interval", stats_interval, "log counters this often (default 5s)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error [POSCACHE_LOG_LEVEL]");
  app.add_flag("--print-config", print_only,
               "print the effective settings (file, then environment, then flags) as TOML that "
               "--config takes back, and exit");
  bool remove = false;
  app.add_flag("--remove", remove,
               "remove every file of the segment in /dev/shm and exit; refused while its writer "
               "lives");
  auto* rg =
      "Redis (any of these turns the sync on; the password only from the config file or "
      "POSCACHE_REDIS_PASSWORD)";
  app.add_option("--redis-host", redis_host, "Redis host [POSCACHE_REDIS_HOST]")->group(rg);
  app.add_option("--redis-port", redis_port, "Redis port (default 6379) [POSCACHE_REDIS_PORT]")
      ->group(rg);
  app.add_option("--redis-socket", redis_socket,
                 "Redis unix socket, instead of host:port [POSCACHE_REDIS_SOCKET]")
      ->group(rg);
  app.add_option("--redis-db", redis_db, "Redis database number [POSCACHE_REDIS_DB]")->group(rg);
  app.add_option("--redis-user", redis_user, "Redis ACL username [POSCACHE_REDIS_USERNAME]")
      ->group(rg);
  app.add_option("--redis-prefix", redis_prefix,
                 "key prefix (default poscache:v1) [POSCACHE_REDIS_PREFIX]")
      ->group(rg);
  app.add_option("--redis-flush-interval", redis_flush,
                 "how often changes go to Redis (default 5ms)")
      ->group(rg);
  app.add_flag("--cold-start", cold_start,
               "start an empty segment empty, without loading it from Redis")
      ->group(rg);
  app.add_flag("--follow", follow,
               "keep the segment from Redis as another writer (the lease holder on the prefix) "
               "changes it: its positions, then its change stream; no lease, no writes to Redis, "
               "no ingest")
      ->group(rg);
  app.add_flag("--standby", standby,
               "a follower that becomes the writer when the prefix's lease is free (its writer "
               "died): it applies the whole stream, takes the lease, then opens its ingest "
               "(socket, rings, streams) and syncs")
      ->group(rg);
  app.add_flag("--no-redis", no_redis,
               "no Redis at all, whatever the config file or environment say")
      ->group(rg);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; any usage error: 2, like a bad config value
  }

  // The effective settings: defaults, then the file, then the environment, then the flags. Run
  // at start and again on SIGHUP (which applies what can change while running).
  auto build_config = [&]() {
    DaemonConfig cfg;
    cfg.writer.namespaces = {preset_trading("spot"), preset_lending("lending"),
                             preset_quote("quotes")};
    if (!config_file.empty()) load_toml_file(config_file, cfg);
    load_env(cfg);
    if (segment) cfg.writer.segment = *segment;
    if (capacity) cfg.writer.capacity = *capacity;
    if (mode) {
      char* end = nullptr;
      const unsigned long m = std::strtoul(mode->c_str(), &end, 8);
      if (mode->empty() || *end != '\0' || m > 0777)
        throw Error("--mode '" + *mode + "' must be octal permission bits such as 0640");
      cfg.writer.mode = static_cast<mode_t>(m);
    }
    if (!ns_flags.empty()) {
      cfg.writer.namespaces.clear();
      cfg.unsynced_namespaces.clear();  // the file's namespaces are replaced, their sync too
      for (const auto& f : ns_flags)
        cfg.writer.namespaces.push_back(parse_namespace_flag(f).value());
    }
    for (const auto& f : refresh_flags) {
      auto [name, p] = parse_refresh_flag(f).value();
      cfg.refresh[name] = p;
    }
    if (recreate) cfg.writer.recreate_on_mismatch = true;
    if (fresh) cfg.writer.fresh = true;
    if (no_huge_pages) cfg.writer.huge_pages = false;
    if (generate) cfg.generator.enabled = true;
    if (no_generate) cfg.generator.enabled = false;
    if (rate) cfg.generator.rate = *rate;
    if (accounts) cfg.generator.accounts = static_cast<std::uint32_t>(*accounts);
    if (instruments) cfg.generator.instruments = static_cast<std::uint32_t>(*instruments);
    auto flag_duration = [](const char* flag, const std::string& text) {
      auto d = parse_duration(text);
      if (!d) throw Error(std::string(flag) + ": " + d.error());
      return *d;
    };
    if (socket_path) cfg.ingest.socket_config.path = *socket_path;
    if (no_socket) cfg.ingest.socket = false;
    if (busy_poll) cfg.ingest.busy_poll = true;
    if (!stream_flags.empty()) cfg.ingest.stream.streams = stream_flags;
    if (auto ok = ingest::validate(cfg.ingest.stream); !ok) throw Error(ok.error());
    if (http_listen) {
      auto addr = http::parse_listen(*http_listen);
      if (!addr) throw Error("--http: " + addr.error());
      cfg.http.listen = *addr;
    }
    if (admin_token_file) cfg.http.admin_token_file = *admin_token_file;
    if (no_http) cfg.http.listen.clear();
    if (run_for) cfg.run_for = flag_duration("--run-for", *run_for);
    if (stats_interval) cfg.stats_interval = flag_duration("--stats-interval", *stats_interval);
    if (log_level) cfg.log_level = *log_level;
    auto redis = [&]() -> RedisConfig& {
      return cfg.writer.redis ? *cfg.writer.redis : cfg.writer.redis.emplace();
    };
    if (redis_host) redis().host = *redis_host;
    if (redis_port) redis().port = *redis_port;
    if (redis_socket) redis().unix_socket = *redis_socket;
    if (redis_db) redis().db = *redis_db;
    if (redis_user) redis().username = *redis_user;
    if (redis_prefix) redis().prefix = *redis_prefix;
    if (redis_flush) {
      const auto d = flag_duration("--redis-flush-interval", *redis_flush);
      if (d.count() % 1'000'000 != 0)
        throw Error("--redis-flush-interval: '" + *redis_flush +
                    "' must be a whole number of milliseconds");
      redis().flush_interval = std::chrono::duration_cast<std::chrono::milliseconds>(d);
    }
    if (cold_start && cfg.writer.redis) cfg.writer.redis->warm_start = false;
    if (no_redis) cfg.writer.redis.reset();
    if (follow || standby) {  // its changes come from Redis only (a standby's: until promoted)
      cfg.writer.follow = true;
      cfg.writer.standby = standby;
      const std::string flag = standby ? "--standby" : "--follow";
      if (cfg.generator.enabled)
        throw Error(flag + ": a follower runs no generator (--no-generate)");
      if (!standby && !cfg.ingest.stream.streams.empty())
        throw Error("--follow: a follower consumes no input stream ([ingest] streams)");
      if (!standby) cfg.ingest.socket = false;
    }
    if (auto ok = validate(cfg.writer); !ok) throw Error(ok.error());  // Redis settings included
    if (!cfg.ingest.stream.streams.empty() && !cfg.writer.redis) {
      throw Error("[ingest] streams (" + cfg.ingest.stream.streams.front() +
                  ") need a Redis server: configure [redis] (or --redis-host / --redis-socket)");
    }
    const auto level = spdlog::level::from_str(cfg.log_level);
    if (level == spdlog::level::off && cfg.log_level != "off") {
      throw Error("log level '" + cfg.log_level +
                  "' is not trace, debug, info, warn, error or off");
    }
    for (const std::string& ns : no_sync_flags) {
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
  };
  DaemonConfig cfg;
  try {
    cfg = build_config();
  } catch (const Error& e) {
    std::fprintf(stderr, "poscache-writer: %s\n", e.what());
    return 2;
  }
  const auto level = spdlog::level::from_str(cfg.log_level);
  if (remove) {  // the segment named by -s, the file or the environment
    try {
      const auto removed = Writer::remove_segment(cfg.writer.segment);
      for (const auto& path : removed) std::printf("removed %s\n", path.c_str());
      if (removed.empty())
        std::printf("segment '%s': no files in /dev/shm\n", cfg.writer.segment.c_str());
      return 0;
    } catch (const Error& e) {
      std::fprintf(stderr, "poscache-writer: --remove: %s\n", e.what());
      return 1;
    }
  }
  if (print_only) {
    std::fputs(print_config(cfg).c_str(), stdout);
    return 0;
  }
  daemon::setup_logging(level);  // stderr, or the journal under systemd (logging.hpp)
  cfg.writer.log = [](LogLevel l, std::string_view msg) {
    static constexpr spdlog::level::level_enum kLevel[] = {
        spdlog::level::debug, spdlog::level::info, spdlog::level::warn, spdlog::level::err};
    spdlog::log(kLevel[static_cast<int>(l)], "{}", msg);
  };
  if (cfg.writer.follow) {
    spdlog::info("redis {}: following prefix '{}' (its positions, then {}:@changes)",
                 redis_endpoint(*cfg.writer.redis), cfg.writer.redis->prefix,
                 cfg.writer.redis->prefix);
  } else if (cfg.writer.redis) {
    spdlog::info("redis {}: prefix '{}', flush every {} ms, {} start",
                 redis_endpoint(*cfg.writer.redis), cfg.writer.redis->prefix,
                 cfg.writer.redis->flush_interval.count(),
                 cfg.writer.redis->warm_start ? "warm" : "cold");
  } else {
    spdlog::info("redis: off (positions live only in shared memory)");
  }

  // Before open(): a SIGTERM during a re-attach or a warm start ends the daemon cleanly once the
  // segment is consistent and ready, instead of killing it half way.
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_hangup);  // a reload, handled in the loop (never the default: exit)
  std::unique_ptr<Writer> writer;
  try {
    writer = Writer::open(cfg.writer);
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  const WriterStats st0 = writer->stats();
  spdlog::info("segment '{}' {} (generation {:#x}): capacity {}, {} positions, mode {:o}",
               cfg.writer.segment, st0.reattached ? "re-attached" : "created", st0.generation,
               st0.capacity, st0.live, cfg.writer.mode);
  if (st0.repairs > 0)
    spdlog::warn("repaired {} slot(s) a previous writer left mid-write", st0.repairs);
  for (const auto& n : cfg.writer.namespaces) spdlog::info("namespace {}", namespace_summary(n));

  // Ingest: the fill de-duplication window beside the segment, the executor every source's
  // commands go through, and the sources themselves. A follower has none; a standby opens them
  // once it is the writer.
  std::unique_ptr<ingest::TradeWindow> window;
  std::vector<std::unique_ptr<ingest::Source>> sources;
  std::optional<ingest::CommandExecutor> executor;
  ingest::Source* rings_source = nullptr;
  ingest::SocketSource* socket_source = nullptr;
  refresh::RefreshBroker* broker = nullptr;
  auto open_ingest = [&]() -> bool {
    try {
      window = daemon::open_trade_window(*writer, cfg, st0.generation);
      std::vector<std::unique_ptr<ingest::Source>> opened;
      if (cfg.ingest.socket) {
        ingest::SocketConfig sc = cfg.ingest.socket_config;
        if (sc.path.empty()) sc.path = ingest::default_socket_path(cfg.writer.segment);
        auto sock =
            std::make_unique<ingest::SocketSource>(sc, cfg.writer.namespaces, cfg.writer.log);
        if (cfg.ingest.rings) {  // rings first in the loop: the low-latency path
          auto rings = std::make_unique<ingest::RingSource>(*writer, cfg.writer.log);
          sock->set_rings(rings.get());
          rings_source = rings.get();
          opened.push_back(std::move(rings));
          spdlog::info("producer rings: handed over {} (up to {})", sc.path,
                       ingest::RingSource::kMaxRings);
        }
        spdlog::info("ingest socket {} (mode {:o}{}): JSON lines", sc.path, sc.effective_mode(),
                     sc.group.empty() ? std::string() : ", group " + sc.group);
        socket_source = sock.get();
        opened.push_back(std::move(sock));
      }
      if (!cfg.ingest.stream.streams.empty()) {
        auto streams = std::make_unique<ingest::StreamSource>(
            cfg.ingest.stream, *cfg.writer.redis, cfg.writer.namespaces, cfg.writer.segment,
            st0.generation, cfg.writer.log);
        spdlog::info("{}: consumer '{}', refused entries copied to <stream>:rejected",
                     streams->name(), cfg.ingest.stream.consumer);
        opened.push_back(std::move(streams));
      }
      sources.insert(sources.begin(), std::make_move_iterator(opened.begin()),
                     std::make_move_iterator(opened.end()));
    } catch (const Error& e) {
      spdlog::error("{}", e.what());
      return false;
    }
    executor.emplace(*writer, window.get());
    try {  // read-through: after the executor, whose removals it watches
      if (auto b =
              open_refresh(*writer, cfg, socket_source, *executor, writer->stats().live == 0)) {
        broker = b.get();
        sources.push_back(std::move(b));
      }
    } catch (const Error& e) {
      spdlog::error("{}", e.what());
      return false;
    }
    return true;
  };
  if (!cfg.writer.follow && !open_ingest()) {
    writer->close();
    return 1;
  }
  if (cfg.writer.follow) executor.emplace(*writer, nullptr);  // (its sources: none yet)
  if (cfg.generator.enabled) {
    sources.push_back(std::make_unique<SyntheticGenerator>(cfg.generator, *writer));
    spdlog::info("generator: {:.0f} updates/s over {} accounts x {} instruments",
                 cfg.generator.rate, cfg.generator.accounts, cfg.generator.instruments);
  }

  // HTTP (off unless [http] listen / --http): its threads read the segment through a read-only
  // Reader of their own, the loop's counters through the board, and hand invalidations to the
  // loop through the admin queue (polled as a source).
  http::LoopBoard board;
  std::optional<Reader> http_reader;
  http::AdminQueue* admin = nullptr;
  std::unique_ptr<http::Server> server;
  if (!cfg.http.listen.empty()) {
    try {
      http::ApiConfig ac;
      ac.max_sync_lag = cfg.http.max_sync_lag;
      if (!cfg.http.admin_token_file.empty() && cfg.writer.follow) {
        spdlog::warn(
            "http: admin off in a follower (its positions change only through the "
            "writer it follows); admin_token_file {} unused",
            cfg.http.admin_token_file);
      } else if (!cfg.http.admin_token_file.empty()) {
        ac.admin_token = http::read_admin_token(cfg.http.admin_token_file);
      }
      auto queue = std::make_unique<http::AdminQueue>();
      admin = queue.get();
      sources.push_back(std::move(queue));
      ReaderOptions ro;
      ro.statistics = false;  // the API's reads are not a reader process's to count
      http_reader.emplace(Reader::open(cfg.writer.segment, ro));
      auto log = [](bool warn, const std::string& msg) {
        spdlog::log(warn ? spdlog::level::warn : spdlog::level::info, "{}", msg);
      };
      auto api =
          std::make_unique<http::Api>(*http_reader, cfg.writer.namespaces, ac, &board, admin, log);
      http::ServerConfig sc;
      sc.listen = cfg.http.listen;
      sc.threads = cfg.http.threads;
      server = std::make_unique<http::Server>(sc, std::move(api), log);
      const std::string host = cfg.http.listen.substr(0, cfg.http.listen.rfind(':'));
      spdlog::info("http: listening on {}:{} (GET /metrics /health /v1/...; admin {})", host,
                   server->port(),
                   ac.admin_token.empty() ? "off: no admin_token_file"
                                          : "on, token from " + cfg.http.admin_token_file);
    } catch (const Error& e) {
      spdlog::error("{}", e.what());
      sources.clear();
      writer->close();
      return 1;
    }
  }
  detail::TscClock loop_clock;  // times each poll for the apply-time histogram
  http::ApplyHistogram apply_hist;
  auto timed_poll = [&](ingest::Source& src, std::int64_t now, std::size_t budget) {
    const std::int64_t t0 = loop_clock.now();
    const std::size_t n = src.poll(*executor, now, budget);
    if (n > 0) apply_hist.observe((loop_clock.now() - t0) / static_cast<std::int64_t>(n), n);
    return n;
  };
  std::int64_t next_publish = 0;
  auto publish = [&](std::int64_t now) {
    board.try_publish([&](http::LoopSnapshot& snap) {
      snap.sources.resize(sources.size());
      for (std::size_t i = 0; i < sources.size(); ++i) {
        if (snap.sources[i].name.empty()) snap.sources[i].name = sources[i]->name();
        snap.sources[i].counters = sources[i]->counters();
      }
      snap.executor = executor->counters();
      snap.apply = apply_hist;
      snap.redis_on = writer->mirrors_to_redis();
      snap.redis = writer->redis_sync_metrics();
      snap.published_at_ns = now;
    });
  };

  // Under systemd (Type=notify): ready once every source is up; the watchdog is fed from the
  // apply loop, so a loop that stops turning is restarted. Without NOTIFY_SOCKET these do nothing.
  sd_notifyf(0, "READY=1\nSTATUS=serving segment %s (%llu positions)\nMAINPID=%d",
             cfg.writer.segment.c_str(), static_cast<unsigned long long>(st0.live),
             static_cast<int>(::getpid()));
  std::uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  const std::int64_t watchdog_every = static_cast<std::int64_t>(watchdog_usec) * 1000 / 3;
  std::int64_t next_watchdog = 0;
  if (watchdog) spdlog::info("systemd watchdog: fed every {} ms", watchdog_every / 1'000'000);

  // SIGHUP: the settings are built again (file, environment, flags); the log level, the stats
  // interval and the Redis password apply at once, anything else is named and left for the next
  // start.
  auto reload = [&] {
    DaemonConfig next;
    try {
      next = build_config();
    } catch (const Error& e) {
      spdlog::error("reload (SIGHUP): {}; nothing changed", e.what());
      return;
    }
    const auto was = settings_of(print_config(cfg)), now = settings_of(print_config(next));
    std::vector<std::string> applied, ignored;
    for (const auto& [key, value] : now) {
      auto it = was.find(key);
      if (it != was.end() && it->second == value) continue;
      if (key == "daemon.log_level") {
        spdlog::set_level(spdlog::level::from_str(next.log_level));
        cfg.log_level = next.log_level;
        applied.push_back(key + " = " + value);
      } else if (key == "daemon.stats_interval") {
        cfg.stats_interval = next.stats_interval;
        applied.push_back(key + " = " + value);
      } else {
        ignored.push_back(key + (it == was.end() ? "" : " (" + it->second + " -> " + value + ")"));
      }
    }
    for (const auto& [key, value] : was)
      if (now.find(key) == now.end()) ignored.push_back(key + " (removed)");
    const std::string old_pw = cfg.writer.redis ? cfg.writer.redis->password : std::string();
    const std::string new_pw = next.writer.redis ? next.writer.redis->password : std::string();
    if (old_pw != new_pw && cfg.writer.redis && next.writer.redis) {
      writer->set_redis_password(new_pw);
      cfg.writer.redis->password = new_pw;
      applied.push_back("redis.password (from the next connection)");
    }
    auto joined = [](const std::vector<std::string>& v) {
      std::string out;
      for (const auto& x : v) out += (out.empty() ? "" : "; ") + x;
      return out;
    };
    spdlog::info("reload (SIGHUP): applied: {}", applied.empty() ? "nothing" : joined(applied));
    if (!ignored.empty())
      spdlog::warn("reload (SIGHUP): ignored until the next start: {}", joined(ignored));
  };

  // Idle: wake at once for socket input (a refresher's answer) and readers' get_or_fetch().
  IdleWait idle;
  if (socket_source != nullptr) idle.watch(socket_source->epoll_fd());
  if (broker != nullptr) idle.watch(broker->wake_fd());
  const std::int64_t start = shm::monotonic_ns();
  std::int64_t next_stats = start + cfg.stats_interval.count();
  WriterStats last = st0;
  std::int64_t last_t = start;
  constexpr std::size_t kBudget = 256;  // changes per source per round: bounds tick() latency
  // Busy-polling (--busy-poll): the rings (sources_[0] when on) are polled every turn and the
  // loop never sleeps: a producer's push is applied within about a microsecond, at the price of
  // a core. The other sources (a system call each) and tick() then run every 100 us. Without
  // it, an idle loop sleeps 50 us between rounds.
  const bool busy = cfg.ingest.busy_poll;
  std::int64_t next_slow = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    const std::int64_t now_mono = shm::monotonic_ns();
    const std::int64_t now = shm::realtime_ns();
    std::size_t applied = 0;
    const bool answers_due = broker != nullptr && broker->expecting_answers(now_mono);
    if (busy && now_mono < next_slow) {
      if (rings_source != nullptr) applied += timed_poll(*rings_source, now, kBudget);
      if (broker != nullptr) applied += timed_poll(*broker, now, kBudget);  // readers' asks
      if (answers_due && socket_source != nullptr) timed_poll(*socket_source, now, kBudget);
      continue;
    }
    next_slow = now_mono + 100'000;
    for (auto& s : sources) applied += timed_poll(*s, now, kBudget);
    // A follower waits in Redis for the next change (at most 5 ms: the heartbeat goes on). A
    // standby that took the lease is the writer from here on: its ingest opens.
    if (writer->following()) {
      applied += writer->follow(std::chrono::milliseconds(5));
      if (!writer->following()) {
        spdlog::warn(
            "standby: promoted: this process writes segment '{}' and Redis prefix '{}' "
            "now (lease epoch {})",
            cfg.writer.segment, cfg.writer.redis->prefix, writer->stats().redis_lease_epoch);
        if (!open_ingest()) break;
        sd_notifyf(0, "STATUS=writer of segment %s (promoted from standby)",
                   cfg.writer.segment.c_str());
      }
    }
    writer->tick();
    if (server && now_mono >= next_publish) {  // for /metrics: a copy every 50 ms
      publish(now);
      next_publish = now_mono + 50'000'000;
    }
    if (watchdog && now_mono >= next_watchdog) {
      sd_notify(0, "WATCHDOG=1");
      next_watchdog = now_mono + watchdog_every;
    }
    if (g_reload.exchange(false, std::memory_order_relaxed)) reload();
    if (cfg.run_for.count() > 0 && now_mono - start >= cfg.run_for.count()) break;
    if (now_mono >= next_stats) {
      const WriterStats st = writer->stats();
      const double secs = static_cast<double>(now_mono - last_t) / 1e9;
      daemon::log_stats(st, last, secs, writer->following(), cfg.writer.redis.has_value(), sources);
      last = st;
      last_t = now_mono;
      next_stats = now_mono + cfg.stats_interval.count();
    }
    if (applied == 0 && !busy && !answers_due) idle.wait(std::chrono::microseconds(50));
  }
  sd_notify(0, "STOPPING=1");
  if (admin != nullptr) admin->shut_down();  // a waiting invalidation answers 503 at once
  server.reset();                            // no handler runs past here
  sources.clear();                           // the socket file goes before the segment closes
  writer->close();
  spdlog::info("closed segment '{}' cleanly", cfg.writer.segment);
  return 0;
}
