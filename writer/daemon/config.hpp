// poscache-writer's configuration: a TOML file, POSCACHE_* environment variables and flags,
// applied in that order (flags win). Every error names the key or flag and the value.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "poscache/error.hpp"
#include "poscache/writer.hpp"
#include "writer/ingest/socket_source.hpp"
#include "writer/ingest/stream_source.hpp"
#include "writer/ingest/trade_window.hpp"
#include "writer/refresh/broker.hpp"

namespace poscache::daemon {

struct GeneratorConfig {
  bool enabled = false;
  double rate = 10'000;  // updates per second
  std::uint32_t accounts = 100;
  std::uint32_t instruments = 20;
  std::uint64_t seed = 1;
};

// How producers reach the daemon ([ingest] in the config file).
struct IngestConfig {
  bool socket = true;                  // the JSON-lines unix socket (on by default)
  bool rings = true;                   // producer rings, handed over the socket (on by default)
  bool busy_poll = false;              // never sleep: rings polled every turn (costs a core)
  ingest::SocketConfig socket_config;  // path ("" = /dev/shm/<segment>.sock), mode, group
  std::uint64_t trade_window = ingest::TradeWindow::kDefaultCapacity;  // fill trade ids kept
  ingest::StreamConfig stream;  // Redis streams consumed (none by default; needs [redis])
};

// The HTTP API ([http]; writer/http/api.hpp): off unless `listen` is set.
struct HttpConfig {
  std::string listen;            // host:port ("" = off); a bare port means 127.0.0.1
  std::string admin_token_file;  // "" = POST /v1/invalidate answers 403
  std::chrono::nanoseconds max_sync_lag = std::chrono::seconds(5);  // /health's Redis rule
  int threads = 2;  // workers, besides the probes' own (writer/http/server.hpp)
  // The front's limits (writer/http/front.hpp): request deadline, connections in all and per peer.
  std::chrono::nanoseconds request_timeout = std::chrono::seconds(3);
  int max_connections = 4096;
  int max_connections_per_peer = 64;
  int admin_max_failures = 5;  // wrong tokens per peer and window before 429 (0: no limit)
  std::chrono::nanoseconds admin_failure_window = std::chrono::seconds(60);
};

struct DaemonConfig {
  WriterConfig writer;
  // Namespaces with sync = "none" ([[namespace]] sync, --no-sync): kept in the segment only;
  // copied into the Redis config (RedisConfig::unsynced_namespaces) when Redis is on.
  std::vector<std::string> unsynced_namespaces;
  // Read-through ([[namespace]] refresh keys, --refresh; docs/read-through.md): the policies of
  // the namespaces that refresh, by name. None: the daemon serves no refresh (no request files).
  std::map<std::string, refresh::RefreshPolicy> refresh;
  GeneratorConfig generator;
  IngestConfig ingest;
  HttpConfig http;
  std::chrono::nanoseconds run_for{0};  // 0 = until SIGINT/SIGTERM
  std::chrono::nanoseconds stats_interval = std::chrono::seconds(5);
  std::string log_level = "info";
};

// "250ms", "1.5s", "2m", "1h", "500us", "0" → nanoseconds (values/duration.hpp: one syntax).
Expected<std::chrono::nanoseconds> parse_duration(std::string_view text);

// Loads a TOML file over `into`. Throws poscache::Error "<file>:<line>:<col>: ..." or naming the
// key.
void load_toml_file(const std::string& path, DaemonConfig& into);
// Parses TOML text (for tests); `origin` names it in errors.
void load_toml(std::string_view text, const std::string& origin, DaemonConfig& into);
// Applies POSCACHE_SEGMENT, POSCACHE_CAPACITY, POSCACHE_MODE, POSCACHE_LOG_LEVEL.
void load_env(DaemonConfig& into);
// systemd credentials ($CREDENTIALS_DIRECTORY: redis-password, admin-token); load_env calls it.
void load_credentials(DaemonConfig& into);
// The effective settings, one `key = value` line each (TOML keys; the password shown only as set
// or not): what `poscache-writer --print-config` prints after the file, the environment and the
// flags were applied.
std::string print_config(const DaemonConfig& config);

// print_config()'s "key = value" lines by key (a reload compares them): each [[namespace]]
// table's keys as "namespace.<name>.key", a field list's lines joined into its value.
std::map<std::string, std::string> settings_of(const std::string& printed);
// One line on a namespace for the log: its fields, stale_after and expire_after.
std::string namespace_summary(const NamespaceSpec& n);

// "ns:on[:timeout[:retries]]", the --refresh flag (on: stale, miss, both, none).
Expected<std::pair<std::string, refresh::RefreshPolicy>> parse_refresh_flag(std::string_view text);

// "name:preset[:stale_after[:expire_after]]", the --namespace flag.
Expected<NamespaceSpec> parse_namespace_flag(std::string_view text);

}  // namespace poscache::daemon
