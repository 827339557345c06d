// The table: the writer's apply engine over a mapped segment.
//
// It owns every write to the slots and the index, in the orders their protocols require
// (shm/seqlock.hpp for slots: undo record, SW1-SW4; shm/index.hpp for the index: XI1, XD1-XD3,
// XB1-XB2; shm/accounts.hpp for the account index: AW1-AW4, AE1-AE2), and the writer-only
// bookkeeping beside them: the free list and account lists in the SlotBooks, the recency log
// (LRU and TTL order, writer/recency_log.hpp) in private memory, the header's counters, the
// change sequence and the readers' futex.
//
// Only the apply thread calls it. Inputs are checked before they get here (writer/input.hpp);
// removals are handed to the Redis sync, journaled first, through PendingChanges when Redis is
// configured (writer/pending_changes.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "poscache/apply.hpp"
#include "poscache/changes.hpp"
#include "poscache/writer_stats.hpp"
#include "shm/accounts.hpp"
#include "shm/change_ring.hpp"
#include "shm/layout.hpp"
#include "writer/index_rebuild.hpp"
#include "writer/journal.hpp"
#include "writer/recency_log.hpp"
#include "writer/tsc_clock.hpp"

namespace poscache::detail {

class PendingChanges;

class Table {
 public:
  enum class Removal { eviction, expiration, erase, invalidation };

  Table() = default;
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  // Binds to a mapped segment of geometry `g` whose header and namespaces are written.
  void bind(std::byte* base, const shm::Geometry& g);
  // Keep the change ring (shm/change_ring.hpp) or not: header.ring_cells says which to readers.
  void set_change_ring(bool on) noexcept;
  // A re-attaching writer's first record: changes its predecessor made last may have none.
  void record_restart() noexcept;
  [[nodiscard]] bool change_ring() const noexcept { return ring_.enabled(); }
  // Changes that Redis must see go through `sync` from now on (null: no Redis), except those of
  // the namespaces in `unsynced` (bit ns: sync = none, kept in the segment only).
  void set_sync(PendingChanges* sync, std::uint32_t unsynced = 0) noexcept {
    sync_ = sync;
    unsynced_ = unsynced;
  }
  // Whether changes to namespace `ns` go to Redis.
  [[nodiscard]] bool syncs(std::uint16_t ns) const noexcept {
    return sync_ != nullptr && ns < 32 && ((unsynced_ >> ns) & 1u) == 0;
  }

  // ---- time: CLOCK_REALTIME (shm/clock.hpp), never going backwards within this writer -------
  std::int64_t now() noexcept {
    const std::int64_t t = clock_.now();
    if (t > last_now_) last_now_ = t;
    return last_now_;
  }

  // ---- changes (inputs already valid) --------------------------------------------------------
  ApplyResult upsert(const Update& u);
  // upsert() with a producer's claimed key hash, proven as upsert_batch proves it.
  ApplyResult upsert_claimed(const Update& u, std::uint64_t hash) {
    return upsert_hashed(u, hash, now(), true);
  }
  // As upsert() one at a time, in order, with the cache misses of neighbours overlapped.
  // `claimed` (optional): key hashes a producer computed, used instead of hashing and proven
  // here: an update must find its key in a slot whose stored hash equals the claim; an insert
  // has its key's characters checked and its hash recomputed. A false claim is bad_input.
  void upsert_batch(std::span<const Update> us, ApplyResult* out,
                    const std::uint64_t* claimed = nullptr);
  ApplyResult erase(const KeyRef& k);
  std::size_t invalidate_account(std::string_view account, std::optional<NamespaceId> ns);
  std::size_t invalidate_namespace(NamespaceId ns);
  std::size_t invalidate_matching(std::string_view glob);
  std::size_t invalidate_all();
  // Removes up to `budget` positions past their namespace's expire_after. True if any.
  bool expire(std::size_t budget);

  // A batch announces itself to readers once, at its end, and is one change to each account
  // it touches: their stripes stay open from its first write to its end (shm/accounts.hpp).
  void begin_batch() noexcept { in_batch_ = true; }
  void end_batch() noexcept {
    in_batch_ = false;
    changed();
  }
  // AW4 for every stripe this change opened. changed() calls it; so do the paths that write
  // without announcing (warm start). Nothing may stay open once an operation returns.
  void close_accounts() noexcept {
    for (std::uint64_t* st : open_stripes_) shm::AccountIndexWriter::close(st);
    open_stripes_.clear();
  }
  [[nodiscard]] std::size_t open_accounts() const noexcept { return open_stripes_.size(); }
  // Re-attach: every stripe and the index epoch odd across the repairs and rebuilds.
  void open_all_accounts() noexcept { accounts_.open_all(); }
  void close_all_accounts() noexcept { accounts_.close_all(); }
  // Wakes readers blocked in wait_for_change if a change is pending and `interval` has passed.
  void maybe_wake(std::int64_t t, std::int64_t interval) noexcept {
    if (wake_pending_ && t - last_wake_ >= interval) wake_readers(t);
  }
  void wake_readers(std::int64_t t) noexcept;

