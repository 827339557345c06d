// The fill de-duplication window: the trade ids of the last `capacity` fills that carried one,
// kept in a writer-only shared-memory file beside the segment, "/dev/shm/<segment>.trades"
// (mode 0600), so that it survives the writer being killed with -9 and restarted.
//
//   +-------------------------------+  TradeWindowHeader (below), then
//   | magic, generation, capacity   |  capacity x TradeLogEntry (writer/trade_log.hpp, 32 bytes):
//   | head (fills recorded so far)  |  the ring of trade ids (their XXH3-64), each with its
//   | pending: the fills in flight  |  namespace, its position's key hash and the version its
//   +-------------------------------+  fill wrote; oldest overwritten first.
//   | ring[capacity]                |
//   +-------------------------------+
//
// The Redis sync reads the ring (writer/trade_log.hpp, THE PROTOCOL) and mirrors each trade id
// beside its fill's effect, so the window outlives this host: load() takes back what Redis
// holds when a standby is promoted or a writer warm-starts on a fresh segment.
//
// Crash protocol. The fills with a trade id of one apply (one fill, or a group's: up to
// kMaxPending, each on a position written by one op of the group) are recorded in three steps:
//   TW1 begin():  pending[i] = each trade's hash, its position's key and the position's version
//                before the apply (0: no position yet); then pending_count = n (release);
//   TW2 the fill or the group is applied to the table (the writer's undo record covers a kill
//                mid-write of a slot);
//   TW3 commit(): ring[(head + i) % capacity] = entry i (with the version its position took),
//                head + n (release), then pending_count cleared.
// Killed before TW1's count: nothing is remembered. Killed between TW1 and TW3: at the next open,
// each pending fill's position tells: still the version before (a kill before or during its
// write, which re-attach rolls back) -> that fill did not happen and is not remembered; another
// version -> it happened, and the open records it. Killed inside TW3 after head moved: the ring
// holds the pending hashes just below head, and the open only clears the count. So the window
// never remembers a fill the table lost, nor forgets one the table kept. The process's own
// stores reach the file in program order (one mapping of page-cache memory); a power loss takes
// /dev/shm with it anyway.
//
// The file belongs to one segment generation: a segment created anew (or replaced) starts an
// empty window (filled from Redis by load(), when there is one). Its hashes live in memory too
// (writer/ingest/hash_set.hpp, rebuilt at open) for the lookup: trade_window_hash(ns, id hash).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "writer/ingest/command.hpp"
#include "writer/ingest/hash_set.hpp"
#include "writer/ingest/state_file.hpp"
#include "writer/trade_log.hpp"

namespace poscache::ingest {

// One fill in flight (TW1..TW3).
struct TradePending {
  std::uint64_t id_hash;      // detail::trade_id_hash of its trade id
  std::uint64_t old_version;  // its position's version before the apply (0: absent)
  std::uint64_t key_hash;     // shm::key_hash of its position
  std::uint16_t ns;
  std::uint8_t account_len;
  std::uint8_t instrument_len;
  std::uint32_t reserved;
  char account[kMaxAccountLen];
  char instrument[kMaxInstrumentLen];
};

struct TradeWindowHeader {
  std::uint64_t magic;
  std::uint64_t generation;     // the segment generation this window belongs to
  std::uint64_t capacity;       // ring entries
  std::uint64_t head;           // fills recorded so far; the ring holds the last `capacity`
  std::uint64_t pending_count;  // TW1..TW3: the fills in flight (0: none)
  std::uint64_t mirrored;       // the Redis sync's: entries below it are in Redis
  std::uint64_t reserved;       // 1 + the index of the entry being (or last) written
  TradePending pending[kMaxGroupCommands];
};

class TradeWindow {
 public:
  static constexpr std::uint64_t kDefaultCapacity = 1 << 20;  // 8 MiB of ring
  // Answers "what version does this position hold now?" (0: not there) for the open's check.
  using VersionOf = std::function<std::uint64_t(const PositionKey&)>;

  // Opens (or creates) the window of `segment`'s generation `generation`. An existing file of
  // another generation or capacity is started anew. Throws poscache::Error naming the file.
  TradeWindow(const std::string& segment, std::uint64_t generation, std::uint64_t capacity,
              const VersionOf& version_of);
  ~TradeWindow();
  TradeWindow(const TradeWindow&) = delete;
  TradeWindow& operator=(const TradeWindow&) = delete;

  static constexpr std::size_t kMaxPending = kMaxGroupCommands;
  // A trade id of namespace `ns` as the window knows it: (its id hash, its lookup hash).
  struct Id {
    std::uint64_t id_hash;
    std::uint64_t hash;
  };
  static Id id(NamespaceId ns, std::string_view trade_id) noexcept;
  [[nodiscard]] bool contains(const Id& id) const { return seen_.contains(id.hash); }
  struct Fill {
    Id id;
    const PositionKey* key;
    std::uint64_t old_version;
  };
  void begin(const Id& id, const PositionKey& key, std::uint64_t old_version) noexcept;  // TW1
  void begin(std::span<const Fill> fills) noexcept;  // TW1 for a group (up to kMaxPending)
  // TW3: version[i] is the version pending fill i's position took.
  void commit(std::span<const std::uint64_t> versions) noexcept;
  void commit(std::uint64_t version) noexcept { commit(std::span(&version, 1)); }
  void abort() noexcept;  // TW2 did not write (refused): forget the pending entries

  // Trade ids another writer applied (Redis's {prefix}:{ns}:@trades, a promoted standby or a
  // warm start on a fresh segment): those not known yet are recorded, oldest version first, the
  // newest `capacity` kept. Returns how many were new. Apply thread, nothing pending.
  struct Known {
    NamespaceId ns;
    std::uint64_t id_hash;
    std::uint64_t version;
  };
  std::size_t load(std::vector<Known> ids);
  // What the Redis sync reads (writer/trade_log.hpp).
  [[nodiscard]] detail::TradeLog log() const noexcept;

  [[nodiscard]] std::uint64_t capacity() const noexcept { return header_->capacity; }
  [[nodiscard]] std::uint64_t recorded() const noexcept;              // trade ids remembered now
  [[nodiscard]] bool restored() const noexcept { return restored_; }  // reused an existing file
  static std::string path_of(const std::string& segment);

 private:
  // Into the ring at head + i (head not yet published).
  void record(std::uint64_t i, const detail::TradeLogEntry& e) noexcept;
  TradeWindowHeader* header_ = nullptr;
  detail::TradeLogEntry* ring_ = nullptr;
  StateFile file_;
  bool restored_ = false;
  HashSet64 seen_{1};
};

}  // namespace poscache::ingest
