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
};

std::string_view to_string(FieldType type) noexcept;

struct FieldSpec {
  std::string name;
  FieldType type = FieldType::decimal;
  std::uint8_t scale = 0;  // decimals only
};

struct NamespaceSpec {
  std::string name;
  std::vector<FieldSpec> fields;
  // A read of a position older than stale_after still returns it, flagged stale (0 = never).
  std::chrono::nanoseconds stale_after{0};
  // The writer removes a position not updated for expire_after (0 = never).
  std::chrono::nanoseconds expire_after{0};
};

// Presets (DESIGN.md "Keys and values"). Scales: token quantities and prices at 18 decimals;
// lending collateral and debt are integer base units of an 18-decimal token (scale 0, up to
// 10^38 base units = 10^20 tokens), thresholds and health in WAD (18 decimals).
NamespaceSpec preset_trading(std::string name);
NamespaceSpec preset_lending(std::string name);
NamespaceSpec preset_quote(std::string name);  // stale_after 1 s, expire_after 60 s
// "trading" | "lending" | "quote" → the preset, else a failure naming the preset.
Expected<NamespaceSpec> preset(std::string_view preset_name, std::string name);

// Checks a schema (name alphabet and length, field count, duplicate names, scales, TTLs).
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
