#include "writer/reader_table.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "shm/process.hpp"

namespace poscache::detail {

using namespace shm;

ReaderTable::ReaderTable(ReaderTable&& o) noexcept : base_(o.base_) {
  o.base_ = nullptr;
}
ReaderTable& ReaderTable::operator=(ReaderTable&& o) noexcept {
  if (this != &o) {
    if (base_ != nullptr) ::munmap(base_, kReaderTableBytes);
    base_ = o.base_;
    o.base_ = nullptr;
  }
  return *this;
}
ReaderTable::~ReaderTable() {
  if (base_ != nullptr) ::munmap(base_, kReaderTableBytes);
}

ReaderTable ReaderTable::open(const std::string& segment, std::uint64_t generation,
                              mode_t segment_mode, const LogSink& log) {
  const std::string path = reader_table_path(segment);
  // Whoever may read the segment may count its reads: a write bit for each class with read.
  const mode_t mode = segment_mode | ((segment_mode & 0044) >> 1);
  auto off = [&](const std::string& why) {
    if (log) {
      log(LogLevel::warn,
          "reader statistics off: " + path + ": " + why + " (readers read on, uncounted)");
    }
    return ReaderTable();
  };
  // Keep a table of this generation (a restart after kill -9: its readers go on counting).
  if (const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW); fd >= 0) {
    struct stat st {};
    void* p = MAP_FAILED;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<std::size_t>(st.st_size) == kReaderTableBytes) {
      p = ::mmap(nullptr, kReaderTableBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    ::close(fd);
    if (p != MAP_FAILED) {
      const auto* h = static_cast<const ReaderTableHeader*>(p);
      if (load_acquire(&h->magic) == kReaderTableMagic && h->version == kReaderTableVersion &&
          h->capacity == kReaderRecords && h->generation == generation) {
        ReaderTable t;
        t.base_ = p;
        t.reap();
        return t;
      }
      ::munmap(p, kReaderTableBytes);
    }
  }
  // Otherwise a new file, never the old one rewritten: readers of an older generation keep
  // counting into the records they mapped, which no reader of this one can claim.
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return off(std::strerror(errno));
  if (::fchmod(fd, mode) != 0 ||  // exactly, whatever the umask (as the segment)
      ::ftruncate(fd, static_cast<off_t>(kReaderTableBytes)) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    ::unlink(path.c_str());
    return off(why);
  }
  void* p = ::mmap(nullptr, kReaderTableBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return off(std::string("mmap: ") + std::strerror(errno));
  auto* h = static_cast<ReaderTableHeader*>(p);  // all zero: every record free
  h->version = kReaderTableVersion;
  h->capacity = kReaderRecords;
  h->generation = generation;
  store_release(&h->magic, kReaderTableMagic);  // last: RC1's claimants check it first
  ReaderTable t;
  t.base_ = p;
  return t;
}

std::size_t ReaderTable::reap() {
  if (base_ == nullptr) return 0;
  auto* h = static_cast<ReaderTableHeader*>(base_);
  ReaderRecord* recs = reader_records(base_);
  std::size_t reaped = 0;
  for (std::uint32_t i = 0; i < kReaderRecords; ++i) {
    ReaderRecord& r = recs[i];
    const std::uint64_t owner = load_acquire(&r.owner);  // RC3's release: final counts
    if (owner == 0) continue;
    const auto pid = static_cast<pid_t>(owner & ~kReleased);
    bool gone = (owner & kReleased) != 0;
    if (!gone) {
      const bool exists = ::kill(pid, 0) == 0 || errno == EPERM;
      const std::uint64_t ticks = load_relaxed(&r.start_ticks);
      // A claimant writes its start ticks just after its CAS: 0 is "not yet", not "reused".
      gone = !exists || (ticks != 0 && process_start_ticks(pid) != ticks);
    }
    if (!gone) continue;
    if (reaped == 0) {  // the first fold of this pass: summing tools retry from here
      store_relaxed(&h->reap_seq, load_relaxed(&h->reap_seq) + 1);
      __atomic_thread_fence(__ATOMIC_RELEASE);  // odd before any count moves
    }
    for (std::size_t row = 0; row < kReaderCountRows; ++row) {
      for (std::size_t c = 0; c < kReaderCounts; ++c) {
        if (const std::uint64_t n = load_relaxed(&r.counts[row][c]); n != 0) {
          add_relaxed(&h->retired[row][c], n);
          store_relaxed(&r.counts[row][c], 0);  // only lines the reader dirtied are written
        }
      }
    }
    store_relaxed(&r.start_ticks, 0);
    store_relaxed(&r.attached_at_ns, 0);
    store_relaxed(&r.name[0], 0);
    store_relaxed(&r.name[1], 0);
    // RC4: the zeroed record is published with the release; a claimant's CAS acquires it. A
    // dead owner cannot write any more; a released one has promised not to.
    store_release(&r.owner, 0);
    ++reaped;
  }
  if (reaped > 0) store_release(&h->reap_seq, load_relaxed(&h->reap_seq) + 1);  // even: done
  return reaped;
}

}  // namespace poscache::detail
