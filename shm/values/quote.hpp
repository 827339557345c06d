// How error messages show text that came from outside: in single quotes, cut at `limit`
// characters, every byte that is not printable ASCII written as \xHH (hex), so a message never
// carries a control byte, a terminal escape or a broken UTF-8 sequence into a log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace poscache::detail {

inline std::string escape_byte(unsigned char c) {
  if (c >= 0x20 && c < 0x7f && c != '\\') return std::string(1, static_cast<char>(c));
  if (c == '\\') return "\\\\";
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string{'\\', 'x', kHex[c >> 4], kHex[c & 15]};
}

inline std::string quoted(std::string_view text, std::size_t limit = 64) {
  std::string s = "'";
  for (std::size_t i = 0; i < text.size() && i < limit; ++i)
    s += escape_byte(static_cast<unsigned char>(text[i]));
  if (text.size() > limit) s += "...";
  return s + "'";
}

}  // namespace poscache::detail
