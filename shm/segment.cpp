#include "shm/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

namespace poscache::shm {

namespace bip = boost::interprocess;

// glibc 2.36 (Debian 12) names MADV_POPULATE_WRITE but not MADV_COLLAPSE (Linux 6.1,
// <asm-generic/mman-common.h>). Older kernels answer EINVAL, which map() handles.
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

std::string_view to_string(AttachStatus s) noexcept {
  switch (s) {
    case AttachStatus::ok:
      return "ok";
    case AttachStatus::not_found:
      return "not_found";
    case AttachStatus::initializing:
      return "initializing";
    case AttachStatus::too_small:
      return "too_small";
    case AttachStatus::foreign_magic:
      return "foreign_magic";
    case AttachStatus::version_mismatch:
      return "version_mismatch";
    case AttachStatus::fingerprint_mismatch:
      return "fingerprint_mismatch";
    case AttachStatus::corrupt:
      return "corrupt";
    case AttachStatus::error:
      return "error";
  }
  return "unknown";
}

std::string shm_path(std::string_view name) {
  return "/dev/shm/" + std::string(name);
}

bool valid_segment_name(std::string_view name, std::string& message) {
  if (name.empty() || name.size() > 200) {
    message = "segment name '" + std::string(name) + "' must be 1 to 200 characters";
    return false;
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      message = "segment name '" + std::string(name) + "' has '" + std::string(1, c) +
                "': allowed are letters, digits, '.', '_' and '-'";
      return false;
    }
  }
  if (name == "." || name == "..") {
    message = "segment name '" + std::string(name) + "' is not allowed";
    return false;
  }
  return true;
}

Mapping::Mapping(Mapping&& o) noexcept
    : base_(o.base_), size_(o.size_), fd_(o.fd_), collapse_error_(std::move(o.collapse_error_)) {
  o.base_ = nullptr;
  o.size_ = 0;
  o.fd_ = -1;
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    reset();
    base_ = o.base_;
    size_ = o.size_;
    fd_ = o.fd_;
    collapse_error_ = std::move(o.collapse_error_);
    o.base_ = nullptr;
    o.size_ = 0;
    o.fd_ = -1;
  }
  return *this;
}

Mapping::~Mapping() {
  reset();
}

void Mapping::reset() noexcept {
  if (base_ != nullptr) ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
  base_ = nullptr;
  size_ = 0;
  fd_ = -1;
}

