// A position's key as text, "ns:account:instrument": what globs (invalidate_matching, scan
// filters, the Redis sync's pattern removals) are matched against and what tools print. No key
// part may contain ':' (values/schema.cpp), so the text is unambiguous. Built into a caller's
// buffer: the loops that match every position allocate once, not per position.
#pragma once

#include <fnmatch.h>

#include <string>
#include <string_view>

namespace poscache::detail {

inline void key_text(std::string& out, std::string_view ns, std::string_view account,
                     std::string_view instrument) {
  out.assign(ns).append(1, ':').append(account).append(1, ':').append(instrument);
}

// fnmatch(3) of `glob` (NUL-terminated) against the key's text, built in `scratch`.
inline bool key_matches(const char* glob, std::string& scratch, std::string_view ns,
                        std::string_view account, std::string_view instrument) {
  key_text(scratch, ns, account, instrument);
  return fnmatch(glob, scratch.c_str(), 0) == 0;
}

}  // namespace poscache::detail
