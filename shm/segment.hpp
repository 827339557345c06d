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
  not_found,        // no segment by that name
  initializing,     // a writer is still creating or loading it
  too_small,        // shorter than its header says (truncated or not ours)
  foreign_magic,    // not a poscache segment
  version_mismatch, // another layout version
  fingerprint_mismatch,  // same version, different format (another build, another ABI)
  corrupt,          // header fields inconsistent with each other
  error,            // the OS refused (permissions, ...)
};

std::string_view to_string(AttachStatus s) noexcept;

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
  [[nodiscard]] bool writable() const noexcept { return writable_; }
  [[nodiscard]] int fd() const noexcept { return fd_; }

  // Maps `size` bytes of the open fd. PROT_READ only unless `writable`.
  static Mapping map(int fd, std::size_t size, bool writable, std::string_view name);

 private:
  void reset() noexcept;
  void* base_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
  bool writable_ = false;
};

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
