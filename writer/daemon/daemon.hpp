// poscache-writer's program: the Daemon owns one segment and everything that feeds or serves it.
// open() creates (or re-attaches to) the segment, then opens the ingest sources, the synthetic
// generator and HTTP; run() is the apply loop: poll every source, tick (heartbeat, expiry, wake
// readers), repeat, until asked to stop; stop() closes them in order, the segment last.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "writer/daemon/config.hpp"
#include "writer/http/server.hpp"
#include "writer/ingest/executor.hpp"
#include "writer/ingest/socket_source.hpp"
#include "writer/ingest/source.hpp"
#include "writer/ingest/trade_window.hpp"
#include "writer/refresh/broker.hpp"
#include "writer/tsc_clock.hpp"

namespace poscache::daemon {

class Daemon {
 public:
  // What asks the loop to stop (SIGINT, SIGTERM) or to reload (SIGHUP): set by signal handlers,
  // so lock-free, and kept by the caller in static storage: a signal may still come while the
  // Daemon is destroyed. The loop reads both each turn; a stop asked before run() (during a
  // re-attach or a warm start) makes run() return at once.
  struct Requests {
    std::atomic<bool> stop{false}, reload{false};
    static_assert(std::atomic<bool>::is_always_lock_free, "set from signal handlers");
  };

  // `rebuild` builds the settings again (file, environment, flags) for a reload. The writer's
  // log goes to spdlog; what Redis is for is logged.
  Daemon(DaemonConfig cfg, std::function<DaemonConfig()> rebuild, Requests& requests);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // The segment, then (unless a follower) the ingest sources, the generator and HTTP; then
  // systemd is told the daemon is ready. False if any failed (logged); the segment is closed.
  bool open();
  // The apply loop, until a stop is asked, --run-for has passed, or a promoted standby's ingest
  // fails to open.
  void run();
  // After run(): HTTP, the sources and the segment closed, in that order.
  void stop();

 private:
  bool open_segment();
  bool open_ingest();
  void open_generator();
  bool open_http();
  void notify_ready();
  void reload();
  void log_stats_if_due(std::int64_t now_mono);
  std::size_t timed_poll(ingest::Source& src, std::int64_t now, std::size_t budget);
  void publish(std::int64_t now);

  // Declared in the order they open: destroyed in reverse, the writer after its sources.
  DaemonConfig cfg_;
  std::function<DaemonConfig()> rebuild_;
  Requests& requests_;
  std::unique_ptr<Writer> writer_;
  WriterStats opened_{};  // the segment as open() found it

  // Ingest: the fill de-duplication window beside the segment, the executor every source's
  // commands go through, and the sources themselves (the rings first when on: the low-latency
  // path). A follower has none; a standby opens them once it is the writer.
  std::unique_ptr<ingest::TradeWindow> window_;
  std::vector<std::unique_ptr<ingest::Source>> sources_;
  std::optional<ingest::CommandExecutor> executor_;
  ingest::Source* rings_ = nullptr;  // these three: in sources_, or null
  ingest::SocketSource* socket_ = nullptr;
  refresh::RefreshBroker* broker_ = nullptr;

  // HTTP (off unless [http] listen / --http): its threads read the segment through a read-only
  // Reader of their own, the loop's counters through the board, and hand invalidations to the
  // loop through the admin queue (polled as a source).
  http::LoopBoard board_;
  std::optional<Reader> http_reader_;
  http::AdminQueue* admin_ = nullptr;  // in sources_, or null
  std::unique_ptr<http::Server> server_;

  // Times each poll for the apply-time histogram; made once the sources are open (its
  // construction measures the TSC for a millisecond).
  std::optional<detail::TscClock> loop_clock_;
  http::ApplyHistogram apply_hist_;
  std::int64_t next_publish_ = 0;
  bool watchdog_ = false;  // systemd's, fed from the loop every watchdog_every_ ns
  std::int64_t watchdog_every_ = 0, next_watchdog_ = 0;
  WriterStats last_stats_{};  // the stats line's previous counters, and when they were taken
  std::int64_t last_stats_at_ = 0, next_stats_ = 0;
};

}  // namespace poscache::daemon
