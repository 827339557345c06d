#include "writer/daemon/daemon.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <utility>

#include "shm/clock.hpp"
#include "writer/daemon/generator.hpp"
#include "writer/daemon/refresh_setup.hpp"
#include "writer/daemon/stats_log.hpp"
#include "writer/daemon/trades.hpp"

namespace poscache::daemon {

Daemon::Daemon(DaemonConfig cfg, std::function<DaemonConfig()> rebuild, Requests& requests)
    : cfg_(std::move(cfg)), rebuild_(std::move(rebuild)), requests_(requests) {
  cfg_.writer.log = [](LogLevel l, std::string_view msg) {
    static constexpr spdlog::level::level_enum kLevel[] = {
        spdlog::level::debug, spdlog::level::info, spdlog::level::warn, spdlog::level::err};
    spdlog::log(kLevel[static_cast<int>(l)], "{}", msg);
  };
  if (cfg_.writer.follow) {
    spdlog::info("redis {}: following prefix '{}' (its positions, then {}:@changes)",
                 redis_endpoint(*cfg_.writer.redis), cfg_.writer.redis->prefix,
                 cfg_.writer.redis->prefix);
  } else if (cfg_.writer.redis) {
    spdlog::info("redis {}: prefix '{}', flush every {} ms, {} start",
                 redis_endpoint(*cfg_.writer.redis), cfg_.writer.redis->prefix,
                 cfg_.writer.redis->flush_interval.count(),
                 cfg_.writer.redis->warm_start ? "warm" : "cold");
  } else {
    spdlog::info("redis: off (positions live only in shared memory)");
  }
}

Daemon::~Daemon() = default;

bool Daemon::open() {
  if (!open_segment()) return false;
  if (!cfg_.writer.follow && !open_ingest()) {
    writer_->close();
    return false;
  }
  if (cfg_.writer.follow) executor_.emplace(*writer_, nullptr);  // (its sources: none yet)
  open_generator();
  if (!open_http()) {
    sources_.clear();
    writer_->close();
    return false;
  }
  loop_clock_.emplace();
  notify_ready();
  return true;
}

bool Daemon::open_segment() {
  try {
    writer_ = Writer::open(cfg_.writer);
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return false;
  }
  opened_ = writer_->stats();
  spdlog::info("segment '{}' {} (generation {:#x}): capacity {}, {} positions, mode {:o}",
               cfg_.writer.segment, opened_.reattached ? "re-attached" : "created",
               opened_.generation, opened_.capacity, opened_.live, cfg_.writer.mode);
  if (opened_.repairs > 0)
    spdlog::warn("repaired {} slot(s) a previous writer left mid-write", opened_.repairs);
  for (const auto& n : cfg_.writer.namespaces) spdlog::info("namespace {}", namespace_summary(n));
  return true;
}

bool Daemon::open_ingest() {
  try {
    window_ = daemon::open_trade_window(*writer_, cfg_, opened_.generation);
    std::vector<std::unique_ptr<ingest::Source>> opened;
    if (cfg_.ingest.socket) {
      ingest::SocketConfig sc = cfg_.ingest.socket_config;
      if (sc.path.empty()) sc.path = ingest::default_socket_path(cfg_.writer.segment);
      auto sock =
          std::make_unique<ingest::SocketSource>(sc, cfg_.writer.namespaces, cfg_.writer.log);
      if (cfg_.ingest.rings) {  // rings first in the loop: the low-latency path
        auto rings = std::make_unique<ingest::RingSource>(*writer_, cfg_.writer.log);
        sock->set_rings(rings.get());
        rings_ = rings.get();
        opened.push_back(std::move(rings));
        spdlog::info("producer rings: handed over {} (up to {})", sc.path,
                     ingest::RingSource::kMaxRings);
      }
      spdlog::info("ingest socket {} (mode {:o}{}): JSON lines", sc.path, sc.effective_mode(),
                   sc.group.empty() ? std::string() : ", group " + sc.group);
      socket_ = sock.get();
      opened.push_back(std::move(sock));
    }
    if (!cfg_.ingest.stream.streams.empty()) {
      auto streams = std::make_unique<ingest::StreamSource>(
          cfg_.ingest.stream, *cfg_.writer.redis, cfg_.writer.namespaces, cfg_.writer.segment,
          opened_.generation, cfg_.writer.log);
      spdlog::info("{}: consumer '{}', refused entries copied to <stream>:rejected",
                   streams->name(), cfg_.ingest.stream.consumer);
      opened.push_back(std::move(streams));
    }
    sources_.insert(sources_.begin(), std::make_move_iterator(opened.begin()),
                    std::make_move_iterator(opened.end()));
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return false;
  }
  executor_.emplace(*writer_, window_.get());
  try {  // read-through: after the executor, whose removals it watches
    if (auto b = open_refresh(*writer_, cfg_, socket_, *executor_, writer_->stats().live == 0)) {
      broker_ = b.get();
      sources_.push_back(std::move(b));
    }
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return false;
  }
  return true;
}

void Daemon::open_generator() {
  if (!cfg_.generator.enabled) return;
  sources_.push_back(std::make_unique<SyntheticGenerator>(cfg_.generator, *writer_));
  spdlog::info("generator: {:.0f} updates/s over {} accounts x {} instruments", cfg_.generator.rate,
               cfg_.generator.accounts, cfg_.generator.instruments);
}

bool Daemon::open_http() {
  if (cfg_.http.listen.empty()) return true;
  try {
    http::ApiConfig ac;
    ac.max_sync_lag = cfg_.http.max_sync_lag;
    ac.auth.max_failures = cfg_.http.admin_max_failures;
    ac.auth.window =
        std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.http.admin_failure_window);
    if (!cfg_.http.admin_token_file.empty() && cfg_.writer.follow) {
      spdlog::warn(
          "http: admin off in a follower (its positions change only through the "
          "writer it follows); admin_token_file {} unused",
          cfg_.http.admin_token_file);
    } else if (!cfg_.http.admin_token_file.empty()) {
      ac.admin_token = http::read_admin_token(cfg_.http.admin_token_file);
    }
    auto queue = std::make_unique<http::AdminQueue>();
    admin_ = queue.get();
    sources_.push_back(std::move(queue));
    ReaderOptions ro;
    ro.statistics = false;  // the API's reads are not a reader process's to count
    http_reader_.emplace(Reader::open(cfg_.writer.segment, ro));
    auto log = [](bool warn, const std::string& msg) {
      spdlog::log(warn ? spdlog::level::warn : spdlog::level::info, "{}", msg);
    };
    auto api = std::make_unique<http::Api>(*http_reader_, cfg_.writer.namespaces, ac, &board_,
                                           admin_, log);
    http::ServerConfig sc;
    sc.listen = cfg_.http.listen;
    sc.threads = cfg_.http.threads;
    sc.limits.request_timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.http.request_timeout);
    sc.limits.max_connections = static_cast<std::size_t>(cfg_.http.max_connections);
    sc.limits.max_per_peer = static_cast<std::size_t>(cfg_.http.max_connections_per_peer);
    server_ = std::make_unique<http::Server>(sc, std::move(api), log);
    const std::string host = cfg_.http.listen.substr(0, cfg_.http.listen.rfind(':'));
    spdlog::info(
        "http: listening on {}:{} (GET /metrics /health /v1/...; {} connections, {} per "
        "peer; admin {})",
        host, server_->port(), server_->max_connections(), sc.limits.max_per_peer,
        ac.admin_token.empty() ? "off: no admin_token_file"
                               : "on, token from " + cfg_.http.admin_token_file);
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return false;
  }
  return true;
}