  // ---- lookup (the writer reads its own slots without the seqlock: nobody else writes) -------
  [[nodiscard]] std::uint32_t find(std::uint64_t hash, NamespaceId ns, std::string_view account,
                                   std::string_view instrument) const noexcept;
  [[nodiscard]] std::uint32_t find(const shm::SlotPayload& key) const noexcept;
  // Calls f(slot, namespace) for every live position, most recently updated last.
  template <class F>
  void for_each_live(F&& f) const {
    recency_.for_each(std::forward<F>(f));
  }
  [[nodiscard]] const shm::SlotPayload& peek(std::uint32_t s) const noexcept {
    return *reinterpret_cast<const shm::SlotPayload*>(slots_[s].payload);
  }

  // ---- re-attach and warm start (writer/lifecycle.cpp, writer/redis/warm_start.cpp) ---------
  // XB1 + XB2: a fresh index of every live slot in the inactive copy, then publish it. `dedupe`
  // (re-attach) also frees the older of two slots holding one key (only a corrupt segment has
  // them), counting a repair.
  void rebuild_index(bool dedupe);
  // The sliced rebuild (writer/index_rebuild.hpp): slices done, the longest time one operation
  // spent on it (a slice, or finishing a rebuild past the hard limit), how far one in progress is.
  [[nodiscard]] std::uint64_t rebuild_slices() const noexcept {
    return rebuild_slices_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::int64_t longest_index_step_ns() const noexcept {
    return longest_index_step_ns_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t index_steps_within(std::size_t bucket) const noexcept {
    return index_step_counts_[bucket].load(std::memory_order_relaxed);
  }
  // Free list, recency order by (updated_at, version), account lists, live count and next
  // version, all derived from the slots.
  // `tick` (optional) is called every 65 536 slots: a long rebuild keeps the heartbeat and the
  // Redis lease going (a warm start of a million positions).
  void rebuild_lists(const std::function<void()>& tick = {});
  // Finishes a removal a killed writer had journaled but maybe not completed: removes what it
  // covers that is older than it. Returns how many positions it removed.
  std::size_t finish_removal(const RemovalEvent& e);
  // A position from Redis, with its own version and timestamps, already synced: into a free
  // slot (the caller makes room). Returns the slot.
  std::uint32_t insert_synced(const shm::SlotPayload& p);

  // ---- a follower (writer/follow/follower.hpp): changes another writer made, from Redis -------
  // Position `p` with its writer's version and timestamps: written in place over an older
  // version of its key (readers never miss it), or inserted (evicting the least recently
  // updated position when full). False if the key holds this version or a newer one. `slot`
  // (optional): where the key is now, either way.
  bool apply_synced(const shm::SlotPayload& p, std::uint32_t* slot = nullptr);
  // Removal `e` as its writer made it: the positions it covers that are older than it, with a
  // ring record as here (an erase's own; a pattern's one). Returns how many it removed.
  std::size_t apply_removal(const RemovalEvent& e);
  // `version`: what the ring records for an erase (its own version); 0: the position's.
  void remove(std::uint32_t s, Removal why, std::uint64_t version = 0);
  [[nodiscard]] bool full() const noexcept { return wa_->free_head == shm::kNil; }

  // The one way the writer changes a slot: `n` payload words (index, new value); the undo
  // record, then seqlock SW1-SW4 over just the words that change.
  void write_words(std::uint32_t s, const std::uint8_t* idx, const std::uint64_t* val,
                   std::size_t n) noexcept;
  void write_slot(std::uint32_t s, const shm::SlotPayload& next) noexcept;

  // Re-attach after a kill (writer/lifecycle.cpp), before the index and lists are rebuilt. Each
  // returns the slots it repaired: a slot caught mid-write restored from the undo record (or
  // freed, with no record for it: never half served; shm/seqlock.hpp, "THE WRITER DIES"); a slot
  // whose namespace id is beyond the table (only corruption makes one) freed.
  std::size_t repair_torn_slots() noexcept;
  std::size_t drop_unknown_namespaces() noexcept;
  // The version the next change gets. raise_next_version: never below `at_least` from now on
  // (a promoted standby goes on above the old writer's versions and the wall clock).
  [[nodiscard]] std::uint64_t next_version() const noexcept { return wa_->next_version; }
  [[nodiscard]] const std::uint64_t* next_version_word() const noexcept {
    return &wa_->next_version;
  }
  void raise_next_version(std::uint64_t at_least) noexcept {
    wa_->next_version = std::max(wa_->next_version, at_least);
  }
  // A live position of a mirrored namespace whose version Redis has not acknowledged.
  [[nodiscard]] bool unsynced(std::uint32_t s) const noexcept {
    const shm::SlotPayload& p = peek(s);  // the apply thread's own slots: no seqlock
    return p.ns != shm::kFreeNamespace && syncs(p.ns) && p.version > book_[s].synced_version;
  }

  // The segment header: the table publishes its counters, change sequence and index epoch there;
  // the facade, lifecycle and the follower their state words (liveness, Redis, follow).
  [[nodiscard]] shm::SegmentHeader& header() const noexcept { return *h_; }
  // Read-only views for the writer's own inspection and tests; every change goes through the
  // operations above (the undo record and the seqlock).
  [[nodiscard]] const shm::WriterArea& area() const noexcept { return *wa_; }
  [[nodiscard]] const shm::Slot& slot(std::uint32_t s) const noexcept { return slots_[s]; }
  [[nodiscard]] const shm::SlotBook& book(std::uint32_t s) const noexcept { return book_[s]; }
  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::string_view namespace_name(std::uint16_t ns) const noexcept {
    return shm::fixed_name(h_->namespaces[ns].name);
  }

 private:
  ApplyResult upsert_hashed(const Update& u, std::uint64_t hash, std::int64_t t,
                            bool claimed = false);
  std::vector<std::uint32_t> covered_older(const RemovalEvent& e) const;
  // A pattern's removals, after its ring record: announced even if nothing matched.
  std::size_t remove_all(const std::vector<std::uint32_t>& victims);
  // A new version for a removal (erase, pattern): Redis orders by it, the ring records it.
  std::uint64_t removal_version() noexcept { return wa_->next_version++; }
  void account_link(std::uint32_t s, std::uint64_t account_hash);
  void account_unlink(std::uint32_t s, std::uint64_t account_hash);
  // AW1-AW2 for the account's stripe unless this change opened it already.
  void open_account(std::uint64_t account_hash) {
    std::uint64_t* st = accounts_.stripe_of(account_hash);
    if (shm::AccountIndexWriter::open(st)) open_stripes_.push_back(st);
  }
  void add_tombstones(std::int64_t delta) noexcept;
  // counters.live and namespace_live[ns] move together (one writer, relaxed).
  void live_added(NamespaceId ns) noexcept;
  void live_removed(NamespaceId ns) noexcept;
  void maybe_rebuild();
  void changed() noexcept;
  void hand_off_removal(RemovalEvent&& e);

  shm::SegmentHeader* h_ = nullptr;
  shm::Slot* slots_ = nullptr;
  shm::Bucket* index_[2] = {nullptr, nullptr};
  shm::WriterArea* wa_ = nullptr;
  shm::SlotBook* book_ = nullptr;
  std::uint32_t* links_ = nullptr;  // the account lists' next slot (shm/accounts.hpp)
  std::uint64_t capacity_ = 0;
  std::uint64_t buckets_ = 0;
  std::uint64_t tombstone_limit_ = 0;  // a rebuild in progress is finished at once past it
  std::uint64_t rebuild_start_ = 0;    // tombstones at which a sliced rebuild begins
  IndexRebuild rebuild_;               // writer/index_rebuild.hpp
  // Written by the apply thread at each slice, read by stats() from any thread (relaxed).
  std::atomic<std::uint64_t> rebuild_slices_{0};
  std::atomic<std::int64_t> longest_index_step_ns_{0};
  std::array<std::atomic<std::uint64_t>, WriterStats::kIndexStepBoundsNs.size() + 1>
      index_step_counts_{};
  shm::AccountIndexWriter accounts_;          // account hash -> first slot and count; the stripes
  std::vector<std::uint64_t*> open_stripes_;  // opened by the change in progress
  // Each namespace's fields: first value slot and slots taken (a text field takes several), and
  // the slots the schema uses (poscache/schema.hpp).
  struct FieldSlots {
    std::uint8_t first[kMaxFields] = {};
    std::uint8_t count[kMaxFields] = {};
    std::uint32_t used = 0;
  };
  FieldSlots slots_of_[kMaxNamespaces];
  shm::ChangeCell* ring_cells_ = nullptr;  // the change ring's region (shm/change_ring.hpp)
  std::uint64_t ring_count_ = 0;
  shm::ChangeRingWriter ring_;  // disabled unless set_change_ring(true)
  RecencyLog recency_;          // the LRU order; sized in bind()
  PendingChanges* sync_ = nullptr;
  std::uint32_t unsynced_ = 0;  // namespaces with sync = none

  TscClock clock_;
  std::int64_t last_now_ = 0;
  std::int64_t last_wake_ = 0;
  bool wake_pending_ = false;
  bool in_batch_ = false;
  bool defer_rebuild_ = false;
};

}  // namespace poscache::detail
