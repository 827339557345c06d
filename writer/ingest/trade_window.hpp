// The fill de-duplication window: the trade ids of the last `capacity` fills that carried one,
// kept in a writer-only shared-memory file beside the segment, "/dev/shm/<segment>.trades"
// (mode 0600), so that it survives the writer being killed with -9 and restarted.
//
//   +-------------------------------+  TradeWindowHeader (below), then
//   | magic, generation, capacity   |  capacity x u64: the ring of trade-id hashes, oldest
//   | head (fills recorded so far)  |  overwritten first. Hash = XXH3-64 of (namespace id,
//   | pending: the fills in flight  |  trade id); 0 is never stored.
//   +-------------------------------+
//   | ring[capacity]                |
//   +-------------------------------+
//
// Crash protocol. The fills with a trade id of one apply (one fill, or a group's: up to
// kMaxPending, each on a position written by one op of the group) are recorded in three steps:
//   T1 begin():  pending[i] = each trade's hash, its position's key and the position's version
//                before the apply (0: no position yet); then pending_count = n (release);
//   T2 the fill or the group is applied to the table (the writer's undo record covers a kill
//                mid-write of a slot);
//   T3 commit(): ring[(head + i) % capacity] = hash i, head + n (release), then pending_count
//                cleared.
// Killed before T1's count: nothing is remembered. Killed between T1 and T3: at the next open,
// each pending fill's position tells: still the version before (a kill before or during its
// write, which re-attach rolls back) -> that fill did not happen and is not remembered; another
// version -> it happened, and the open records it. Killed inside T3 after head moved: the ring
// holds the pending hashes just below head, and the open only clears the count. So the window
// never remembers a fill the table lost, nor forgets one the table kept. The process's own
// stores reach the file in program order (one mapping of page-cache memory); a power loss takes
// /dev/shm with it anyway.
//
// The window belongs to one segment generation: a segment created anew (or replaced) starts an
// empty window. Its hashes live in memory too (an unordered_set rebuilt at open) for the lookup.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>

#include "writer/ingest/command.hpp"
#include "writer/ingest/state_file.hpp"

namespace poscache::ingest {

// One fill in flight (T1..T3).
struct TradePending {
  std::uint64_t hash;
  std::uint64_t old_version;  // its position's version before the apply (0: absent)
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
  std::uint64_t pending_count;  // T1..T3: the fills in flight (0: none)
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
  static std::uint64_t hash(NamespaceId ns, std::string_view trade_id) noexcept;
  [[nodiscard]] bool contains(std::uint64_t h) const { return seen_.count(h) != 0; }
  struct Fill {
    std::uint64_t hash;
    const PositionKey* key;
    std::uint64_t old_version;
  };
  void begin(std::uint64_t h, const PositionKey& key, std::uint64_t old_version) noexcept;  // T1
  void begin(std::span<const Fill> fills) noexcept;  // T1 for a group (up to kMaxPending)
  void commit() noexcept;                            // T3
  void abort() noexcept;  // T2 did not write (refused): forget the pending entries

  [[nodiscard]] std::uint64_t capacity() const noexcept { return header_->capacity; }
  [[nodiscard]] std::uint64_t recorded() const noexcept;              // trade ids remembered now
  [[nodiscard]] bool restored() const noexcept { return restored_; }  // reused an existing file
  static std::string path_of(const std::string& segment);

 private:
  void record(std::uint64_t h) noexcept;  // into the ring at head (head not yet published)
  TradeWindowHeader* header_ = nullptr;
  std::uint64_t* ring_ = nullptr;
  StateFile file_;
  bool restored_ = false;
  std::unordered_set<std::uint64_t> seen_;
};

}  // namespace poscache::ingest
