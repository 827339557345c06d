// Between a slot's payload words and the public types: the one place that knows how a Position
// and a field's int128 mantissa are laid out in a SlotPayload (shm/layout.hpp).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <string_view>

#include "poscache/position.hpp"
#include "shm/layout.hpp"

namespace poscache::shm {

static_assert(std::endian::native == std::endian::little,
              "the word views below assume little-endian");

// Whether payload `p` holds the key (ns, account, instrument) whose hash is `hash`: the one key
// comparison of readers (after the seqlock copy) and the writer. The hash is compared first.
inline bool same_key(const SlotPayload& p, std::uint64_t hash, std::uint16_t ns,
                     std::string_view account, std::string_view instrument) noexcept {
  return p.key_hash == hash && p.ns == ns && p.account_len == account.size() &&
         p.instrument_len == instrument.size() &&
         std::memcmp(p.account, account.data(), account.size()) == 0 &&
         std::memcmp(p.instrument, instrument.data(), instrument.size()) == 0;
}
// The same for two payloads whose hashes may not be filled in (journal events).
inline bool same_key(const SlotPayload& a, const SlotPayload& b) noexcept {
  return same_key(a, a.key_hash, b.ns, {b.account, b.account_len},
                  {b.instrument, b.instrument_len});
}

inline std::uint32_t meta_fields_set(std::uint64_t meta_word) noexcept {
  return static_cast<std::uint32_t>(meta_word >> 32);
}
inline std::uint64_t meta_with_fields_set(std::uint64_t meta_word,
                                          std::uint32_t fields_set) noexcept {
  return (meta_word & 0xFFFF'FFFFull) | (static_cast<std::uint64_t>(fields_set) << 32);
}

inline int128 field_value(const SlotPayload& p, std::size_t f) noexcept {
  return static_cast<int128>((static_cast<unsigned __int128>(p.values[f][1]) << 64) |
                             p.values[f][0]);
}

inline void set_field_value(SlotPayload& p, std::size_t f, int128 v) noexcept {
  const auto u = static_cast<unsigned __int128>(v);
  p.values[f][0] = static_cast<std::uint64_t>(u);
  p.values[f][1] = static_cast<std::uint64_t>(u >> 64);
}

// A text field's bytes in a payload's value slots (poscache/position.hpp text_in_slots).
static_assert(sizeof(SlotPayload::values[0]) == sizeof(int128), "a value slot is an int128");
inline std::string_view payload_text(const SlotPayload& p, std::size_t slot,
                                     std::size_t length) noexcept {
  return text_in_slots(p.values, slot, length);
}
inline void set_payload_text(SlotPayload& p, std::size_t slot, std::size_t length,
                             std::string_view text) noexcept {
  put_text_in_slots(p.values, slot, length, text);
}

// Fills `out` from a payload whose first `nfields` value slots are meaningful; the rest read
// as 0.
inline void decode(const SlotPayload& p, std::size_t nfields, Position& out) noexcept {
  out.ns = p.ns;
  out.account_len = p.account_len;
  out.instrument_len = p.instrument_len;
  out.fields_set = p.fields_set;
  out.version = p.version;
  out.source_seq = p.source_seq;
  out.created_at_ns = p.created_at_ns;
  out.updated_at_ns = p.updated_at_ns;
  std::memcpy(out.account, p.account, sizeof out.account);
  std::memcpy(out.instrument, p.instrument, sizeof out.instrument);
  for (std::size_t f = 0; f < nfields; ++f) out.values[f] = field_value(p, f);
  for (std::size_t f = nfields; f < kMaxFields; ++f) out.values[f] = 0;
}

}  // namespace poscache::shm
