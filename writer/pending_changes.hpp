// The changes made since the last hand-off, batched for the Redis mirror: the table marks a
// slot it wrote and queues a removal it made (journaled first, writer/journal.hpp); every tick
// the batch is handed to the sync thread through a lock-free queue, never waiting. What the
// table records is all it knows of the mirror; the protocol between the two threads, and why it
// keeps each key's versions in order, is in writer/redis/redis_sync.hpp.
#pragma once

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "shm/layout.hpp"
#include "writer/journal.hpp"

namespace poscache::detail {

// What the sync thread must know about a dirty slot beyond its content (the fenced sync writes
// plain commands, so it must know what Redis may hold; RedisFormat::add_plain_upsert):
inline constexpr std::uint8_t kSlotNewKey = 1;         // a key inserted into the slot: ZADD
inline constexpr std::uint8_t kSlotFieldsDropped = 2;  // a replace unset a field: HDEL

struct ChangeBatch {
  std::vector<std::uint32_t> slots;
  std::vector<std::pair<std::uint32_t, std::uint8_t>> flags;  // (slot, kSlot*) of marks above
  std::vector<RemovalEvent> events;
  std::int64_t first_ns = 0;  // CLOCK_REALTIME of its first change
  std::int64_t last_ns = 0;   // the writer's time of its last mark (the writer's clock never
                              // goes back: every later change has a time >= it)
  std::uint64_t seq = 0;      // hand-off number
  // The writer's newest version when it was handed off: every change up to it travels in this
  // batch or an earlier one (the trade ids' horizon, writer/redis/sync_trades.cpp).
  std::uint64_t last_version = 0;
  [[nodiscard]] bool empty() const noexcept { return slots.empty() && events.empty(); }
};

// Between the two threads: batches go to the sync thread and come back empty; two hand-off
// numbers say how far the sync thread got.
struct ChangeChannel {
  boost::lockfree::spsc_queue<ChangeBatch*, boost::lockfree::capacity<1024>> to_sync;
  boost::lockfree::spsc_queue<ChangeBatch*, boost::lockfree::capacity<1024>> to_apply;
  std::atomic<std::uint64_t> merged_seq{0};  // last hand-off merged into the pending state
  std::atomic<std::uint64_t> clean_seq{0};   // last hand-off whose changes are all written
  // Redis lost what it was given and the refill is not all written yet: no ticket is
  // acknowledged meanwhile (what was acknowledged before the loss is gone until then).
  std::atomic<bool> refilling{false};
};

class PendingChanges {
 public:
  // `next_version`: the writer area's (the apply thread's own word).
  PendingChanges(ChangeChannel& channel, Journal journal, shm::SlotBook* book,
                 const std::uint64_t* next_version, std::chrono::milliseconds flush_interval,
                 std::size_t batch_size);

  void mark(std::uint32_t slot, std::int64_t t, std::uint8_t flags = 0) {
    if (flags != 0) cur_->flags.emplace_back(slot, flags);  // not coalesced: rare (inserts)
    cur_->last_ns = t;
    std::uint64_t& queued = book_[slot].queued_epoch;  // apply thread only
    if (queued == epoch_) return;
    queued = epoch_;
    if (cur_->empty()) cur_->first_ns = t;
    cur_->slots.push_back(slot);
  }
  // Journals `e` (before the removal it describes is applied), then queues it.
  void removal(RemovalEvent&& e, std::int64_t t);
  // A journal entry a killed writer left (re-attach, before the sync thread starts).
  void replay(RemovalEvent&& e, std::int64_t t);

  void maybe_hand_off(std::int64_t t) {
    if (!cur_->empty() && (t - cur_->first_ns >= half_interval_ns_ ||
                           cur_->slots.size() + cur_->events.size() >= batch_size_)) {
      hand_off();
    } else if (version_due_) [[unlikely]] {
      const std::uint64_t before = handed_;
      version_due_ = hand_off(true) == before;
    }
  }
  // The next tick hands off a batch even if empty, carrying the writer's version: a trade log
  // was attached (its entries up to that version are due in Redis, sync_trades.cpp).
  void hand_off_version() noexcept { version_due_ = true; }
  // Hands the current batch to the sync thread now (if the queue has room). Returns its number.
  // `always`: even an empty one (it still carries the writer's version: a trade log attached).
  std::uint64_t hand_off(bool always = false);
  // Hands off, then waits until the sync thread has written everything handed off so far.
  bool flush(std::chrono::milliseconds timeout);
  // Hands off until nothing is left (the sync thread drains the queue whether Redis is up or not).
  void hand_off_all();
  // A ticket for every change made so far: they all travel in hand-offs numbered <= it (the
  // current batch gets number handed_ + 1 when it goes). acknowledged(ticket): Redis holds them.
  [[nodiscard]] std::uint64_t ticket() const noexcept {
    return cur_->empty() ? handed_ : handed_ + 1;
  }
  [[nodiscard]] bool acknowledged(std::uint64_t ticket) const noexcept {
    return ch_.clean_seq.load(std::memory_order_acquire) >= ticket &&  // pairs with the sync
           !ch_.refilling.load(std::memory_order_acquire);             // thread's release
  }

 private:
  ChangeChannel& ch_;
  Journal journal_;
  shm::SlotBook* book_;
  const std::uint64_t* next_version_;
  bool version_due_ = false;
  std::int64_t half_interval_ns_;
  std::size_t batch_size_;
  std::uint64_t epoch_;
  ChangeBatch* cur_ = nullptr;
  std::uint64_t handed_ = 0;
  std::vector<std::unique_ptr<ChangeBatch>> all_batches_;  // owner of every batch
};

}  // namespace poscache::detail
