// poscache — the reader library. Link poscache::reader; it pulls in no logging, no Redis client.
//
//   poscache::Reader r = poscache::Reader::open("positions");
//   const auto spot = *r.namespace_id("spot");          // resolve once
//   poscache::Position p;
//   switch (r.get(spot, "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU", "SOL", p)) { ... }
//
// get() never locks, never writes shared memory, never allocates and never makes a system call
// (the clock comes from the vDSO). It returns in bounded time whatever the writer is doing.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "poscache/changes.hpp"
#include "poscache/counters.hpp"
#include "poscache/position.hpp"
#include "poscache/refresh.hpp"
#include "poscache/schema.hpp"
#include "poscache/status.hpp"

namespace poscache {

namespace detail {
class RefreshChannel;  // reader/refresh_channel.hpp
}

struct NamespaceInfo {
  NamespaceId id = 0;
  std::string name;
  std::vector<FieldSpec> fields;
  std::chrono::nanoseconds stale_after{0};
  std::chrono::nanoseconds expire_after{0};
  [[nodiscard]] std::optional<std::size_t> field_index(std::string_view field) const;
};

struct WriterInfo {
  std::int64_t pid = 0;
  std::int64_t started_at_ns = 0;
  std::int64_t heartbeat_age_ns = 0;
  std::int64_t heartbeat_interval_ns = 0;
  std::uint64_t restarts = 0;
  bool alive = false;  // heartbeat recent (ReaderOptions::writer_silent_after) and pid live
};

struct SegmentStats : Counters {
  std::string segment;
  std::uint64_t generation = 0;
  std::string state;  // initializing | ready | closed | retired
  std::uint64_t capacity = 0;
  std::uint64_t segment_bytes = 0;
  std::uint64_t index_buckets = 0;
  std::uint64_t change_seq = 0;
  std::uint64_t change_position = 0;          // the change ring's head (cells written, ever)
  std::uint64_t change_ring_cells = 0;        // 0: the writer keeps no change ring
  std::vector<std::uint64_t> namespace_live;  // live positions by namespace id (namespaces())
  WriterInfo writer;
  // (The Redis mirror's state is for tools: poscache/mirror_status.hpp.)
};

struct ScanFilter {
  std::optional<NamespaceId> ns;
  std::optional<std::string> account;
  std::optional<std::string> glob;  // fnmatch over "ns:account:instrument"
};

enum class FollowResult { same, reattached, unavailable };

struct ReaderOptions {
  // Count get()'s answers by status in this Reader's record of the reader table beside the
  // segment (poscache/reader_stats.hpp): one relaxed load and store per get(). Off also with
  // POSCACHE_READER_STATS=off in the environment. A Reader that cannot claim a record (no table,
  // no permission, full) reads on uncounted, and the first such Reader of the process says why
  // on stderr once.
  bool statistics = true;
  // Take part in read-through (poscache/refresh.hpp) when the writer serves it: claim a request
  // ring at open, and let get() ask per the namespaces' refresh policies. Off: get() never asks,
  // and get_or_fetch() answers `unavailable`. Off also with POSCACHE_READER_REFRESH=off.
  bool refresh = true;
  // How long the writer's heartbeat may be silent before a read stuck mid-write asks whether
  // the writer still lives (its lock, then its process: system calls, on that slow path only).
  // Until then such a read answers writer_busy; after, writer_dead only if the writer is gone,
  // writer_busy if it lives (stopped, descheduled). Zero: POSCACHE_READER_SILENT_AFTER_MS from
  // the environment if set, else ten of the writer's heartbeat intervals and at least 100 ms.
  std::chrono::nanoseconds writer_silent_after{0};
};

class Reader {
 public:
  // Maps the segment read-only. Throws poscache::Error naming what is wrong: no such segment,
  // another magic, version or fingerprint ("expected … found …"), still initializing.
  static Reader open(std::string_view segment);
  static Reader open(std::string_view segment, const ReaderOptions& options);

  Reader(Reader&&) noexcept;
  Reader& operator=(Reader&&) noexcept;
  ~Reader();

