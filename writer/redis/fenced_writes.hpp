// The sync thread's writes behind the writer lease (RedisGuard::fence, the default): only the
// lease holder writes, in transactions of plain commands fenced on the lease (WATCH, its epoch,
// MULTI, EXEC), each with its change-stream entry and its positions' trade ids. The lease and
// the fence: writer/redis/lease.hpp; the protocol: writer/redis/redis_sync.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "writer/redis/lease.hpp"
#include "writer/redis/sync_strategy.hpp"
#include "writer/redis/sync_worker.hpp"

namespace poscache::detail {

class FencedWrites final : public SyncStrategy {
 public:
  // Turns the worker's change stream on (RedisConfig::change_stream_retention).
  explicit FencedWrites(SyncWorker& worker);

  std::string load_scripts() override;
  Opened open(std::string& err) override;
  [[nodiscard]] std::string guard_note() const override;
  bool write_key_events(std::span<const RemovalEvent> events) override;
  bool delete_keys(const VersionedKeys& keys) override;
  bool write_slots() override;
  bool write_plain(const std::function<void(Commands&)>& build) override;
  void idle() override;
  void close() override;

 private:
  // committed: EXEC ran the commands; tripped: EXEC answered nil (the lease was written since
  // the WATCH) or the fence found another epoch; refused: Redis refused the transaction or one
  // of its commands; lost: the connection.
  enum class Tx { committed, tripped, refused, lost };
  using Versions = std::vector<std::optional<std::uint64_t>>;
  // Takes the lease, or confirms it is still ours, or takes it back when it expired and nobody
  // took another epoch since (writer/redis/lease.hpp). false: fenced (or the connection was
  // lost: the client closed).
  bool take_lease();
  // Nothing to write: a transaction of its own renews the lease when a renewal is due.
  bool renew_if_idle();
  // One fenced transaction whose writes depend on what Redis holds (removals, spills): the
  // `version` field of `n` keys (key_of(i, args) adds key i) is read behind the fence, then
  // `build` queues the writes it decides on from them (a renewal of the lease rides along when
  // due). A tripped fence is followed up at once (take_lease(): ours again, or fenced).
  Tx fenced_guarded(std::size_t n, const std::function<void(std::size_t, Args&)>& key_of,
                    const std::function<void(const Versions&, Commands&)>& build);
  // Reads the replies of MULTI, `queued` commands and EXEC; ok[i]: command i succeeded.
  Tx read_exec(std::size_t queued, std::vector<bool>& ok);

  // write_slots(): a round of the dirty slots, transactions of up to batch_size positions, two
  // in flight (fenced_writes.cpp).
  struct Item {
    std::uint32_t slot;
    std::uint64_t version;
    std::uint64_t key_hash;
    std::int64_t updated_at;  // its latest change's apply time (the sync-lag metric)
    std::uint8_t flags;
    std::uint32_t commands;
  };
  struct Chunk {
    std::vector<Item> items;
    Commands cmds;
    Args entry;                     // its change-stream entry (one XADD after its positions)
    std::size_t stream_cmd = 0;     // that XADD's place among the queued commands (0: none)
    SyncWorker::TradeWrite trades;  // its positions' trade ids (sync_trades.cpp), after the XADD
    std::size_t trade_cmds = 0;
    std::size_t queued = 0;
    bool renewing = false;
    std::int64_t built_at = 0;
  };
  struct SlotRound {
    std::vector<std::uint32_t> slots;  // taken from the worker's dirty set
    std::size_t next = 0;              // the next of them to read
    Chunk chunks[2];
    std::vector<bool> ok;  // the replies of the transaction being settled
  };
  void build(SlotRound& r, Chunk& c, bool with_fence);  // reads the slots, queues their writes
  // Starts a chunk's transaction again, empty (its items were given back).
  void restart(Chunk& c, bool with_fence);
  void settle(SlotRound& r, Chunk& c);  // acknowledges what a committed transaction wrote
  Tx collect(SlotRound& r, Chunk& c, bool with_fence);  // reads its replies, then settle()
  bool send(Chunk& c);                                  // false: the connection was lost
  void give_back(Chunk& c);                             // its slots back into the dirty set
  bool give_back_all(SlotRound& r);                     // returns false (the round failed)

  SyncWorker& w_;
  Lease lease_;
  std::string set_sha_;  // the account set's script (RedisFormat::add_plain_upsert)
  bool kill_warned_ = false;
  Commands tx_;
  Args entry_;  // a fenced transaction's change-stream entry (RedisFormat::begin_changes)
  Args args_;
};

}  // namespace poscache::detail
