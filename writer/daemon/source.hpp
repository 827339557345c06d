// What feeds the apply loop. poscache-writer polls every source in turn; each applies at most
// `budget` changes per poll and returns how many it applied, so one busy source cannot starve
// the others or the writer's tick(). The one source so far is the synthetic generator
// (--generate); producer rings, a unix socket and a Redis stream are to plug in here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "poscache/writer.hpp"

namespace poscache::daemon {

class Source {
 public:
  virtual ~Source() = default;
  virtual std::size_t poll(Writer& writer, std::int64_t now_ns, std::size_t budget) = 0;
  [[nodiscard]] virtual std::string name() const = 0;
};

}  // namespace poscache::daemon
