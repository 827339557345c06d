#include "poscache/producer_status.hpp"

#include <cstring>

#include "shm/layout.hpp"
#include "shm/seqlock.hpp"

namespace poscache {

using namespace shm;

std::vector<ProducerInfo> producers(const Reader& reader) {
  const auto* base = static_cast<const std::byte*>(reader.mapping_base());
  const auto& h = *reinterpret_cast<const SegmentHeader*>(base);
  const Geometry g = geometry_for(h.capacity);
  const auto* table = reinterpret_cast<const ProducerStatus*>(base + g.producers_offset);
  std::vector<ProducerInfo> out;
  for (std::size_t i = 0; i < kMaxProducers; ++i) {
    const ProducerStatus& e = table[i];
    if (load_relaxed(&e.state) == static_cast<std::uint32_t>(ProducerState::free)) continue;
    // The whole entry under its seqlock: identity and error text from one write.
    ProducerStatus copy;
    const auto* words = reinterpret_cast<const std::uint64_t*>(&e) + 1;
    if (!seqlock_read_bounded(&e.seq, words, reinterpret_cast<std::uint64_t*>(&copy) + 1,
                              kProducerStatusWords))
      continue;
    ProducerInfo p;
    const auto* name = reinterpret_cast<const char*>(copy.name);
    p.name.assign(name, strnlen(name, sizeof copy.name));
    p.state =
        copy.state == static_cast<std::uint32_t>(ProducerState::attached) ? "attached" : "detached";
    p.pid = copy.pid;
    p.uid = copy.uid;
    p.attached_at_ns = copy.attached_at_ns;
    p.detached_at_ns = copy.detached_at_ns;
    p.pushed = copy.pushed;
    p.applied = copy.applied;
    p.rejected = copy.rejected;
    p.full = copy.full;
    p.synced = copy.synced;
    p.last_error.assign(reinterpret_cast<const char*>(copy.error),
                        std::min<std::size_t>(copy.error_len, sizeof copy.error));
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace poscache
