// poscache — the typed outcome of a read.
#pragma once

#include <cstdint>
#include <string_view>

namespace poscache {

enum class ReadStatus : std::uint8_t {
  ok = 0,           // a consistent copy, fresh
  stale = 1,        // a consistent copy, older than the namespace's stale_after
  not_found = 2,    // the key was not in the table at some instant during the read
  writer_busy = 3,  // the slot stayed mid-write past the retry bound; the writer is alive
  writer_dead = 4,  // the slot is mid-write, the heartbeat has stopped and the writer is gone
  bad_key = 5,      // a key part is empty or too long, or the namespace id is unknown
  retired = 6,      // the writer re-created the segment: call Reader::follow()
};

std::string_view to_string(ReadStatus s) noexcept;

// A copy was returned (ok or stale).
constexpr bool has_value(ReadStatus s) noexcept {
  return s == ReadStatus::ok || s == ReadStatus::stale;
}

}  // namespace poscache
