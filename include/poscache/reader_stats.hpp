// poscache — what reader processes counted (for tools: poscache-inspect readers, the daemon's
// /metrics). Each Reader counts its get() answers by namespace and status into its own record of
// the reader table beside the segment (shm/reader_table.hpp) with plain relaxed stores; this
// reads them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "poscache/reader.hpp"

namespace poscache {

// get() answers by ReadStatus: ok, stale, not_found, writer_busy, writer_dead, bad_key, retired.
using ReadCounts = std::array<std::uint64_t, 7>;

struct ReaderInfo {
  std::int64_t pid = 0;
  std::string name;   // the process's command name
  std::string state;  // "reading" | "left" (released, not yet reaped) | "gone" (died, not reaped)
  std::int64_t attached_at_ns = 0;
  ReadCounts counts{};
  [[nodiscard]] std::uint64_t gets() const noexcept;
};

// Hits (ok), stale serves, misses (not_found) and the rest, of one namespace.
struct NamespaceReads {
  std::string name;  // "" for reads that named no namespace of the segment (bad_key)
  ReadCounts counts{};
};

struct ReaderTableInfo {
  std::vector<ReaderInfo> readers;  // records in use; their counts summed over namespaces
  ReadCounts retired{};             // summed from readers the writer reaped
  ReadCounts total{};               // retired + every record: only grows
  // `total` by namespace: every namespace of the segment in id order, then "" if any read named
  // none. Each only grows.
  std::vector<NamespaceReads> namespaces;
  std::uint32_t capacity = 0;
};

// Reads /dev/shm/<segment>.readers; nullopt (and why, in `why_not`) if there is none, it cannot
// be read, or it belongs to another generation of the segment.
std::optional<ReaderTableInfo> reader_table(const Reader& reader, std::string* why_not = nullptr);

}  // namespace poscache
