// poscache — a position as a reader receives it: a fixed-size copy, no heap, no pointers into
// shared memory.
#pragma once

#include <cstdint>
#include <string_view>

#include "poscache/decimal.hpp"
#include "poscache/schema.hpp"

namespace poscache {

using NamespaceId = std::uint16_t;

struct Position {
  NamespaceId ns = 0;
  std::uint8_t account_len = 0;
  std::uint8_t instrument_len = 0;
  std::uint32_t fields_set = 0;    // bit i: field i of the namespace's schema carries a value
  std::uint64_t version = 0;       // writer-wide monotonic: a newer change has a higher version
  std::uint64_t source_seq = 0;    // the producer's sequence number (0 if it gave none)
  std::int64_t created_at_ns = 0;  // CLOCK_REALTIME
  std::int64_t updated_at_ns = 0;  // CLOCK_REALTIME
  std::int64_t age_ns = 0;         // now - updated_at_ns when read (0 if the clock is behind)
  bool stale = false;              // age_ns > the namespace's stale_after
  char account[kMaxAccountLen] = {};
  char instrument[kMaxInstrumentLen] = {};
  int128 values[kMaxFields] = {};  // mantissas; int64 and timestamp fields as plain integers

  [[nodiscard]] std::string_view account_view() const noexcept { return {account, account_len}; }
  [[nodiscard]] std::string_view instrument_view() const noexcept {
    return {instrument, instrument_len};
  }
  [[nodiscard]] bool has(std::size_t field) const noexcept {
    return field < kMaxFields && ((fields_set >> field) & 1u) != 0;
  }
  [[nodiscard]] int128 raw(std::size_t field) const noexcept { return values[field]; }
  [[nodiscard]] std::int64_t int64(std::size_t field) const noexcept {
    return static_cast<std::int64_t>(values[field]);
  }
};

}  // namespace poscache
