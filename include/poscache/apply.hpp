// poscache — what a Writer is asked to apply and what it answers: keys, erasures,
// invalidations, batches and their results. The vocabulary of the writer's parts (the table, the
// journal, ingest's commands); the facade, poscache/writer.hpp, includes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "poscache/schema.hpp"
#include "poscache/update.hpp"

namespace poscache {

struct KeyRef {
  NamespaceId ns = 0;
  std::string account;
  std::string instrument;
};

enum class ApplyStatus : std::uint8_t {
  inserted,
  updated,
  erased,
  not_found,     // erase of a key that is not there
  stale_source,  // source_seq older than (or equal to) the stored one: refused, counted
  bad_input,     // refused, counted; `ApplyResult::error` says why
};

std::string_view to_string(ApplyStatus s) noexcept;

struct ApplyResult {
  ApplyStatus status = ApplyStatus::bad_input;
  std::uint64_t version = 0;  // the version written (inserted/updated)
  bool evicted = false;       // an insert pushed out the least recently updated position
};

// Invalidation requests. Each removes positions and counts them as invalidations.
struct InvalidateAccount {
  std::string account;
  std::optional<NamespaceId> ns;
};
struct InvalidateNamespace {
  NamespaceId ns = 0;
};
struct InvalidateMatching {
  std::string glob;
};  // fnmatch over "ns:account:instrument"
struct InvalidateAll {};
struct Erase {
  KeyRef key;
};

using Op = std::variant<Update, Erase, InvalidateAccount, InvalidateNamespace, InvalidateMatching,
                        InvalidateAll>;

struct BatchResult {
  bool applied = false;  // false: the batch was refused whole (see error), nothing applied
  std::string error;     // names the op index and what was wrong
  std::vector<ApplyResult> results;  // one per op when applied
  std::size_t removed = 0;           // positions removed by the batch's invalidations
};

}  // namespace poscache
