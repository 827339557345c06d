// Creating, opening and checking a segment (boost::interprocess POSIX shared memory).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "poscache/schema.hpp"
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

// The one shm_open of a segment (boost::interprocess): a descriptor of its own (closed by the
// caller or the Mapping), -1 with `not_found` set if there is no segment by that name. Throws
// Error, naming the segment, for anything else the OS refuses.
int open_segment_file(std::string_view name, bool writable, bool& not_found);

// Removes /dev/shm/<name> (mappings of it stay valid). False if there was none.
bool remove_segment_file(std::string_view name);

// Creates a new segment: the file with exactly `mode` (whatever the umask), sized and every page
// allocated (a /dev/shm too small fails here, with a message that says so, not as SIGBUS
// later), mapped read-write, and formatted: identity, namespaces, every slot free, the writer
// area's free list, the first version. The state is `initializing` (readers wait); the magic is
// stored last, with release. On any failure the file is removed and Error thrown.
struct CreateSpec {
  std::string name;
  mode_t mode = 0640;
  std::uint64_t capacity = 0;
  std::vector<NamespaceSpec> namespaces;
  bool huge_pages = true;
  std::int64_t now_ns = 0;  // CLOCK_REALTIME: seeds the generation and the first version
};
Mapping create_segment(const CreateSpec& spec);

// Whether `size` is the size geometry_for() gives a segment of some capacity (what a creation
// sizes its file to before it writes anything).
bool is_segment_size(std::size_t size);

// Opens and maps a segment read-only and checks its header (magic, version, fingerprint, state,
// size). Never throws for the outcomes listed in AttachStatus.
AttachResult attach_read_only(std::string_view name);

// Checks a mapped header against this build. Used by readers and by a writer re-attaching.
AttachStatus check_header(const SegmentHeader& h, std::size_t mapped_size, std::string& message);

// Namespace descriptors (immutable in the header) and the specs they describe.
void write_namespace(NamespaceDesc& d, const NamespaceSpec& n) noexcept;
NamespaceSpec spec_of(const NamespaceDesc& d);
bool same_schema(const NamespaceDesc& d, const NamespaceSpec& n);
std::string schema_text(const NamespaceSpec& n);  // "spot{qty:decimal(8),...,stale_after=0ns,...}"
std::string namespace_names(const std::vector<NamespaceSpec>& specs);  // "spot, marks", "(none)"

// "/dev/shm/<name>" for messages and the writer's lock file.
std::string shm_path(std::string_view name);

// Segment names: 1..200 of [A-Za-z0-9._-] (a POSIX shm name without the slash).
bool valid_segment_name(std::string_view name, std::string& message);

}  // namespace poscache::shm
