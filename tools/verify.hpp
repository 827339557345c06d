// The inspector's `verify`: walks every slot and every bucket of the active index and reports any
// inconsistency between them. Read-only; safe beside a running writer (an issue is reported only
// if a second pass finds it again, so a change in flight is not mistaken for damage).
#pragma once

#include <string>
#include <vector>

#include "poscache/reader.hpp"

namespace poscache::tools {

struct VerifyReport {
  std::uint64_t slots_checked = 0;
  std::uint64_t live_slots = 0;
  std::uint64_t buckets_checked = 0;
  std::uint64_t tombstones = 0;
  std::vector<std::string> problems;  // empty: consistent
};

VerifyReport verify(const Reader& reader);

}  // namespace poscache::tools
