// How the sync thread's writes are guarded (RedisConfig::guard), chosen once when the SyncWorker
// is built (writer/redis/sync_worker.cpp): behind the writer lease's fence
// (writer/redis/fenced_writes.hpp) or by per-key scripts (writer/redis/script_writes.hpp). The
// worker keeps what both share (the loop, the pending state, the connection and its backoff,
// the header's Redis state, the refill, the metrics, the trade ids) and decides a round's order
// (writer/redis/sync_round.cpp); a strategy writes what it is handed. The protocol:
// writer/redis/redis_sync.hpp.
//
// Each implementation is a part of its worker (a friend: it works on the worker's connection and
// pending state), called on the sync thread only (open_lease and keep_lease: before start(), on
// the caller's) and at most once per batch of keys, never per key.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "writer/net/redis_client.hpp"
#include "writer/pending_changes.hpp"
#include "writer/redis/redis_format.hpp"

namespace poscache::detail {

class SyncStrategy {
 public:
  virtual ~SyncStrategy() = default;

  // ---- at connect (SyncWorker::connect)
  // SCRIPT LOAD of the scripts its writes use (after every connect, and after a NOSCRIPT
  // reply). Returns the error, empty on success.
  virtual std::string load_scripts() = 0;
  // After the server's check: takes the lease (fence) and writes the schema hash.
  enum class Opened {
    up,      // ready to write
    fenced,  // another writer holds the lease: the worker is fenced (SyncWorker::become_fenced)
    failed   // `err` says why; the worker closes the connection and backs off
  };
  virtual Opened open(std::string& err) = 0;
  // The end of the "connected" log line: how the writes are guarded.
  [[nodiscard]] virtual std::string guard_note() const = 0;

  // ---- writes: true when Redis took them all; false keeps them for the next round (a lost
  // connection is already handled: SyncWorker::lost_connection)
  // A run of per-key events (spills and erases, at most batch_size, in version order), each
  // guarded by the version Redis holds for its key.
  virtual bool write_key_events(std::span<const RemovalEvent> events) = 0;
  // Deletes of (key, version of its removal), batch_size per round trip; a key written after
  // its removal survives it.
  using VersionedKeys = std::vector<std::pair<ParsedKey, std::uint64_t>>;
  virtual bool delete_keys(const VersionedKeys& keys) = 0;
  // Every dirty slot's current content (SyncWorker::dirty_), with the trade ids of its fills
  // where they can ride along; acknowledges what Redis took (SlotBook::synced_version).
  virtual bool write_slots() = 0;
  // Commands that need no version guard (orphan trade ids, a pattern removal's change-stream
  // entry), queued by `build`, in a transaction (or a pipeline) of their own.
  virtual bool write_plain(const std::function<void(Commands&)>& build) = 0;

  // ---- around the writes
  // Connected and nothing pending (and before start(), during a long warm start): renews the
  // lease when due.
  virtual void idle() = 0;
  // The thread ends, not fenced: releases the lease, so the next writer need not wait for it.
  virtual void close() = 0;
};

}  // namespace poscache::detail
