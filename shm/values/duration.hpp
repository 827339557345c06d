// One duration syntax for every program and the config file: a non-negative number with a unit,
// ns, us, ms, s, m or h ("250ms", "1.5s", "2m"), or "0". The flags that took plain seconds
// before (poscache-inspect health --max-sync-lag, poscache-feed replay --timeout, simulate and
// load --seconds) still take a bare number as seconds (`bare_is_seconds`); everywhere else a bare
// number is refused, so "flush_interval = 5" cannot mean five seconds by mistake.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "poscache/error.hpp"

namespace poscache::detail {

inline Expected<std::chrono::nanoseconds> parse_duration(std::string_view text,
                                                         bool bare_is_seconds = false) {
  const std::string shown = "duration '" + std::string(text) + "'";
  const std::string_view units = "a non-negative number with a unit (ns, us, ms, s, m, h)";
  std::size_t i = 0;
  std::int64_t whole = 0, frac = 0, frac_scale = 1;
  bool digits = false;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, digits = true) {
    if (whole > (INT64_MAX - 9) / 10) return fail(shown + " is too long");
    whole = whole * 10 + (text[i] - '0');
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, digits = true) {
      if (frac_scale == 1'000'000'000) return fail(shown + " is finer than a nanosecond");
      frac = frac * 10 + (text[i] - '0');
      frac_scale *= 10;
    }
  }
  if (!digits) return fail(shown + " must be " + std::string(units));
  const std::string_view unit = text.substr(i);
  std::int64_t mult = 0;
  if (unit.empty()) {
    if (whole == 0 && frac == 0) return std::chrono::nanoseconds{0};
    if (!bare_is_seconds)
      return fail(shown + " has no unit: write it as " + std::string(text) + "s, " +
                  std::string(text) + "ms, ... (ns, us, ms, s, m, h)");
    mult = 1'000'000'000;
  } else if (unit == "ns") {
    mult = 1;
  } else if (unit == "us") {
    mult = 1'000;
  } else if (unit == "ms") {
    mult = 1'000'000;
  } else if (unit == "s") {
    mult = 1'000'000'000;
  } else if (unit == "m") {
    mult = 60'000'000'000;
  } else if (unit == "h") {
    mult = 3'600'000'000'000;
  } else {
    return fail(shown + " has unit '" + std::string(unit) + "': expected ns, us, ms, s, m or h");
  }
  if (whole > INT64_MAX / mult) return fail(shown + " is too long");
  if (frac != 0 && mult % frac_scale != 0) return fail(shown + " is finer than a nanosecond");
  const std::int64_t part = frac == 0 ? 0 : frac * (mult / frac_scale);
  if (whole * mult > INT64_MAX - part) return fail(shown + " is too long");
  return std::chrono::nanoseconds{whole * mult + part};
}

}  // namespace poscache::detail
