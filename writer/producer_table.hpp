// The segment's producer table (shm/layout.hpp, ProducerStatus): the writer's side. Entries are
// claimed by the daemon's ring source for each producer ring it serves and kept, detached, after
// the producer leaves, until the entry is needed again (oldest detached first), so an operator
// still sees a producer that just died and its last error.
#pragma once

#include <cstdint>
#include <string_view>

#include "poscache/writer_stats.hpp"
#include "shm/layout.hpp"

namespace poscache::detail {

class ProducerTable {
 public:
  ProducerTable() = default;
  explicit ProducerTable(shm::ProducerStatus* entries) : e_(entries) {}
  // At open: entries a previous writer left attached belong to connections that died with it.
  void orphan_all(std::int64_t now) noexcept;
  int attach(std::string_view name, std::int64_t pid, std::uint32_t uid, std::int64_t now) noexcept;
  void counts(int id, const ProducerCounts& c) noexcept;
  void error(int id, std::string_view text) noexcept;
  void detach(int id, std::int64_t now) noexcept;

 private:
  shm::ProducerStatus* e_ = nullptr;
};

}  // namespace poscache::detail
