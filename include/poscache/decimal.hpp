// poscache — exact fixed-point decimals on a 128-bit mantissa.
//
// A field of type decimal has a scale fixed by its schema: the stored mantissa m means
// m / 10^scale. Text converts both ways exactly: parse("1.50", 2) == 150 and
// format(150, 2) == "1.50". Nothing is rounded: more fractional digits than the scale, or a
// magnitude of 10^38 or more (38 significant digits always fit in 127 bits), is an error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "poscache/error.hpp"

namespace poscache {

using int128 = __int128;

inline constexpr unsigned kMaxDecimalDigits = 38;  // |mantissa| < 10^38
inline constexpr unsigned kMaxScale = 30;          // scale of a decimal field

// 10^38: every mantissa has magnitude strictly below this.
inline constexpr int128 kDecimalLimit = [] {
  int128 v = 1;
  for (unsigned i = 0; i < kMaxDecimalDigits; ++i) v *= 10;
  return v;
}();

// Parses `[+-]digits[.digits]` at `scale`. Errors name the text and the rule it broke.
Expected<int128> parse_decimal(std::string_view text, unsigned scale);

// Formats exactly `scale` fractional digits ("-0.050" for -50 at scale 3). No allocation
// beyond the returned string. Writes into `buf` (at least 42 bytes) and returns the length.
std::size_t format_decimal(int128 mantissa, unsigned scale, char* buf) noexcept;
std::string format_decimal(int128 mantissa, unsigned scale);

// Parses a signed 64-bit integer ("-42"), naming the text on error.
Expected<std::int64_t> parse_int64(std::string_view text);

}  // namespace poscache
