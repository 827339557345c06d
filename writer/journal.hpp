// The removal journal: the writer's code for the Journal region of the segment (shm/layout.hpp
// holds its bytes and kinds).
//
// A change to a position stays in its slot until Redis has it (SlotBook::synced_version says
// which version Redis acknowledged), so a writer killed with -9 loses nothing its successor
// cannot find again. A removal leaves nothing in the slots: the apply thread appends it here
// BEFORE it applies it, the sync thread moves the tail past it once Redis has it, and a
// re-attaching writer validates what is left, finishes any removal the kill cut short and hands
// the entries to Redis again.
//
//   apply thread   RemovalEvent built (spill_of, erase_of, pattern_of) -> Journal::append
//   sync thread    JournalTail::done(pos) once Redis has it, or a later event of its key that is
//   re-attach      Journal::scan (corrupt entries skipped and reported, never replayed),
//                  finish_removals (table side: writer/table.hpp), then the sync replays them
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "poscache/apply.hpp"
#include "shm/layout.hpp"

namespace poscache::detail {

// A removal on its way to Redis; in the journal as a JournalEntry.
struct RemovalEvent {
  using Kind = shm::JournalKind;
  Kind kind = Kind::spill;
  std::uint64_t version = 0;        // the writer version of this change
  std::optional<std::uint16_t> ns;  // ns; account (optional filter)
  std::string text;                 // account (account), pattern (glob)
  shm::SlotPayload payload{};       // spill: the position; erase: ns/account/instrument
  std::uint64_t journal_pos = 0;  // its journal entry + 1 (0: not journaled, the journal was full)
};

// The three ways the apply thread builds one.
RemovalEvent spill_of(const shm::SlotPayload& position);
RemovalEvent erase_of(const KeyRef& key, std::uint64_t version);
RemovalEvent pattern_of(RemovalEvent::Kind kind, std::uint64_t version,
                        std::optional<NamespaceId> ns, std::string_view text);

// Whether removal `e` (erase, account, ns, glob, all; a spill removes nothing) covers position
// `p`, whose namespace is named `ns_name`. Versions are the caller's to compare.
bool covers(const RemovalEvent& e, std::string_view ns_name, const shm::SlotPayload& p);

// The entry codec.
void to_entry(const RemovalEvent& e, shm::JournalEntry& out) noexcept;
RemovalEvent from_entry(const shm::JournalEntry& in, std::uint64_t pos);

// What is wrong with an entry no writer could have written (empty if nothing): an unknown kind,
// a version never handed out, a namespace id beyond the table, a key that is not a key. Such an
// entry is skipped, never replayed: an unknown kind must never become "remove everything".
std::string entry_problem(const shm::JournalEntry& e, std::uint64_t next_version,
                          std::uint32_t namespace_count);

class Journal {
 public:
  Journal() = default;
  // Publishes its words' copies in the header at once (readers' view: shm/layout.hpp).
  Journal(std::byte* segment_base, const shm::Geometry& g) noexcept;

  [[nodiscard]] bool present() const noexcept { return header_ != nullptr && size_ > 0; }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  [[nodiscard]] shm::JournalHeader& header() const noexcept { return *header_; }
  [[nodiscard]] std::uint64_t pending() const noexcept { return shm::journal_pending(*header_); }
  [[nodiscard]] std::uint64_t overflows() const noexcept;

  // Apply thread: records `e` before the removal it describes is applied and sets its
  // journal_pos. A full journal (a long Redis outage) or an oversized text leaves it
  // unrecorded (journal_pos 0) and counts an overflow; the caller still hands it to the sync.
  void append(RemovalEvent& e) noexcept;

  // Re-attach: the pending entries [tail, head), checked. A corrupt header (head behind tail, or
  // further ahead than the journal holds) is reported and the tail moved to the head: nothing of
  // it can be trusted.
  struct Scan {
    std::vector<std::pair<std::uint64_t, const shm::JournalEntry*>> valid;  // oldest first
    std::vector<std::uint64_t> invalid;                                     // entry numbers
    std::string problem;  // the header's, or the first invalid entry's
    bool header_corrupt = false;
  };
  Scan scan(std::uint64_t next_version, std::uint32_t namespace_count) const;

  // Sync thread: entries below `tail` are in Redis (or superseded) and may be overwritten.
  void advance_tail(std::uint64_t tail) const noexcept;

 private:
  shm::SegmentHeader* seg_ = nullptr;  // the header's copies of the journal's words
  shm::JournalHeader* header_ = nullptr;
  shm::JournalEntry* entries_ = nullptr;
  std::uint64_t size_ = 0;
};

// Sync thread: the journal's tail. Entries are done out of order (a later event of a key makes
// an earlier one done); the tail moves past every entry so marked, in order.
class JournalTail {
 public:
  JournalTail() = default;
  explicit JournalTail(const Journal& j) : journal_(j), done_(j.size(), 0) {}
  // The event of journal entry pos - 1 is in Redis, or superseded by a later event of its key
  // that is pending (and journaled after it). pos 0: not journaled, nothing to do.
  void done(std::uint64_t pos) noexcept;

 private:
  Journal journal_;
  std::vector<std::uint8_t> done_;  // entry index -> done, not yet below the tail
};

}  // namespace poscache::detail