namespace {

// A free range of address space `size` bytes long starting on a 2 MiB boundary, or nullptr to
// let the kernel choose (mappings under 2 MiB cannot hold a huge page anyway). The range is
// reserved PROT_NONE and the slack around the aligned part released; the caller maps over it
// with MAP_FIXED, which is safe because the reservation still owns exactly that range.
void* aligned_range(std::size_t size) noexcept {
  if (size < kHugePageSize) return nullptr;
  void* r = ::mmap(nullptr, size + kHugePageSize, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<std::uintptr_t>(r);
  const std::uintptr_t aligned = (start + kHugePageSize - 1) & ~(std::uintptr_t{kHugePageSize} - 1);
  if (aligned > start) ::munmap(r, aligned - start);
  const std::uintptr_t end = start + size + kHugePageSize;
  if (end > aligned + size)
    ::munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

Mapping Mapping::map(int fd, std::size_t size, bool writable, std::string_view name,
                     HugePages huge) {
  const int prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ;
  const bool collapse = huge == HugePages::collapse && writable && size >= kHugePageSize;
  // A 2 MiB-aligned start, so that pages of the file that are huge are mapped huge: one TLB
  // entry per 2 MiB instead of 512, which a random access over 512 MiB otherwise misses.
  void* want = aligned_range(size);
  // MAP_POPULATE: fault every page in now, at open, so no get() ever takes a page fault (a
  // kernel entry on the hot path, microseconds each the first time a page is touched). A
  // mapping about to be collapsed is populated after the collapse instead (below): populating
  // 4 KiB pages first would only make the collapse copy them.
  void* p = ::mmap(want, size, prot,
                   MAP_SHARED | (want ? MAP_FIXED : 0) | (collapse ? 0 : MAP_POPULATE), fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    if (want != nullptr) ::munmap(want, size);
    ::close(fd);
    throw Error("cannot map segment '" + std::string(name) + "' (" + std::to_string(size) +
                " bytes): " + std::strerror(err));
  }
  // Ask for transparent huge pages for whatever the kernel faults in later. For /dev/shm the
  // tmpfs mount option decides (huge=advise honours this hint; within_size and always give huge
  // pages regardless; the default, never, ignores it). Failure is harmless and ignored.
  ::madvise(p, size, MADV_HUGEPAGE);
  Mapping m;
  m.base_ = p;
  m.size_ = size;
  m.fd_ = fd;
  if (collapse) {
    // MADV_COLLAPSE (Linux 6.1) rebuilds the file's pages as 2 MiB pages whatever the mount
    // option says (only shmem_enabled=deny refuses). It works on the page cache, so every process
    // that maps the file 2 MiB-aligned afterwards (the readers) maps it huge too. It needs the
    // pages allocated (posix_fallocate did) but not mapped. Failure leaves 4 KiB pages, which
    // work the same, only slower: the error is kept for the writer's log.
    // A range whose huge page could not be had right then (EAGAIN, ENOMEM: compaction lost a
    // race) is tried again; ranges already collapsed are skipped at once.
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (::madvise(p, size, MADV_COLLAPSE) == 0) {
        m.collapse_error_.clear();
        break;
      }
      const int err = errno;
      m.collapse_error_ = std::strerror(err);
      if (err != EAGAIN && err != ENOMEM) break;
    }
    if (::madvise(p, size, MADV_POPULATE_WRITE) != 0) {
      // Before Linux 5.14: map again, populated, over the same range.
      void* q = ::mmap(p, size, prot, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0);
      if (q == MAP_FAILED) {
        const int err = errno;
        throw Error("cannot map segment '" + std::string(name) + "' (" + std::to_string(size) +
                    " bytes): " + std::strerror(err));  // m unmaps and closes
      }
    }
  }
  return m;
}

std::uint64_t huge_mapped_bytes(const void* base, std::size_t size) {
  FILE* f = std::fopen("/proc/self/smaps", "re");
  if (f == nullptr) return 0;
  const auto lo = reinterpret_cast<std::uintptr_t>(base);
  const std::uintptr_t hi = lo + size;
  char line[512];
  bool in = false;
  std::uint64_t kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    // A VMA's header line starts with its range in lowercase hex; its detail lines ("Rss:",
    // "ShmemPmdMapped:", ...) start with a capital letter.
    unsigned long start = 0, end = 0;
    if (((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) &&
        std::sscanf(line, "%lx-%lx", &start, &end) == 2) {
      in = start < hi && end > lo;
      continue;
    }
    unsigned long long v = 0;
    if (in && (std::sscanf(line, "ShmemPmdMapped: %llu kB", &v) == 1 ||
               std::sscanf(line, "FilePmdMapped: %llu kB", &v) == 1))
      kb += v;
  }
  std::fclose(f);
  return kb << 10;
}

int open_segment_file(std::string_view name, bool writable, bool& not_found) {
  const std::string n(name);
  not_found = false;
  int fd = -1;
  try {
    // boost::interprocess opens /dev/shm/<name> with shm_open; we keep our own dup of the
    // descriptor for the mapping, so the object's lifetime does not matter.
    bip::shared_memory_object shm(bip::open_only, n.c_str(),
                                  writable ? bip::read_write : bip::read_only);
    fd = ::dup(shm.get_mapping_handle().handle);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::not_found_error) {
      not_found = true;
      return -1;
    }
    throw Error("cannot open segment '" + n + "' (" + shm_path(n) + "): " + e.what());
  }
  if (fd < 0) throw Error("cannot open segment '" + n + "': " + std::strerror(errno));
  return fd;
}

bool remove_segment_file(std::string_view name) {
  return bip::shared_memory_object::remove(std::string(name).c_str());
}

bool is_segment_size(std::size_t size) {
  std::uint64_t lo = 1, hi = kMaxCapacity;
  while (lo < hi) {  // the smallest capacity whose segment is at least `size`
    const std::uint64_t mid = lo + (hi - lo) / 2;
    if (geometry_for(mid).segment_size < size)
      lo = mid + 1;
    else
      hi = mid;
  }
  return geometry_for(lo).segment_size == size;
}

Mapping create_segment(const CreateSpec& spec) {
  const std::string& name = spec.name;
  const Geometry g = geometry_for(spec.capacity);
  int fd = -1;
  try {
    bip::permissions perm(spec.mode);
    bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write, perm);
    fd = ::dup(shm.get_mapping_handle().handle);
  } catch (const bip::interprocess_exception& e) {
    throw Error("cannot create segment '" + name + "' (" + shm_path(name) + "): " + e.what());
  }
  auto fail_and_remove = [&](const std::string& msg) {
    if (fd >= 0) ::close(fd);
    remove_segment_file(name);
    throw Error(msg);
  };
  if (fd < 0) fail_and_remove("cannot create segment '" + name + "': " + std::strerror(errno));
  if (::fchmod(fd, spec.mode) != 0) {  // exactly the mode asked for, whatever the umask
    fail_and_remove("cannot set mode of " + shm_path(name) + ": " + std::strerror(errno));
  }
  if (::ftruncate(fd, static_cast<off_t>(g.segment_size)) != 0) {
    fail_and_remove("cannot size segment '" + name + "' to " + std::to_string(g.segment_size) +
                    " bytes: " + std::strerror(errno));
  }
  // Allocate every page now: a /dev/shm too small fails here, not as SIGBUS on a later write.
  if (const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(g.segment_size)); err != 0) {
    fail_and_remove("cannot allocate " + std::to_string(g.segment_size) + " bytes (" +
                    std::to_string(g.segment_size >> 20) + " MiB) for segment '" + name +
                    "' with capacity " + std::to_string(spec.capacity) + " in /dev/shm: " +
                    std::strerror(err) + " (lower the capacity or enlarge /dev/shm)");
  }
  Mapping m;
  try {
    m = Mapping::map(fd, g.segment_size, true, name,
                     spec.huge_pages ? HugePages::collapse : HugePages::keep);
  } catch (...) {
    remove_segment_file(name);  // map() closed the descriptor
    throw;
  }
  // The file is zero-filled: readers attaching now see an empty header and wait (initializing).
  auto* base = static_cast<std::byte*>(m.base());
  auto& h = *reinterpret_cast<SegmentHeader*>(base);
  h.layout_version = kLayoutVersion;
  h.header_size = sizeof(SegmentHeader);
  h.layout_fingerprint = layout_fingerprint();
  std::random_device rd;
  h.generation =
      (static_cast<std::uint64_t>(spec.now_ns) ^ (static_cast<std::uint64_t>(rd()) << 32)) | 1u;
  h.capacity = g.capacity;
  h.index_buckets = g.index_buckets;
  h.segment_size = g.segment_size;
  h.slots_offset = g.slots_offset;
  h.index_offset[0] = g.index_offset[0];
  h.index_offset[1] = g.index_offset[1];
  h.writer_offset = g.writer_offset;
  h.namespace_count = static_cast<std::uint32_t>(spec.namespaces.size());
  for (std::size_t i = 0; i < spec.namespaces.size(); ++i)
    write_namespace(h.namespaces[i], spec.namespaces[i]);
  store_relaxed(&h.state, static_cast<std::uint32_t>(SegmentState::initializing));
  // Every slot free (free_slot_payload(): the file is zero, so only the namespace is stored, one
  // line per slot instead of seven), every slot on the free list. Slot seqs start at 0 (even).
  auto* slots = reinterpret_cast<Slot*>(base + g.slots_offset);
  auto* book = reinterpret_cast<SlotBook*>(base + g.book_offset);
  auto* links = reinterpret_cast<std::uint32_t*>(base + g.links_offset);
  const auto cap = static_cast<std::uint32_t>(g.capacity);
  for (std::uint32_t s = 0; s < cap; ++s) {
    reinterpret_cast<SlotPayload*>(slots[s].payload)->ns = kFreeNamespace;
    book[s] = SlotBook{s + 1 < cap ? s + 1 : kNil, kNil, 0, 0};
    links[s] = kNil;
  }
  auto& wa = *reinterpret_cast<WriterArea*>(base + g.writer_offset);
  wa.free_head = 0;
  // Versions start at the wall clock in ns and count up by one per change: a writer that starts
  // over on a new segment still hands out versions above any it handed out before (it would have
  // to apply more than one change per ns to catch up), so Redis keeps its newer changes. A warm
  // start raises it above every version loaded.
  wa.next_version = static_cast<std::uint64_t>(std::max<std::int64_t>(1, spec.now_ns));
  // Magic last among the identity words: a reader whose acquire load sees it sees a complete
  // header (check_header).
  store_release(&h.magic, kMagic);
  return m;
}

