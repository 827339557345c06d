// What a Reader holds (reader/reader.cpp makes it), shared by the reader library's sources: the
// mapping and everything get() touches, and get()'s epilogue (asking for a refresh, counting).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "poscache/reader.hpp"
#include "reader/reader_table.hpp"
#include "reader/refresh_channel.hpp"
#include "shm/accounts.hpp"
#include "shm/change_ring.hpp"
#include "shm/index.hpp"
#include "shm/layout.hpp"
#include "shm/segment.hpp"

namespace poscache {

struct Reader::State {
  // Hot: everything get() touches, in one place.
  const shm::SegmentHeader* header = nullptr;
  const shm::Slot* slots = nullptr;
  const shm::Bucket* index[2] = {nullptr, nullptr};
  std::uint64_t capacity = 0;
  std::uint64_t mask = 0;
  std::uint32_t ns_count = 0;
  std::uint8_t slot_count[kMaxNamespaces] = {};  // value slots of each schema: what a read copies
  std::int64_t stale_after_ns[kMaxNamespaces] = {};
  std::uint64_t* counts = nullptr;  // this Reader's counts[row][status] (reader table), or null
  const detail::RefreshChannel* refresh = nullptr;  // read-through's channel, or null
  // The account index (snapshot()).
  const shm::AccountEntry* accounts = nullptr;
  const std::uint64_t* stripes = nullptr;
  const std::uint32_t* links = nullptr;
  std::uint64_t stripe_mask = 0;
  std::size_t max_copy_bytes = 0;  // of a slot, for the widest namespace: the lines to request
  // The change ring (changes()).
  const shm::ChangeCell* ring = nullptr;
  std::uint64_t ring_mask = 0;
  // Cold.
  std::string name;
  shm::Mapping mapping;
  std::vector<NamespaceInfo> infos;
  ReaderOptions options;
  detail::ReaderClaim claim;  // released (RC3) when the state goes: destruction, follow()
  std::string not_counting;   // why counts is null
  std::unique_ptr<detail::RefreshChannel> channel;
  std::string no_refresh;  // why refresh is null
  // A read stuck mid-write (stuck_status in reader.cpp): the heartbeat budget (0: the writer's
  // own rule) and the lock file to ask, its path built once so that asking allocates nothing.
  std::int64_t silent_after_ns = 0;
  std::string lock_path;
};

namespace detail {

// get()'s answer, after asking for a refresh if the namespace's policy says so (no system call).
inline ReadStatus asking(const Reader::State& s, NamespaceId ns, std::string_view account,
                         std::string_view instrument, std::uint64_t hash, ReadStatus st,
                         const Position& p, std::int64_t now) noexcept {
  if (s.refresh != nullptr && st != ReadStatus::bad_key)
    s.refresh->after_read(ns, account, instrument, hash, st, p, now);
  return st;
}

// RC2: one relaxed load and store on this Reader's own line for the namespace (no locked
// instruction). `ns` outside the segment's namespaces (a bad key) counts in the last row.
inline ReadStatus counted(const Reader::State& s, std::size_t ns, ReadStatus st) noexcept {
  if (std::uint64_t* c = s.counts) {
    const std::size_t row = ns < s.ns_count ? ns : shm::kNoNamespaceRow;
    std::uint64_t* word = c + row * shm::kReaderCounts + static_cast<std::size_t>(st);
    shm::store_relaxed(word, shm::load_relaxed(word) + 1);
  }
  return st;
}

}  // namespace detail

}  // namespace poscache
