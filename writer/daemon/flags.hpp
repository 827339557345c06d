// poscache-writer's command line (docs/cli.md): its flags, and the settings they make over the
// config file and the environment. Kept apart from the Daemon so that a reload (SIGHUP) builds
// the settings again from the same flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "writer/daemon/config.hpp"

namespace CLI {
class App;
}

namespace poscache::daemon {

// What the command line said; unset optionals leave the file's or the environment's value.
struct Flags {
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
  bool remove = false;
};

// Declares every flag on `app`, bound to `into` (which must outlive the parse).
void add_flags(CLI::App& app, Flags& into);

// The effective settings: defaults, then the file, then the environment, then the flags, checked
// together. Throws poscache::Error naming the flag, key or variable and the value.
DaemonConfig build_config(const Flags& flags);

}  // namespace poscache::daemon
