// poscache — read-through and refresh, the reader's side (docs/read-through.md).
//
// A writer with refreshers (processes that know a source: a broker API, a chain, a database)
// fetches a key when a reader asks. Readers ask three ways, none of which writes the segment:
//   - get() itself, when the namespace's policy says so: a stale read (refresh on stale), a miss
//     (refresh on miss), or a fresh read in the last part of stale_after (refresh-ahead). The
//     request goes into this reader's own ring beside the segment: no system call, no
//     allocation, never blocks; the answer lands later, for the next read.
//   - request(): the same, explicitly (forced: a fresh copy is fetched anyway).
//   - get_or_fetch(): a fresh copy at get()'s cost; otherwise it asks, then waits (a futex, no
//     spinning) for the answer or the caller's timeout, whichever comes first, and says why it
//     returned what it returned.
// The writer is the one place of de-duplication: however many readers ask, one request per key
// is in flight, and an "absent" answer is remembered for the namespace's negative_ttl.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "poscache/status.hpp"

namespace poscache {

// Why a key is asked for.
enum class RefreshReason : std::uint8_t { stale = 1, miss = 2, forced = 3, rebuild = 4, ahead = 5 };
std::string_view to_string(RefreshReason r) noexcept;

// What became of a key's last request, as the writer published it (Reader::pending()).
enum class PendingState : std::uint8_t {
  none = 0,          // nothing known: never asked, or forgotten
  pending = 1,       // asked; no answer yet
  answered = 2,      // a refresher answered with the position (now in the segment)
  absent = 3,        // the source has no such position (remembered for negative_ttl)
  erased = 4,        // the source says it is gone: erased here
  failed = 5,        // errors or timeouts on every try
  superseded = 6,    // a producer wrote the key after the request went out: the answer was dropped
  no_refresher = 7,  // no refresher served the namespace
};
std::string_view to_string(PendingState s) noexcept;

// Every reason, and every decided state, in order: what metrics and tools list.
inline constexpr RefreshReason kAllRefreshReasons[] = {
    RefreshReason::stale, RefreshReason::miss, RefreshReason::forced, RefreshReason::rebuild,
    RefreshReason::ahead};
inline constexpr PendingState kDecidedStates[] = {
    PendingState::answered, PendingState::absent,     PendingState::erased,
    PendingState::failed,   PendingState::superseded, PendingState::no_refresher};

struct PendingInfo {
  PendingState state = PendingState::none;
  RefreshReason reason = RefreshReason::miss;
  std::int64_t since_ns = 0;  // CLOCK_REALTIME: asked (pending) or decided (the others)
};

// What request() did.
enum class RequestStatus : std::uint8_t {
  asked,         // in this reader's ring: the writer will take it
  pending,       // not asked again: a request for the key is in flight (or was just answered)
  remembered,    // not asked: the source answered "absent" less than negative_ttl ago
  full,          // this reader's ring was full: not asked, counted
  no_refresher,  // the namespace has no refresher registered (or the writer serves no refresh)
  unavailable,   // this Reader has no request channel (refresh_unavailable_because() says why)
  bad_key,
};
std::string_view to_string(RequestStatus s) noexcept;

// Why get_or_fetch() returned what it did.
enum class FetchReason : std::uint8_t {
  cached,        // the copy was fresh: nothing asked (get()'s cost)
  fetched,       // asked, and the answer (or a newer write) arrived within the timeout
  absent,        // the source has no such position (answered now, or remembered)
  timeout,       // no answer within the timeout: the stale copy, or not_found
  failed,        // the refreshers failed (errors, timeouts on every try) or a write superseded it
  no_refresher,  // none registered for the namespace: the copy as it is
  unavailable,   // no request channel (see refresh_unavailable_because()), or its ring was full
};
std::string_view to_string(FetchReason r) noexcept;

struct FetchResult {
  ReadStatus status = ReadStatus::not_found;  // as get(): ok, stale, not_found, ...
  FetchReason reason = FetchReason::cached;
  [[nodiscard]] bool cached() const noexcept { return reason == FetchReason::cached; }
};

// The writer's read-through counters as it publishes them beside the segment
// (Reader::refresh_stats()).
struct RefreshStats {
  [[nodiscard]] std::uint64_t decided(PendingState s) const noexcept {
    return outcomes[static_cast<std::size_t>(s)];
  }
  std::uint64_t requests[6] = {};  // by RefreshReason value (stale 1, miss 2, forced 3, ...)
  std::uint64_t deduplicated = 0;  // requests for a key already in flight (or just answered)
  std::uint64_t in_flight = 0;
  std::uint64_t outcomes[8] = {};  // by PendingState value (answered 2, absent 3, ...)
  std::uint64_t errors = 0, timeouts = 0, refused = 0, bad_requests = 0;
  std::uint64_t refreshers = 0;         // registered now
  std::uint64_t ring_full = 0;          // readers' asks that found their ring full
  std::uint64_t rebuilds_running = 0;   // namespaces being rebuilt from their refreshers now
  std::uint64_t rebuild_positions = 0;  // positions rebuilds have brought, ever
};

}  // namespace poscache