AttachStatus check_header(const SegmentHeader& h, std::size_t mapped_size, std::string& message) {
  auto hex = [](std::uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "0x%016llx", static_cast<unsigned long long>(v));
    return std::string(b);
  };
  const std::uint64_t magic = load_acquire(&h.magic);  // pairs with the creator's release
  if (magic == 0 && h.layout_version == 0) {
    message =
        "segment header is still empty: expected state ready, found initializing (a writer "
        "is creating it; retry)";
    return AttachStatus::initializing;
  }
  if (magic != kMagic) {
    message = "not a poscache segment: expected magic " + hex(kMagic) + ", found " + hex(magic);
    return AttachStatus::foreign_magic;
  }
  if (h.layout_version != kLayoutVersion) {
    message = "layout version mismatch: expected " + std::to_string(kLayoutVersion) + ", found " +
              std::to_string(h.layout_version) + " (segment written by another poscache release)";
    return AttachStatus::version_mismatch;
  }
  if (h.layout_fingerprint != layout_fingerprint()) {
    message = "layout fingerprint mismatch: expected " + hex(layout_fingerprint()) + ", found " +
              hex(h.layout_fingerprint) + " (segment written by an incompatible build)";
    return AttachStatus::fingerprint_mismatch;
  }
  if (h.header_size != sizeof(SegmentHeader) || h.capacity == 0 || h.capacity > kMaxCapacity ||
      h.namespace_count > kMaxNamespaces) {
    message = "corrupt header: header_size " + std::to_string(h.header_size) + " (expected " +
              std::to_string(sizeof(SegmentHeader)) + "), capacity " + std::to_string(h.capacity) +
              ", namespace_count " + std::to_string(h.namespace_count);
    return AttachStatus::corrupt;
  }
  const Geometry g = geometry_for(h.capacity);
  if (h.index_buckets != g.index_buckets || h.slots_offset != g.slots_offset ||
      h.index_offset[0] != g.index_offset[0] || h.index_offset[1] != g.index_offset[1] ||
      h.writer_offset != g.writer_offset || h.segment_size != g.segment_size) {
    message = "corrupt header: region offsets do not match capacity " + std::to_string(h.capacity);
    return AttachStatus::corrupt;
  }
  if (mapped_size < h.segment_size) {
    message = "segment too small: expected " + std::to_string(h.segment_size) + " bytes, found " +
              std::to_string(mapped_size);
    return AttachStatus::too_small;
  }
  const auto state = static_cast<SegmentState>(load_acquire(&h.state));
  if (state == SegmentState::initializing) {
    message =
        "segment is initializing: expected state ready, found initializing (writer still "
        "creating or loading it; retry)";
    return AttachStatus::initializing;
  }
  if (state != SegmentState::ready && state != SegmentState::closed &&
      state != SegmentState::retired) {
    message = "corrupt header: unknown state " + std::to_string(static_cast<unsigned>(state));
    return AttachStatus::corrupt;
  }
  return AttachStatus::ok;
}

