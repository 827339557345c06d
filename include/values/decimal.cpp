#include "poscache/decimal.hpp"

#include <charconv>
#include <cstring>

#include "values/quote.hpp"

namespace poscache {

using detail::quoted;

Expected<int128> parse_decimal(std::string_view text, unsigned scale) {
  if (scale > kMaxScale) {
    return fail("decimal scale " + std::to_string(scale) + " exceeds the maximum " +
                std::to_string(kMaxScale));
  }
  if (text.empty()) return fail("decimal '' is empty");
  std::size_t i = 0;
  bool negative = false;
  if (text[0] == '+' || text[0] == '-') {
    negative = text[0] == '-';
    ++i;
  }
  int128 m = 0;
  unsigned int_digits = 0;
  unsigned frac_digits = 0;
  bool point = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      if (point) return fail("decimal " + quoted(text) + " has more than one '.'");
      point = true;
      continue;
    }
    if (c < '0' || c > '9') {
      return fail("decimal " + quoted(text) + " has '" +
                  detail::escape_byte(static_cast<unsigned char>(c)) + "' at position " +
                  std::to_string(i) +
                  ": expected [+-]digits[.digits] (no exponent, no separators)");
    }
    if (point) {
      if (++frac_digits > scale) {
        return fail("decimal " + quoted(text) + " has more than " + std::to_string(scale) +
                    " digits after the point: the field's scale is " + std::to_string(scale) +
                    " (values are never rounded)");
      }
    } else {
      ++int_digits;
    }
    if (m > (kDecimalLimit - 1 - (c - '0')) / 10) {  // m * 10 + digit would reach 10^38
      return fail("decimal " + quoted(text) + " overflows: at most " +
                  std::to_string(kMaxDecimalDigits) + " significant digits including the " +
                  std::to_string(scale) + " after the point");
    }
    m = m * 10 + (c - '0');
  }
  if (int_digits == 0) return fail("decimal " + quoted(text) + " has no digits before the point");
  if (point && frac_digits == 0)
    return fail("decimal " + quoted(text) + " has no digits after the point");
  for (unsigned k = frac_digits; k < scale; ++k) {
    if (m > (kDecimalLimit - 1) / 10) {
      return fail("decimal " + quoted(text) + " overflows at scale " + std::to_string(scale) +
                  ": at most " + std::to_string(kMaxDecimalDigits - scale) +
                  " digits before the point");
    }
    m *= 10;
  }
  return negative ? -m : m;
}

std::size_t format_decimal(int128 mantissa, unsigned scale, char* buf) noexcept {
  // Digits in reverse, then reversed into place. |mantissa| < 10^38 so at most 38 digits,
  // plus sign, point and a leading zero: 41 characters.
  char tmp[48];
  std::size_t n = 0;
  const bool negative = mantissa < 0;
  unsigned __int128 v = negative ? static_cast<unsigned __int128>(-(mantissa + 1)) + 1
                                 : static_cast<unsigned __int128>(mantissa);
  // 128-bit division is a library call (tens of ns): peel 19 digits at a time with one, and
  // write each chunk's digits with 64-bit arithmetic (a multiply by the reciprocal per digit).
  constexpr std::uint64_t k1e19 = 10'000'000'000'000'000'000ull;
  while (v > UINT64_MAX) {  // then v / 10^19 >= 1: the chunk's leading zeros are digits
    std::uint64_t chunk = static_cast<std::uint64_t>(v % k1e19);
    v /= k1e19;
    for (int i = 0; i < 19; ++i, chunk /= 10) tmp[n++] = static_cast<char>('0' + chunk % 10);
  }
  std::uint64_t w = static_cast<std::uint64_t>(v);
  do {
    tmp[n++] = static_cast<char>('0' + w % 10);
    w /= 10;
  } while (w != 0);
  while (n <= scale) tmp[n++] = '0';  // at least one digit before the point
  std::size_t out = 0;
  if (negative) buf[out++] = '-';
  for (std::size_t k = n; k-- > 0;) {
    buf[out++] = tmp[k];
    if (k == scale && scale != 0) buf[out++] = '.';
  }
  return out;
}

std::string format_decimal(int128 mantissa, unsigned scale) {
  char buf[48];
  return std::string(buf, format_decimal(mantissa, scale, buf));
}

Expected<std::int64_t> parse_int64(std::string_view text) {
  std::int64_t v = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  if (!text.empty() && text[0] == '+') ++first;
  const auto [ptr, ec] = std::from_chars(first, last, v);
  if (text.empty() || ec == std::errc::invalid_argument || ptr != last) {
    return fail("integer " + quoted(text) + " is not a base-10 64-bit integer");
  }
  if (ec == std::errc::result_out_of_range) {
    return fail("integer " + quoted(text) +
                " is out of the 64-bit range [-9223372036854775808, "
                "9223372036854775807]");
  }
  return v;
}

}  // namespace poscache
