// poscache — what changed: the records of the change ring a Reader follows (Reader::changes).
//
//   std::uint64_t at = r.change_position();          // follow from now on
//   std::vector<poscache::Change> batch;
//   for (;;) {
//     r.wait_for_changes(at, 100ms);
//     const poscache::ChangesResult res = r.changes(at, batch);
//     for (const poscache::Change& c : batch) push_to_clients(c);   // in order
//     if (res.status != poscache::ChangeStatus::ok) resync();       // lapped: read the state
//     at = res.next;                                                // (get/snapshot/scan) now
//   }
//
// A record says which key changed and how, not the new values: get() the key for them (the
// change is visible to get() once its record is). Never silent: a reader the ring lapped, or
// that follows across a writer restart, is told so, and where to continue after it has read
// the state again.
#pragma once

#include <cstdint>
#include <string_view>

#include "poscache/position.hpp"
#include "poscache/schema.hpp"

namespace poscache {

enum class ChangeKind : std::uint8_t {
  inserted = 1,  // a new key; version: its version
  updated = 2,   // a key's values changed; version: its new version
  erased = 3,    // a key removed by erase; version: the erase's own (above the position's)
  evicted = 4,   // a key removed to make room (least recently updated); version: the position's
  expired = 5,   // a key removed past its namespace's expire_after; version: the position's
  // Removals by pattern: every position that matched when it applied (one record for all).
  // version: the pattern's own; every position it removed had a lower one.
  invalidated_account = 6,    // account(); ns: one namespace, or kAnyNamespace
  invalidated_namespace = 7,  // ns
  invalidated_glob = 8,       // pattern(): fnmatch over "ns:account:instrument"
  invalidated_all = 9,
};
std::string_view to_string(ChangeKind k) noexcept;

inline constexpr NamespaceId kAnyNamespace = 0xFFFF;
inline constexpr std::size_t kMaxPatternLen = 256;

struct Change {
  std::uint64_t position = 0;  // this record's place in the ring
  ChangeKind kind = ChangeKind::inserted;
  NamespaceId ns = kAnyNamespace;
  std::uint8_t account_len = 0;
  std::uint8_t instrument_len = 0;
  std::uint16_t pattern_len = 0;
  std::uint64_t version = 0;
  std::int64_t at_ns = 0;  // CLOCK_REALTIME of the change (an upsert's updated_at)
  char account[kMaxAccountLen] = {};
  char instrument[kMaxInstrumentLen] = {};
  char pattern[kMaxPatternLen] = {};

  [[nodiscard]] std::string_view account_view() const noexcept { return {account, account_len}; }
  [[nodiscard]] std::string_view instrument_view() const noexcept {
    return {instrument, instrument_len};
  }
  [[nodiscard]] std::string_view pattern_view() const noexcept { return {pattern, pattern_len}; }
  // A removal of one key or many (everything but inserted and updated).
  [[nodiscard]] bool is_removal() const noexcept {
    return kind != ChangeKind::inserted && kind != ChangeKind::updated;
  }
  // Whether this change is about the key (ns named `ns_name`, account, instrument): the same key
  // for a one-key change, a match for a pattern.
  [[nodiscard]] bool covers(NamespaceId key_ns, std::string_view ns_name, std::string_view acct,
                            std::string_view instr) const;
};

enum class ChangeStatus : std::uint8_t {
  ok = 0,                // every record from `from` to `next` (or `max` of them) is in `out`
  lapped = 1,            // the ring overwrote records after `from` before they were read: read
                         // the state again, then follow from `next`
  writer_restarted = 2,  // a writer re-attached after its predecessor died: changes it made
                         // just before may have no record. Read the state, follow from `next`
  invalid_position = 3,  // `from` is past the ring's head (a position from another segment
                         // generation?): read the state, follow from `next`
  unavailable = 4,       // the writer keeps no change ring (change_ring = off)
  retired = 5,           // the writer re-created the segment: call follow(), then resync
};
std::string_view to_string(ChangeStatus s) noexcept;

struct ChangesResult {
  ChangeStatus status = ChangeStatus::ok;
  std::uint64_t next = 0;  // where to continue (after a resync unless ok)
};

}  // namespace poscache
