// poscache — namespaces, their schemas, and the key rules.
//
// A namespace is a book, venue or protocol ("spot", "moonwell", "alpaca"). Its schema lists the
// fields every position in it may carry; it is fixed when the writer creates the segment and
// stored in the segment header, so every reader sees the same schema the writer used.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "poscache/error.hpp"

namespace poscache {

inline constexpr std::size_t kMaxNamespaces = 32;
inline constexpr std::size_t kMaxFields = 16;
inline constexpr std::size_t kMaxNameLen = 31;        // namespace and field names
inline constexpr std::size_t kMaxAccountLen = 64;     // e.g. a 44-char base58 wallet
inline constexpr std::size_t kMaxInstrumentLen = 64;  // e.g. a mint, an ERC-20 address, "BTC-USD"

enum class FieldType : std::uint8_t {
  decimal = 1,    // exact, int128 mantissa at the field's scale
  int64 = 2,      // signed 64-bit integer (block numbers, counts)
  timestamp = 3,  // nanoseconds since the Unix epoch, signed 64-bit
  text = 4,       // UTF-8 up to the field's `length` bytes, no NUL (an asset address, a status)
};

std::string_view to_string(FieldType type) noexcept;

struct FieldSpec {
  std::string name;
  FieldType type = FieldType::decimal;
  std::uint8_t scale = 0;   // decimals only
  std::uint8_t length = 0;  // text only: the most bytes it holds, 1..kMaxTextLen
};

// Value slots. A position holds kMaxFields slots of 16 bytes. A number takes one; a text field
// takes ceil(length / 16) consecutive ones. Text fields follow every numeric field in a schema,
// so a numeric field's slot is its index; a text field's first slot is field_slot().
inline constexpr std::size_t kValueSlotBytes = 16;
inline constexpr std::size_t kMaxTextLen = 128;
constexpr std::size_t slots_of(const FieldSpec& f) noexcept {
  return f.type == FieldType::text ? (f.length + kValueSlotBytes - 1) / kValueSlotBytes : 1;
}
// The first slot of field `field` (fields before it, text ones counted by their slots).
inline std::size_t field_slot(const std::vector<FieldSpec>& fields, std::size_t field) noexcept {
  std::size_t slot = 0;
  for (std::size_t i = 0; i < field && i < fields.size(); ++i) slot += slots_of(fields[i]);
  return slot;
}
// Slots the schema uses (<= kMaxFields for a valid one).
inline std::size_t value_slots(const std::vector<FieldSpec>& fields) noexcept {
  return field_slot(fields, fields.size());
}

struct NamespaceSpec {
  std::string name;
  std::vector<FieldSpec> fields;
  // A read of a position older than stale_after still returns it, flagged stale (0 = never).
  std::chrono::nanoseconds stale_after{0};
  // The writer removes a position not updated for expire_after (0 = never).
  std::chrono::nanoseconds expire_after{0};
};

// A text field's value: UTF-8, no NUL, at most `length` bytes. The error names the field, the
// limit, and the offending byte's offset.
Expected<bool> validate_text(const FieldSpec& field, std::string_view value);
bool valid_text(std::string_view value, std::size_t length) noexcept;

// Presets (docs/concepts.md, "Namespaces: keys and values"). Scales: token quantities and prices at
// 18 decimals; lending collateral and debt are integer base units of an 18-decimal token (scale 0,
// up to 10^38 base units = 10^20 tokens), thresholds and health in WAD (18 decimals).
NamespaceSpec preset_trading(std::string name);
NamespaceSpec preset_lending(std::string name);  // + collateral_asset, debt_asset: text(48)
NamespaceSpec preset_quote(std::string name);    // stale_after 1 s, expire_after 60 s
// "trading" | "lending" | "quote" → the preset, else a failure naming the preset.
Expected<NamespaceSpec> preset(std::string_view preset_name, std::string name);

// Checks a schema (name alphabet and length, field count, duplicate names, scales, text lengths
// and their place after the numeric fields, the slots they take, TTLs).
Expected<bool> validate(const NamespaceSpec& spec);

// Key part rules. Errors name the part, the value and the limit.
//   namespace:  1..31 of [a-z0-9_], starting with a letter
//   account:    1..64 of [A-Za-z0-9._-]
//   instrument: 1..64 of [A-Za-z0-9._/-]
// None of them may contain ':', '{', '}' or glob characters, so the Redis key
// "{prefix}:{ns}:{{account}}:{instrument}" and a glob over "ns:account:instrument" are unambiguous.
Expected<bool> validate_namespace_name(std::string_view ns);
Expected<bool> validate_account(std::string_view account);
Expected<bool> validate_instrument(std::string_view instrument);
// The same checks without building an error: for the writer's apply path, which builds the
// message with validate_*() only when these say no.
bool valid_account(std::string_view account) noexcept;
bool valid_instrument(std::string_view instrument) noexcept;

}  // namespace poscache
