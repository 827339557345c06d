#include "poscache/decimal.hpp"

#include <array>
#include <charconv>
#include <cstring>
#include <utility>

#include "shm/values/quote.hpp"

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
        // Zeros beyond the scale change nothing ("1.50000" at scale 2 is exactly 1.5): taken.
        if (c == '0') continue;
        return fail("decimal " + quoted(text) + " has more than " + std::to_string(scale) +
                    " digits after the point: the field's scale is " + std::to_string(scale) +
                    " (values are never rounded; zeros beyond it are taken)");
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

namespace {

// "00" "01" ... "99": two digits per table read.
constexpr auto kDigitPairs = [] {
  std::array<char, 200> t{};
  for (int i = 0; i < 100; ++i) {
    t[static_cast<std::size_t>(2 * i)] = static_cast<char>('0' + i / 10);
    t[static_cast<std::size_t>(2 * i + 1)] = static_cast<char>('0' + i % 10);
  }
  return t;
}();

// Writes `v` (< 10^9) as exactly 9 digits ending just before `end`.
inline void nine_digits(std::uint32_t v, char* end) noexcept {
  for (int k = 0; k < 4; ++k) {
    end -= 2;
    std::memcpy(end, &kDigitPairs[2 * (v % 100)], 2);
    v /= 100;
  }
  end[-1] = static_cast<char>('0' + v);
}

// v / 10^18 and v % 10^18. On x86-64 one `div` instruction when the quotient fits 64 bits (v
// below 1.8 * 10^37: every value up to 18 trillion at scale 18); otherwise, and elsewhere, the
// library's 128-bit division (a call of tens of ns) once, the remainder by a multiply.
inline std::pair<unsigned __int128, std::uint64_t> divide_by_1e18(unsigned __int128 v) noexcept {
  constexpr std::uint64_t k1e18 = 1'000'000'000'000'000'000ull;
#if defined(__x86_64__)
  const auto hi = static_cast<std::uint64_t>(v >> 64);
  if (hi < k1e18) {
    std::uint64_t q = static_cast<std::uint64_t>(v), r = hi;
    asm("divq %[d]" : "+a"(q), "+d"(r) : [d] "r"(k1e18) : "cc");  // rdx:rax / d -> rax, rdx
    return {q, r};
  }
#endif
  const unsigned __int128 q = v / k1e18;
  return {q, static_cast<std::uint64_t>(v - q * k1e18)};
}

}  // namespace

std::size_t format_decimal(int128 mantissa, unsigned scale, char* buf) noexcept {
  // All digits right-aligned in `tmp` (zero-padded on the left), then copied out with the point.
  // |mantissa| < 10^38: at most 38 digits, plus sign, point and a leading zero: 41 characters
  // out; `tmp` holds two peels and the last part (56 digits) or the zeros of scale 30 (31).
  //
  // Speed matters here: every decimal a Python get() returns is formatted, then parsed by
  // decimal.Decimal. A digit at a time, 20 digits were one chain of 20 dependent divisions;
  // here the value splits into independent 9-digit parts written two digits per step. A
  // magnitude above 2^64 peels 18 digits at a time first (divide_by_1e18; what is left after
  // two peels is below 10^2).
  char tmp[64];
  char* end = tmp + sizeof tmp;
  const bool negative = mantissa < 0;
  unsigned __int128 v = negative ? static_cast<unsigned __int128>(-(mantissa + 1)) + 1
                                 : static_cast<unsigned __int128>(mantissa);
  constexpr std::uint64_t k1e9 = 1'000'000'000ull;
  std::size_t n = 0;        // digits written, leading zeros of the last part included
  while (v > UINT64_MAX) {  // 18.5 tokens and up at scale 18: most prices and amounts
    const auto [quotient, chunk] = divide_by_1e18(v);
    v = quotient;
    nine_digits(static_cast<std::uint32_t>(chunk % k1e9), end - n);
    nine_digits(static_cast<std::uint32_t>(chunk / k1e9), end - n - 9);
    n += 18;
  }
  auto w = static_cast<std::uint64_t>(v);  // up to 20 digits: hi (<= 18) | mid (9) | lo (9)
  const std::uint64_t q = w / k1e9;
  nine_digits(static_cast<std::uint32_t>(w - q * k1e9), end - n);
  nine_digits(static_cast<std::uint32_t>(q % k1e9), end - n - 9);
  const auto hi = static_cast<std::uint32_t>(q / k1e9);
  std::memcpy(end - n - 20, &kDigitPairs[2 * hi], 2);
  n += 20;
  while (n < scale + 1) end[-static_cast<std::ptrdiff_t>(++n)] = '0';  // 0.000…: scale > 19
  // Drop the padding's leading zeros but keep at least one digit before the point.
  std::size_t digits = n;
  while (digits > scale + 1 && end[-static_cast<std::ptrdiff_t>(digits)] == '0') --digits;
  const char* first = end - digits;
  std::size_t out = 0;
  if (negative) buf[out++] = '-';
  const std::size_t whole = digits - scale;
  std::memcpy(buf + out, first, whole);
  out += whole;
  if (scale != 0) {
    buf[out++] = '.';
    std::memcpy(buf + out, first + whole, scale);
    out += scale;
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