AttachResult attach_read_only(std::string_view name) {
  AttachResult r;
  if (!valid_segment_name(name, r.message)) {
    r.status = AttachStatus::error;
    return r;
  }
  const std::string n(name);
  int fd = -1;
  bool not_found = false;
  try {
    fd = open_segment_file(n, false, not_found);
  } catch (const Error& e) {
    r.status = AttachStatus::error;
    r.message = e.what();
    return r;
  }
  if (not_found) {
    r.status = AttachStatus::not_found;
    r.message = "no segment named '" + n + "' (" + shm_path(n) + " does not exist)";
    return r;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) < sizeof(SegmentHeader)) {
    ::close(fd);
    r.status = AttachStatus::too_small;
    r.message = "segment '" + n + "' is " + std::to_string(st.st_size) +
                " bytes: expected at least a " + std::to_string(sizeof(SegmentHeader)) +
                "-byte header (a writer may be creating it; retry)";
    return r;
  }
  try {
    r.mapping = Mapping::map(fd, static_cast<std::size_t>(st.st_size), false, n);
  } catch (const Error& e) {
    r.status = AttachStatus::error;
    r.message = e.what();
    return r;
  }
  const auto& h = *static_cast<const SegmentHeader*>(r.mapping.base());
  r.status = check_header(h, r.mapping.size(), r.message);
  if (r.status != AttachStatus::ok) {
    r.message = "segment '" + n + "': " + r.message;
    r.mapping = Mapping();
  }
  return r;
}

}  // namespace poscache::shm