// Under systemd (Type=notify): ready once every source is up; the watchdog is fed from the apply
// loop, so a loop that stops turning is restarted. Without NOTIFY_SOCKET these do nothing.
void Daemon::notify_ready() {
  sd_notifyf(0, "READY=1\nSTATUS=serving segment %s (%llu positions)\nMAINPID=%d",
             cfg_.writer.segment.c_str(), static_cast<unsigned long long>(opened_.live),
             static_cast<int>(::getpid()));
  std::uint64_t watchdog_usec = 0;
  watchdog_ = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  watchdog_every_ = static_cast<std::int64_t>(watchdog_usec) * 1000 / 3;
  if (watchdog_) spdlog::info("systemd watchdog: fed every {} ms", watchdog_every_ / 1'000'000);
}

std::size_t Daemon::timed_poll(ingest::Source& src, std::int64_t now, std::size_t budget) {
  const std::int64_t t0 = loop_clock_->now();
  const std::size_t n = src.poll(*executor_, now, budget);
  if (n > 0) apply_hist_.observe((loop_clock_->now() - t0) / static_cast<std::int64_t>(n), n);
  return n;
}

void Daemon::publish(std::int64_t now) {
  board_.try_publish([&](http::LoopSnapshot& snap) {
    snap.sources.resize(sources_.size());
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      if (snap.sources[i].name.empty()) snap.sources[i].name = sources_[i]->name();
      snap.sources[i].counters = sources_[i]->counters();
    }
    snap.executor = executor_->counters();
    snap.apply = apply_hist_;
    snap.redis_on = writer_->mirrors_to_redis();
    snap.redis = writer_->redis_sync_metrics();
    snap.published_at_ns = now;
  });
}

