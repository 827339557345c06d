// The writer's Redis sync: the hand-off from the apply thread and the sync thread behind it.
//
// APPLY THREAD (never waits, never makes a system call for this):
//   * an upsert marks its slot dirty: the slot index goes into the current SyncBatch once per
//     batch (SlotBook::queued_epoch == epoch means "already in this batch": coalescing);
//   * a removal that would lose an unsynced change (eviction, expiry of a position whose
//     version Redis has not acknowledged: SlotBook::synced_version) copies the position into
//     the batch as a `spill` event; an erase or an invalidation adds an event with a new version;
//   * tick() hands the batch over through a lock-free single-producer queue when it is older
//     than flush_interval/2 or holds batch_size changes, and takes an empty one back from the
//     return queue. If the queue is full the batch just keeps growing: nothing is dropped.
//
// SYNC THREAD (owns the hiredis connection):
//   * merges batches into its pending state: dirty slots (deduplicated), the latest event per
//     key, and pattern invalidations (which drop older per-key events they cover);
//   * while connected, writes the pending state in rounds: events in version order first, then
//     each dirty slot's CURRENT content (read with the readers' seqlock protocol, skipped when
//     Redis already acknowledged that version). A slot read always carries the newest version
//     of its key, and every write is version-guarded on the server, so the order of a slot
//     write relative to older events does not matter; an event never goes out after a newer
//     event of its key because each key keeps only its latest event;
//   * acknowledges a slot by storing the written version into SlotBook::synced_version
//     (release; the apply thread's acquire load decides whether an eviction must spill);
//   * on any connection error keeps everything not acknowledged, reconnects with backoff and
//     writes it again — writes are idempotent (same version: the guard says "not newer");
//   * publishes its state in the segment header for readers and poscache-inspect.
//
// A writer killed with -9 loses the batches in its memory, but not the slots: a re-attaching
// writer queues every slot whose version is above its synced_version. Removals (erases,
// invalidations, spills) leave nothing in the slots, so the apply thread records each in the
// segment's journal (shm/layout.hpp) before it applies it; the sync thread moves the journal's
// tail past an entry once Redis has it (or a later event of the same key replaced it), and a
// re-attaching writer replays [tail, head). Only removals that found the journal full (an
// outage longer than the journal) live in memory alone; they are counted (overflows).
#pragma once

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "poscache/redis.hpp"
#include "poscache/writer.hpp"
#include "shm/layout.hpp"
#include "writer/redis_client.hpp"
#include "writer/redis_format.hpp"

namespace poscache::detail {

struct SyncEvent {
  enum class Kind : std::uint8_t { spill, erase, account, ns, glob, all };
  Kind kind = Kind::spill;
  std::uint64_t version = 0;        // the writer version of this change
  std::optional<std::uint16_t> ns;  // erase, ns; account (optional filter)
  std::string text;                 // account (account), pattern (glob)
  shm::SlotPayload payload{};       // spill: the position; erase: ns/account/instrument
  std::uint64_t journal_pos = 0;  // its journal entry + 1 (0: not journaled, the journal was full)
};

struct SyncBatch {
  std::vector<std::uint32_t> slots;
  std::vector<SyncEvent> events;
  std::int64_t first_ns = 0;  // CLOCK_REALTIME of its first change
  std::uint64_t seq = 0;      // hand-off number
  [[nodiscard]] bool empty() const noexcept { return slots.empty() && events.empty(); }
};

struct SegmentView {
  shm::SegmentHeader* h = nullptr;
  const shm::Slot* slots = nullptr;
  shm::SlotBook* book = nullptr;
  std::uint64_t capacity = 0;
  shm::JournalHeader* journal = nullptr;  // shm/layout.hpp "Journal"
  shm::JournalEntry* entries = nullptr;
  std::uint64_t journal_entries = 0;
};

// Whether removal `e` (erase, account, ns, glob, all; a spill removes nothing) covers position
// `p`, whose namespace is named `ns_name`. Versions are the caller's to compare.
bool covers(const SyncEvent& e, std::string_view ns_name, const shm::SlotPayload& p);

// The journal entry of an event and back (shm/layout.hpp "Journal").
void to_entry(const SyncEvent& e, shm::JournalEntry& out) noexcept;
SyncEvent from_entry(const shm::JournalEntry& in, std::uint64_t pos);

class RedisSync {
 public:
  RedisSync(const RedisConfig& config, std::vector<NamespaceSpec> namespaces, SegmentView view,
            LogSink log);
  ~RedisSync();
  RedisSync(const RedisSync&) = delete;
  RedisSync& operator=(const RedisSync&) = delete;

