// The inspector's `verify`: walks every slot and every bucket of the active index and reports any
// inconsistency between them. Read-only; safe beside a running writer: what a walk finds wrong
// with the index is judged again alone, against the index in force at that instant, as readers
// judge a read (the index epoch unmoved, the slot under its seqlock), so neither a change in
// flight nor a rebuild that replaced the index during the walk is mistaken for damage; and an
// issue is reported only if a second pass finds it again.
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
