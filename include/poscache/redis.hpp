// poscache — the Redis side of the writer: where it mirrors the segment, and how.
//
// With WriterConfig::redis set, the writer runs a sync thread that writes every change to Redis
// (coalesced, pipelined, off the apply path) and, on a fresh or empty segment, loads the
// positions Redis holds before the segment turns ready (warm start). The Redis format is a
// contract for other languages; docs/redis-format.md documents it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "poscache/error.hpp"

namespace poscache {

// How the writer keeps a second writer from clobbering what it wrote (docs/redis-format.md,
// writer/redis/lease.hpp):
//   fence   — the writer holds a lease, {prefix}:@writer, with a fresh epoch, and every batch is
//             one transaction fenced on it (WATCH the lease, check the epoch, MULTI, plain
//             commands, EXEC). A writer whose lease another took writes nothing more. One
//             Redis server (or a Sentinel-managed primary); not a Redis Cluster, where a
//             transaction may touch one hash slot only.
//   scripts — no lease; each position is written by a script that compares versions on the
//             server (about half Redis's write rate). For a Redis Cluster proxy, with
//             positions_per_call = 1.
enum class RedisGuard { fence, scripts };

struct RedisConfig {
  // Where: a unix socket when `unix_socket` is set, else host:port.
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string unix_socket;
  int db = 0;
  std::string username;  // ACL user (Redis 6+); empty: the default user
  std::string password;  // empty: no AUTH
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{2000};  // a reply slower than this drops the connection
  // Keys are "{prefix}:{namespace}:{{account}}:{instrument}".
  std::string prefix = "poscache:v1";
  // A change reaches Redis within about flush_interval (plus the round trip), or sooner when
  // batch_size changes are waiting. Commands per pipelined round trip: batch_size.
  std::chrono::milliseconds flush_interval{5};
  std::size_t batch_size = 1024;
  // Positions written by one EVALSHA of the upsert script (fewer, larger calls cost Redis less).
  // The sync talks to one server; behind a Redis Cluster proxy, set 1 (a call then touches the
  // keys of one account, which share a cluster slot).
  std::size_t positions_per_call = 32;
  // Reconnection backoff: doubles from min to max while Redis stays unreachable.
  std::chrono::milliseconds reconnect_min{50};
  std::chrono::milliseconds reconnect_max{2000};
  RedisGuard guard = RedisGuard::fence;
  // fence: the lease lasts this long past its last renewal; the sync thread renews it every
  // lease_ttl / 3 (inside its write transactions while it writes, on its own when idle). A
  // standby or a restarted writer on another host waits at most this long for a dead writer's
  // lease. A writer on the same host whose holder's pid is gone takes it over at once.
  std::chrono::milliseconds lease_ttl{10000};
  // The host name written into the lease (empty: gethostname()), shown to a writer refused it.
  std::string host_name;
  // Redis found without the data it was given (restarted without persistence, flushed, its
  // keys evicted: the lease's epoch counter gone) is refilled from the segment in the
  // background, at most this many positions per second on top of the changes.
  std::size_t refill_rate = 100'000;
  // fence: every transaction also appends its changes, as one entry, to the stream
  // {prefix}:@changes (in the same MULTI), which followers and other services tail
  // (docs/redis-format.md, "The change stream"); entries older than this are trimmed
  // (XADD MINID ~): a follower further behind loads the prefix again. 0: no stream (no
  // followers). 1 s to 24 h.
  std::chrono::milliseconds change_stream_retention{60'000};
  // Namespaces kept in the segment only (sync = none): never written to Redis, nor loaded from
  // it by a warm start (short-lived quotes need no durable copy). The others are mirrored.
  std::vector<std::string> unsynced_namespaces;
  // On a fresh or empty segment, load every position under the prefix before turning ready.
  // false: cold start (the segment starts empty; Redis keeps what it has).
  bool warm_start = true;
  // Pin the sync thread to this CPU (-1: wherever the scheduler puts it). Keep it, and Redis
  // if it runs on this host, off the CPU of the thread that applies updates.
  int sync_cpu = -1;
  // On close(), how long the sync thread may go on writing what is still unsynced.
  std::chrono::milliseconds close_timeout{5000};
};

// Checks a RedisConfig; errors name the setting and the value.
Expected<bool> validate(const RedisConfig& config);

// "host:port", "unix:/path" — for log lines.
std::string redis_endpoint(const RedisConfig& config);

}  // namespace poscache