  void start();
  // Hands off what is left, lets the sync thread write it for up to close_timeout, joins.
  void stop();

  // ---- apply thread ------------------------------------------------------------------------
  void note_slot(std::uint64_t& queued_epoch, std::uint32_t slot, std::int64_t t) {
    if (queued_epoch == epoch_) return;
    queued_epoch = epoch_;
    if (cur_->empty()) cur_->first_ns = t;
    cur_->slots.push_back(slot);
  }
  SyncEvent& add_event(SyncEvent::Kind kind, std::uint64_t version, std::int64_t t);
  // Records a filled-in event in the journal, before the removal it describes is applied. A full
  // journal (a long outage) leaves the event in memory only and counts an overflow.
  void commit(SyncEvent& e) noexcept;
  // A journal entry a killed writer left (re-attach, before start()): back into the first batch.
  void replay(SyncEvent&& e);
  // A corrupt journal entry (re-attach, before start()): counted as done so the tail passes it.
  void skip(std::uint64_t entry) { journal_done(entry + 1); }
  void maybe_hand_off(std::int64_t t) {
    if (!cur_->empty() && (t - cur_->first_ns >= half_interval_ns_ ||
                           cur_->slots.size() + cur_->events.size() >= batch_size_)) {
      hand_off();
    }
  }
  // Hands the current batch to the sync thread now (if the queue has room). Returns its number.
  std::uint64_t hand_off();
  // Hands off, then waits until the sync thread has written everything handed off so far.
  bool flush(std::chrono::milliseconds timeout);

 private:
  void run();
  void drain();
  void merge(SyncBatch& b);
  void merge_event(SyncEvent&& e);
  [[nodiscard]] bool has_pending() const noexcept;
  void connect();
  bool flush_round();
  bool write_events(std::vector<SyncEvent>& events, std::size_t& done);
  bool run_accounts(const std::vector<SyncEvent>& events, std::size_t from, std::size_t to);
  bool run_scan(const SyncEvent& e);
  bool delete_pipelined(const std::vector<std::pair<ParsedKey, std::uint64_t>>& keys);
  bool write_slots();
  bool check_replies(std::size_t n, std::vector<bool>* ok);
  void lost_connection(const std::string& why);
  void set_state(shm::RedisState state);
  std::string load_scripts();
  void set_error(const std::string& text);
  void publish();
  std::string event_key(const SyncEvent& e) const;
  void log(LogLevel level, const std::string& msg) const {
    if (log_) log_(level, msg);
  }
  void journal_done(std::uint64_t pos);
  void report_overflows();

  RedisConfig cfg_;
  RedisFormat fmt_;
  SegmentView v_;
  LogSink log_;
  std::int64_t half_interval_ns_;
  std::size_t batch_size_;

  // apply thread
  std::uint64_t epoch_;
  SyncBatch* cur_ = nullptr;
  std::uint64_t handed_ = 0;

  boost::lockfree::spsc_queue<SyncBatch*, boost::lockfree::capacity<1024>> to_sync_;
  boost::lockfree::spsc_queue<SyncBatch*, boost::lockfree::capacity<1024>> to_apply_;
  std::vector<std::unique_ptr<SyncBatch>> all_batches_;  // owner of every batch (apply thread adds)
  std::atomic<std::uint64_t> merged_seq_{0};  // last hand-off merged into the pending state
  std::atomic<std::uint64_t> clean_seq_{0};   // last hand-off whose changes are all written
  std::atomic<bool> stop_{false};
  std::thread thread_;

  // sync thread
  RedisClient client_;
  std::string upsert_sha_, delete_sha_;
  std::vector<std::uint32_t> dirty_;
  std::vector<std::uint8_t> in_dirty_;
  std::unordered_map<std::string, SyncEvent> key_events_;
  std::vector<SyncEvent> pattern_events_;
  std::int64_t oldest_ns_ = 0;  // oldest change still pending (0: none)
  std::uint64_t synced_max_ = 0;
  shm::RedisState state_ = shm::RedisState::off;
  std::int64_t next_connect_ns_ = 0;
  std::int64_t backoff_ns_ = 0;
  std::string last_error_;
  bool was_up_ = false;
  bool reload_scripts_ = false;
  Args args_;
  UpsertCall call_;
  std::vector<std::uint8_t>
      journal_done_;  // entry index -> written or superseded, not yet below tail
  std::uint64_t overflows_seen_ = 0;
  std::int64_t overflow_logged_ns_ = 0;
};

}  // namespace poscache::detail
