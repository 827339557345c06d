// Creating, opening and checking a segment (boost::interprocess POSIX shared memory).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "shm/layout.hpp"

namespace poscache::shm {

// Outcome of attaching to a segment, stated explicitly (never a bare bool).
enum class AttachStatus {
  ok,
  not_found,             // no segment by that name
  initializing,          // a writer is still creating or loading it
  too_small,             // shorter than its header says (truncated or not ours)
  foreign_magic,         // not a poscache segment
  version_mismatch,      // another layout version
  fingerprint_mismatch,  // same version, different format (another build, another ABI)
  corrupt,               // header fields inconsistent with each other
  error,                 // the OS refused (permissions, ...)
};

std::string_view to_string(AttachStatus s) noexcept;

inline constexpr std::size_t kHugePageSize = std::size_t{2} << 20;

// Whether Mapping::map turns the file's pages into 2 MiB pages (writers, at creation) or maps
// them as they are (readers, re-attaching writers: a collapse under attached readers would make
// their next reads fault and wait for it).
enum class HugePages { keep, collapse };

// A mapping of a whole segment. Move-only; unmaps on destruction.
class Mapping {
 public:
  Mapping() = default;
  Mapping(Mapping&&) noexcept;
  Mapping& operator=(Mapping&&) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  [[nodiscard]] void* base() const noexcept { return base_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  // Maps `size` bytes of the open fd at a 2 MiB-aligned address, populated. PROT_READ only
  // unless `writable`. Takes the fd (closed with the mapping, or on failure).
  static Mapping map(int fd, std::size_t size, bool writable, std::string_view name,
                     HugePages huge = HugePages::keep);

  // Why HugePages::collapse left 4 KiB pages (strerror of MADV_COLLAPSE), empty if it did not.
  [[nodiscard]] const std::string& collapse_error() const noexcept { return collapse_error_; }

 private:
  void reset() noexcept;
  void* base_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
  std::string collapse_error_;
};

// Bytes of [base, base + size) this process maps with 2 MiB page-table entries, read from
// /proc/self/smaps (0 if unreadable). System calls and parsing: not for a hot path.
std::uint64_t huge_mapped_bytes(const void* base, std::size_t size);

struct AttachResult {
  AttachStatus status = AttachStatus::error;
  std::string message;  // "expected … found …" for mismatches
  Mapping mapping;
};

// Opens and maps a segment read-only and checks its header (magic, version, fingerprint, state,
// size). Never throws for the outcomes listed in AttachStatus.
AttachResult attach_read_only(std::string_view name);

// Checks a mapped header against this build. Used by readers and by a writer re-attaching.
AttachStatus check_header(const SegmentHeader& h, std::size_t mapped_size, std::string& message);

// "/dev/shm/<name>" for messages and the writer's lock file.
std::string shm_path(std::string_view name);

// Segment names: 1..200 of [A-Za-z0-9._-] (a POSIX shm name without the slash).
bool valid_segment_name(std::string_view name, std::string& message);

}  // namespace poscache::shm
