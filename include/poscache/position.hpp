// poscache — a position as a reader receives it: a fixed-size copy, no heap, no pointers into
// shared memory.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "poscache/decimal.hpp"
#include "poscache/schema.hpp"

namespace poscache {

using NamespaceId = std::uint16_t;

// A text field's bytes in value slots (poscache/schema.hpp): in order from its first slot,
// NUL-padded to the end of its slots. `slots` points at 16-byte value slots laid out as int128
// (Position::values, Update::values, a segment payload's values, the C API's values).
inline std::string_view text_in_slots(const void* slots, std::size_t slot,
                                      std::size_t length) noexcept {
  if (slot >= kMaxFields) return {};
  const auto* b = static_cast<const char*>(slots) + slot * sizeof(int128);
  const std::size_t room = (kMaxFields - slot) * sizeof(int128);
  return {b, strnlen(b, length < room ? length : room)};
}
// Writes `text` (already valid: at most `length` bytes, no NUL) into its slots, zeroing the rest.
inline void put_text_in_slots(void* slots, std::size_t slot, std::size_t length,
                              std::string_view text) noexcept {
  if (slot >= kMaxFields) return;
  auto* b = static_cast<char*>(slots) + slot * sizeof(int128);
  const std::size_t room = (kMaxFields - slot) * sizeof(int128);
  const std::size_t slots_bytes = (length + sizeof(int128) - 1) / sizeof(int128) * sizeof(int128);
  const std::size_t n = slots_bytes < room ? slots_bytes : room;
  std::memset(b, 0, n);
  if (!text.empty()) std::memcpy(b, text.data(), text.size() < n ? text.size() : n);
}
inline std::string_view text_in(const int128* values, std::size_t slot,
                                std::size_t length) noexcept {
  return text_in_slots(values, slot, length);
}
inline void put_text(int128* values, std::size_t slot, std::size_t length,
                     std::string_view text) noexcept {
  put_text_in_slots(values, slot, length, text);
}

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
  // By value slot: mantissas; int64 and timestamp fields as plain integers; a text field's bytes
  // from its first slot (numeric fields' slots are their indices: poscache/schema.hpp).
  int128 values[kMaxFields] = {};

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
  // A text field from its first slot (field_slot() of the schema) and its length.
  [[nodiscard]] std::string_view text(std::size_t slot, std::size_t length) const noexcept {
    return text_in(values, slot, length);
  }
};

}  // namespace poscache