  // --- the hot path ------------------------------------------------------------------------
  ReadStatus get(NamespaceId ns, std::string_view account, std::string_view instrument,
                 Position& out) const noexcept;
  // The same with the caller's CLOCK_REALTIME (saves the clock read when reading many).
  ReadStatus get(NamespaceId ns, std::string_view account, std::string_view instrument,
                 Position& out, std::int64_t now_ns) const noexcept;
  // Many at once: the same answers and statuses as get() for each key, with the cache misses of
  // about 16 lookups in flight together (a pipeline: keys hashed and their buckets requested 8
  // keys ahead of their slots being requested, 16 ahead of each read as get() reads). For a
  // portfolio or a risk check that needs many positions.
  // Reads min(keys, out, status) keys.
  struct Key {
    NamespaceId ns = 0;
    std::string_view account, instrument;
  };
  void get_many(std::span<const Key> keys, std::span<Position> out,
                std::span<ReadStatus> status) const noexcept;

  // By namespace name: a linear lookup over at most 32 names, then as above.
  ReadStatus get(std::string_view ns, std::string_view account, std::string_view instrument,
                 Position& out) const noexcept;

  // --- read-through (poscache/refresh.hpp, docs/read-through.md) ----------------------------
  // A fresh copy at get()'s cost (reason cached); otherwise asks the writer's refreshers (one
  // request per key in flight, whoever asks) and waits, on a futex, until the answer or
  // `timeout`: then the copy as it is (stale, or not_found) and why. `force`: fetch even a fresh
  // copy and wait for the answer. Not for the hot path when it must wait: it makes system calls.
  FetchResult get_or_fetch(NamespaceId ns, std::string_view account, std::string_view instrument,
                           Position& out, std::chrono::nanoseconds timeout,
                           bool force = false) const;
  // Asks without waiting (as get() does by policy): no system call, no allocation, never blocks.
  // `why`: stale, miss, forced or ahead (a rebuild is asked over the socket: bad_key).
  RequestStatus request(NamespaceId ns, std::string_view account, std::string_view instrument,
                        RefreshReason why = RefreshReason::forced) const noexcept;
  // What the writer published about the key's last request: pending, answered, absent, ...
  [[nodiscard]] PendingInfo pending(NamespaceId ns, std::string_view account,
                                    std::string_view instrument) const noexcept;
  // Whether this Reader has a request channel, and if not, why.
  [[nodiscard]] bool refresh_available() const noexcept;
  [[nodiscard]] const std::string& refresh_unavailable_because() const noexcept;
  // The writer's read-through counters; nullopt without a request channel.
  [[nodiscard]] std::optional<RefreshStats> refresh_stats() const;

  // --- schema ------------------------------------------------------------------------------
  [[nodiscard]] std::optional<NamespaceId> namespace_id(std::string_view name) const noexcept;
  [[nodiscard]] const std::vector<NamespaceInfo>& namespaces() const noexcept;
  [[nodiscard]] const NamespaceInfo& namespace_info(NamespaceId id) const;

  // --- an account's positions, in O(its positions) ------------------------------------------
  // Every position of `account` (every namespace) as of one moment: no change to the account
  // is seen half applied, including a Writer::apply batch that changed several of its
  // positions (shm/accounts.hpp argues it). `out` is cleared and filled (its capacity is
  // reused: no allocation once it is large enough). Bounded time, like get():
  //   ok / stale   a consistent set; stale if any position in it is stale (each Position says)
  //   not_found    the account had no position at one instant during the call
  //   writer_busy  the account kept changing, or stayed mid-change, past the retry bound
  //   writer_dead  it is mid-change, the writer's heartbeat has stopped and the writer is gone
  //   bad_key      empty or longer than kMaxAccountLen;  retired: call follow()
  // The order is the account's list order (most recently inserted first).
  ReadStatus snapshot(std::string_view account, std::vector<Position>& out) const;
  // --- scans (walk every slot: O(capacity); for tools and periodic risk, not per order) ------
  // Calls `visit` for each position matching `filter` with a consistent copy. A slot stuck
  // mid-write is skipped and counted in the return value's second member.
  struct ScanResult {
    std::size_t visited = 0;
    std::size_t skipped_mid_write = 0;
  };
  ScanResult scan(const ScanFilter& filter,
                  const std::function<void(const Position&)>& visit) const;
  // The positions of an account: snapshot(); if that answers writer_busy or writer_dead, a
  // scan by account (each position consistent on its own). Empty if it has none.
  std::vector<Position> positions_of(std::string_view account) const;

