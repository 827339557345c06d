// poscache — the producers the writer serves, as the segment's producer table records them
// (for tools: poscache-inspect producers). Each attached producer ring has an entry; a producer
// that left keeps its entry, detached, until the entry is needed again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "poscache/reader.hpp"

namespace poscache {

struct ProducerInfo {
  std::string name;
  std::string state;  // "attached" | "detached"
  std::int64_t pid = 0;
  std::uint32_t uid = 0;
  std::int64_t attached_at_ns = 0, detached_at_ns = 0;  // CLOCK_REALTIME
  std::uint64_t pushed = 0, applied = 0, rejected = 0, full = 0, synced = 0;
  std::string last_error;
};

// Every entry in use, in table order. An entry the writer is rewriting at that moment (a few
// nanoseconds) is read again, up to a bound, then left out.
std::vector<ProducerInfo> producers(const Reader& reader);

}  // namespace poscache
