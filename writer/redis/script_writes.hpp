// The sync thread's writes by per-key scripts (RedisGuard::scripts, for a Redis Cluster, where a
// fence cannot cover keys of other slots): no lease, anyone may write, and the scripts compare
// versions on the server so that an older version never replaces or deletes a newer one
// (writer/redis/redis_format.hpp). Plain pipelines, no change stream. The protocol:
// writer/redis/redis_sync.hpp.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "writer/redis/sync_strategy.hpp"
#include "writer/redis/sync_worker.hpp"

namespace poscache::detail {

class ScriptWrites final : public SyncStrategy {
 public:
  explicit ScriptWrites(SyncWorker& worker) : w_(worker) {}

  std::string load_scripts() override;
  Opened open(std::string& err) override;
  [[nodiscard]] std::string guard_note() const override;
  bool write_key_events(std::span<const RemovalEvent> events) override;
  bool delete_keys(const VersionedKeys& keys) override;
  bool write_slots() override;
  bool write_plain(const std::function<void(Commands&)>& build) override;
  void idle() override {}   // no lease to renew
  void close() override {}  // nor to release

 private:
  // Reads `n` replies of the pipeline. A connection failure returns false (the caller keeps
  // everything of this round); an error reply marks that command failed (ok[i] = false) and is
  // logged; NOSCRIPT (scripts flushed on the server) has the next round reload the scripts.
  bool check_replies(std::size_t n, std::vector<bool>* ok);

  SyncWorker& w_;
  std::string upsert_sha_, delete_sha_;
  Args args_;
  UpsertCall call_;
};

}  // namespace poscache::detail
