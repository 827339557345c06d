// The writer's Redis sync: the hand-off from the apply thread and the sync thread behind it.
//
// APPLY THREAD (writer/pending_changes.hpp; never waits, never makes a system call for this):
//   * an upsert marks its slot dirty: the slot index goes into the current ChangeBatch once per
//     batch (SlotBook::queued_epoch == epoch means "already in this batch": coalescing);
//   * a removal that would lose an unsynced change (eviction, expiry of a position whose
//     version Redis has not acknowledged: SlotBook::synced_version) copies the position into
//     the batch as a `spill` event; an erase or an invalidation adds an event with a new version;
//     each is journaled before it is applied (writer/journal.hpp);
//   * tick() hands the batch over through a lock-free single-producer queue when it is older
//     than flush_interval/2 or holds batch_size changes, and takes an empty one back from the
//     return queue. If the queue is full the batch just keeps growing: nothing is dropped.
//
// SYNC THREAD (writer/redis/sync_worker.hpp; owns the hiredis connection):
//   * merges batches into its pending state: dirty slots (deduplicated), the latest event per
//     key, and pattern invalidations (which drop older per-key events they cover);
//   * while connected, writes the pending state in rounds (writer/redis/sync_round.cpp): events
//     in version order first, then each dirty slot's CURRENT content (read with the readers'
//     seqlock protocol, skipped when Redis already acknowledged that version). A slot read
//     always carries the newest version of its key, possibly newer than an event not merged yet
//     (its batch still on the way): so an event's write is guarded by the version Redis holds
//     for its key, as RedisConfig::guard says, one strategy chosen once
//     (writer/redis/sync_strategy.hpp): fence, read behind the fence first
//     (writer/redis/fenced_writes.cpp); scripts, on the server (writer/redis/script_writes.cpp).
//     An event never goes out after a newer event of its key because each key keeps only its
//     latest event. With the fence, only the lease holder writes (writer/redis/lease.hpp), one
//     transaction after another on one connection: a key's versions arrive in order;
//   * acknowledges a slot by storing the written version into SlotBook::synced_version
//     (release; the apply thread's acquire load decides whether an eviction must spill);
//   * on any connection error keeps everything not acknowledged, reconnects with backoff and
//     writes it again — writes are idempotent (same version: the guard says "not newer");
//   * publishes its state in the segment header for readers and poscache-inspect.
//
// A writer killed with -9 loses the batches in its memory, but not the slots: a re-attaching
// writer queues every slot whose version is above its synced_version. Removals (erases,
// invalidations, spills) leave nothing in the slots, so the apply thread records each in the
// segment's journal before it applies it; the sync thread moves the journal's tail past an
// entry once Redis has it (or a later event of the same key replaced it), and a re-attaching
// writer replays [tail, head). Only removals that found the journal full (an outage longer
// than the journal) live in memory alone; they are counted (overflows).
#pragma once

#include <chrono>
#include <vector>

#include "writer/pending_changes.hpp"
#include "writer/redis/sync_worker.hpp"

namespace poscache::detail {

// The two sides and the channel between them, as the writer holds them.
class RedisSync {
 public:
  RedisSync(const RedisConfig& config, std::vector<NamespaceSpec> namespaces, SegmentView view,
            const Journal& journal, LogSink log)
      : worker_(config, std::move(namespaces), view, journal, channel_, std::move(log)),
        handoff_(channel_, journal, view.book, view.next_version, config.flush_interval,
                 config.batch_size) {}
  ~RedisSync() { stop(); }
  RedisSync(const RedisSync&) = delete;
  RedisSync& operator=(const RedisSync&) = delete;

  PendingChanges& handoff() noexcept { return handoff_; }
  SyncWorker& worker() noexcept { return worker_; }
  void start() { worker_.start(); }
  // Hands off what is left, lets the sync thread write it for up to close_timeout, joins.
  void stop() {
    if (stopped_) return;
    stopped_ = true;
    if (worker_.running()) handoff_.hand_off_all();
    worker_.stop();
  }
  bool flush(std::chrono::milliseconds timeout) { return handoff_.flush(timeout); }

 private:
  ChangeChannel channel_;
  SyncWorker worker_;
  PendingChanges handoff_;
  bool stopped_ = false;
};

}  // namespace poscache::detail
