// poscache — how a Writer is configured and where it logs: the vocabulary every part of the
// writer library shares (the facade, poscache/writer.hpp, includes it).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "poscache/error.hpp"
#include "poscache/redis.hpp"
#include "poscache/schema.hpp"

namespace poscache {

enum class LogLevel : std::uint8_t { debug, info, warn, error };
// Where the writer library reports what an operator should see (Redis connected or lost, warm
// start progress). Called from the opening thread and from the sync thread. Default: stderr.
using LogSink = std::function<void(LogLevel, std::string_view)>;

struct WriterConfig {
  std::string segment = "poscache";
  std::uint64_t capacity = 1 << 20;
  std::vector<NamespaceSpec> namespaces;
  mode_t mode = 0640;  // who may map it: by default only the writer's user writes, its group reads
  // An existing segment whose capacity or namespaces differ from this config is refused unless
  // `recreate_on_mismatch`; `fresh` re-creates even a compatible one (a new generation).
  bool recreate_on_mismatch = false;
  bool fresh = false;
  // Turn a newly created segment's pages into 2 MiB pages (MADV_COLLAPSE, Linux 6.1+), whatever
  // /dev/shm's mount option: with 4 KiB pages nearly every random access to a large table also
  // misses the TLB. Readers map it 2 MiB-aligned and share the huge pages. If the kernel refuses,
  // the segment stays on 4 KiB pages and the writer logs why.
  bool huge_pages = true;
  std::chrono::nanoseconds heartbeat_interval = std::chrono::milliseconds(10);
  // Readers blocked in wait_for_change() are woken at most this often (a system call per wake).
  std::chrono::nanoseconds wake_interval = std::chrono::microseconds(100);
  // How many expired positions one tick() removes at most (keeps the apply loop responsive).
  std::size_t expire_budget = 4096;
  // Record every change in the segment's change ring (shm/change_ring.hpp), which readers follow
  // with Reader::changes(). Off saves the writer about two cache lines of stores per change;
  // readers' changes() then answers `unavailable`.
  bool change_ring = true;
  // Mirror the segment to Redis (write-behind, on a thread of its own) and warm start from it.
  std::optional<RedisConfig> redis;
  // A follower (poscache-writer --follow): the segment is kept from `redis` (its prefix's
  // positions, then its change stream) as another writer, the lease holder, changes them; this
  // one takes no lease and writes nothing to Redis. Call follow() in the apply loop; its own
  // changes (upsert, erase, invalidate, apply) are refused with an Error. Needs `redis`.
  bool follow = false;
  // A standby (poscache-writer --standby): a follower that becomes the writer when the lease is
  // free (its holder's lease expired, or its holder was a process of this host that is gone).
  // follow() applies everything the stream holds, takes the lease with a fresh epoch and starts
  // the Redis sync: following() turns false and the writer's own changes are allowed. Of
  // several standbys exactly one takes it; the others go on following it. Implies `follow`.
  bool standby = false;
  // A follower calls it with the lag of each position it applies (its apply time here minus the
  // writer's, CLOCK_REALTIME): for benchmarks and tests. Called from the thread in follow().
  std::function<void(std::int64_t lag_ns)> on_follow;
  // Where the writer logs (stderr if unset). Called from the applying thread and, with Redis,
  // from the sync thread: it must be thread-safe (spdlog's loggers are).
  LogSink log;
};

// Checks a WriterConfig without touching any segment (what Writer::open checks first); errors
// name the setting and the value.
Expected<bool> validate(const WriterConfig& config);

}  // namespace poscache
