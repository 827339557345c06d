// poscache-writer: parses its command line (writer/daemon/flags.hpp) and runs the Daemon that
// owns the segment (writer/daemon/daemon.hpp).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>

#include "poscache/version.h"
#include "poscache/writer.hpp"
#include "writer/daemon/daemon.hpp"
#include "writer/daemon/flags.hpp"
#include "writer/daemon/logging.hpp"

using namespace poscache;
using namespace poscache::daemon;

namespace {

// Static storage: a signal that comes while the Daemon is destroyed touches nothing freed.
Daemon::Requests g_requests;
void on_signal(int) {
  g_requests.stop.store(true, std::memory_order_relaxed);
}
void on_hangup(int) {
  g_requests.reload.store(true, std::memory_order_relaxed);
}

// --remove: the segment named by -s, the file or the environment.
int remove_segment(const std::string& segment) {
  try {
    const auto removed = Writer::remove_segment(segment);
    for (const auto& path : removed) std::printf("removed %s\n", path.c_str());
    if (removed.empty()) std::printf("segment '%s': no files in /dev/shm\n", segment.c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "poscache-writer: --remove: %s\n", e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "poscache-writer: owns a poscache shared-memory segment and applies position updates"};
  app.set_version_flag("--version", "poscache-writer " POSCACHE_VERSION);
  Flags flags;
  add_flags(app, flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; any usage error: 2, like a bad config value
  }
  DaemonConfig cfg;
  try {
    cfg = build_config(flags);
  } catch (const Error& e) {
    std::fprintf(stderr, "poscache-writer: %s\n", e.what());
    return 2;
  }
  if (flags.remove) return remove_segment(cfg.writer.segment);
  if (flags.print_only) {
    std::fputs(print_config(cfg).c_str(), stdout);
    return 0;
  }
  daemon::setup_logging(spdlog::level::from_str(cfg.log_level));  // stderr, or the journal
  Daemon daemon(
      std::move(cfg), [&flags] { return build_config(flags); }, g_requests);
  // Before open(): a SIGTERM during a re-attach or a warm start ends the daemon cleanly once the
  // segment is consistent and ready, instead of killing it half way.
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_hangup);  // a reload, handled in the loop (never the default: exit)
  if (!daemon.open()) return 1;
  daemon.run();
  daemon.stop();
  return 0;
}