  // --- the segment and its writer -----------------------------------------------------------
  [[nodiscard]] SegmentStats stats() const;
  [[nodiscard]] WriterInfo writer() const;
  [[nodiscard]] std::uint64_t generation() const noexcept;
  // Whether the writer re-created the segment (get() answers retired; scan() and positions_of()
  // still walk this old generation's slots): call follow(). One load.
  [[nodiscard]] bool retired() const noexcept;
  [[nodiscard]] const std::string& segment_name() const noexcept;

  // Change notification: the sequence moves after every applied change. Poll it (one load), or
  // block until it differs from `seen` (a futex wait on a read-only mapping; true if it changed).
  [[nodiscard]] std::uint64_t change_sequence() const noexcept;
  bool wait_for_change(std::uint64_t seen, std::chrono::nanoseconds timeout) const;

  // --- what changed: the change ring (poscache/changes.hpp argues its use) ------------------
  // The ring's head: where a new follower starts (read the state it needs after taking it).
  [[nodiscard]] std::uint64_t change_position() const noexcept;
  // The changes from ring position `from`, in order, at most `max` of them: `out` is cleared and
  // filled (its capacity reused), ChangesResult::next is where to continue. Never blocks and
  // never spins; works on the read-only mapping. Anything but `ok` means: what is in `out` is
  // valid, then read the state again and follow from `next`.
  ChangesResult changes(std::uint64_t from, std::vector<Change>& out, std::size_t max = 4096) const;
  // Blocks until the ring's head moves past `from` (true) or the timeout passes (false). Wakes
  // with wait_for_change(): the writer publishes the ring before the change sequence.
  bool wait_for_changes(std::uint64_t from, std::chrono::nanoseconds timeout) const;
  // Cells of the writer's change ring (0: it keeps none, and changes() answers unavailable).
  [[nodiscard]] std::uint64_t change_ring_cells() const noexcept;

  // If the writer re-created the segment (get() answered `retired`, or the name now holds a new
  // generation), maps the new one. Not for the hot path: it makes system calls.
  FollowResult follow();

  // The mapping (for the inspector's verify and for tests).
  [[nodiscard]] const void* mapping_base() const noexcept;
  [[nodiscard]] std::size_t mapping_size() const noexcept;
  // Whether this Reader counts its reads (ReaderOptions::statistics), and if not, why.
  [[nodiscard]] bool counting() const noexcept;
  [[nodiscard]] const std::string& not_counting_because() const noexcept;

  // Bytes of this reader's mapping on 2 MiB pages (one TLB entry each instead of 512): what the
  // writer's huge_pages setting achieved. Reads /proc/self/smaps: not for the hot path.
  [[nodiscard]] std::uint64_t huge_page_bytes() const;

 public:
  struct State;  // the mapping and what get() needs; defined in reader/reader.cpp

 private:
  explicit Reader(std::unique_ptr<State> state);
  [[nodiscard]] const detail::RefreshChannel* channel() const noexcept;
  // Blocks until `moved()` or the timeout (the futex protocol of wait_for_change()).
  template <class Moved>
  bool wait_until(Moved moved, std::chrono::nanoseconds timeout) const;
  // The same with the key's hash computed (get_many hashes a batch first).
  ReadStatus lookup_hashed(NamespaceId ns, std::string_view account, std::string_view instrument,
                           std::uint64_t hash, Position& out, std::int64_t now_ns) const noexcept;
  std::unique_ptr<State> s_;
};

}  // namespace poscache