void Daemon::run() {
  // Idle: wake at once for socket input (a refresher's answer) and readers' get_or_fetch().
  IdleWait idle;
  if (socket_ != nullptr) idle.watch(socket_->epoll_fd());
  if (broker_ != nullptr) idle.watch(broker_->wake_fd());
  const std::int64_t start = shm::monotonic_ns();
  next_stats_ = start + cfg_.stats_interval.count();
  last_stats_ = opened_;
  last_stats_at_ = start;
  constexpr std::size_t kBudget = 256;  // changes per source per round: bounds tick() latency
  // Busy-polling (--busy-poll): the rings (sources_[0] when on) are polled every turn and the
  // loop never sleeps: a producer's push is applied within about a microsecond, at the price of
  // a core. The other sources (a system call each) and tick() then run every 100 us. Without
  // it, an idle loop sleeps 50 us between rounds.
  const bool busy = cfg_.ingest.busy_poll;
  std::int64_t next_slow = 0;
  while (!requests_.stop.load(std::memory_order_relaxed)) {
    const std::int64_t now_mono = shm::monotonic_ns();
    const std::int64_t now = shm::realtime_ns();
    std::size_t applied = 0;
    const bool answers_due = broker_ != nullptr && broker_->expecting_answers(now_mono);
    if (busy && now_mono < next_slow) {
      if (rings_ != nullptr) applied += timed_poll(*rings_, now, kBudget);
      if (broker_ != nullptr) applied += timed_poll(*broker_, now, kBudget);  // readers' asks
      if (answers_due && socket_ != nullptr) timed_poll(*socket_, now, kBudget);
      continue;
    }
    next_slow = now_mono + 100'000;
    for (auto& s : sources_) applied += timed_poll(*s, now, kBudget);
    // A follower waits in Redis for the next change (at most 5 ms: the heartbeat goes on). A
    // standby that took the lease is the writer from here on: its ingest opens.
    if (writer_->following()) {
      applied += writer_->follow(std::chrono::milliseconds(5));
      if (!writer_->following()) {
        spdlog::warn(
            "standby: promoted: this process writes segment '{}' and Redis prefix '{}' "
            "now (lease epoch {})",
            cfg_.writer.segment, cfg_.writer.redis->prefix, writer_->stats().redis_lease_epoch);
        if (!open_ingest()) break;
        sd_notifyf(0, "STATUS=writer of segment %s (promoted from standby)",
                   cfg_.writer.segment.c_str());
      }
    }
    writer_->tick();
    if (server_ && now_mono >= next_publish_) {  // for /metrics: a copy every 50 ms
      publish(now);
      next_publish_ = now_mono + 50'000'000;
    }
    if (watchdog_ && now_mono >= next_watchdog_) {
      sd_notify(0, "WATCHDOG=1");
      next_watchdog_ = now_mono + watchdog_every_;
    }
    if (requests_.reload.exchange(false, std::memory_order_relaxed)) reload();
    if (cfg_.run_for.count() > 0 && now_mono - start >= cfg_.run_for.count()) break;
    log_stats_if_due(now_mono);
    if (applied == 0 && !busy && !answers_due) idle.wait(std::chrono::microseconds(50));
  }
}

void Daemon::log_stats_if_due(std::int64_t now_mono) {
  if (now_mono < next_stats_) return;
  const WriterStats st = writer_->stats();
  const double secs = static_cast<double>(now_mono - last_stats_at_) / 1e9;
  daemon::log_stats(st, last_stats_, secs, writer_->following(), cfg_.writer.redis.has_value(),
                    sources_);
  last_stats_ = st;
  last_stats_at_ = now_mono;
  next_stats_ = now_mono + cfg_.stats_interval.count();
}

// SIGHUP: the settings are built again (file, environment, flags); the log level, the stats
// interval and the Redis password apply at once, anything else is named and left for the next
// start.
void Daemon::reload() {
  DaemonConfig next;
  try {
    next = rebuild_();
  } catch (const Error& e) {
    spdlog::error("reload (SIGHUP): {}; nothing changed", e.what());
    return;
  }
  const auto was = settings_of(print_config(cfg_)), now = settings_of(print_config(next));
  std::vector<std::string> applied, ignored;
  for (const auto& [key, value] : now) {
    auto it = was.find(key);
    if (it != was.end() && it->second == value) continue;
    if (key == "daemon.log_level") {
      spdlog::set_level(spdlog::level::from_str(next.log_level));
      cfg_.log_level = next.log_level;
      applied.push_back(key + " = " + value);
    } else if (key == "daemon.stats_interval") {
      cfg_.stats_interval = next.stats_interval;
      applied.push_back(key + " = " + value);
    } else {
      ignored.push_back(key + (it == was.end() ? "" : " (" + it->second + " -> " + value + ")"));
    }
  }
  for (const auto& [key, value] : was)
    if (now.find(key) == now.end()) ignored.push_back(key + " (removed)");
  const std::string old_pw = cfg_.writer.redis ? cfg_.writer.redis->password : std::string();
  const std::string new_pw = next.writer.redis ? next.writer.redis->password : std::string();
  if (old_pw != new_pw && cfg_.writer.redis && next.writer.redis) {
    writer_->set_redis_password(new_pw);
    cfg_.writer.redis->password = new_pw;
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
}

void Daemon::stop() {
  sd_notify(0, "STOPPING=1");
  if (admin_ != nullptr) admin_->shut_down();  // a waiting invalidation answers 503 at once
  server_.reset();                             // no handler runs past here
  sources_.clear();                            // the socket file goes before the segment closes
  rings_ = nullptr;                            // (they were in sources_)
  socket_ = nullptr;
  broker_ = nullptr;
  admin_ = nullptr;
  writer_->close();
  spdlog::info("closed segment '{}' cleanly", cfg_.writer.segment);
}

}  // namespace poscache::daemon
