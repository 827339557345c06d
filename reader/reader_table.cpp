#include "reader/reader_table.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

#include "poscache/reader_stats.hpp"
#include "shm/clock.hpp"
#include "shm/process.hpp"

namespace poscache {

using namespace shm;

namespace detail {

namespace {

// Maps the table; null (and why) if it is missing, unreadable or not of `generation`.
void* map_table(std::string_view segment, std::uint64_t generation, bool writable,
                std::string& why) {
  const std::string path = reader_table_path(segment);
  const int fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    why = path + ": " + std::strerror(errno);
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) != kReaderTableBytes) {
    ::close(fd);
    why = path + ": not a reader table of this build (size " + std::to_string(st.st_size) + ")";
    return nullptr;
  }
  void* p = ::mmap(nullptr, kReaderTableBytes, writable ? PROT_READ | PROT_WRITE : PROT_READ,
                   MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    why = path + ": mmap: " + std::strerror(errno);
    return nullptr;
  }
  const auto* h = static_cast<const ReaderTableHeader*>(p);
  if (load_acquire(&h->magic) != kReaderTableMagic || h->version != kReaderTableVersion ||
      h->capacity != kReaderRecords || h->generation != generation) {
    ::munmap(p, kReaderTableBytes);
    why = path + ": not the reader table of this generation of the segment";
    return nullptr;
  }
  return p;
}

struct Self {
  std::uint64_t pid = 0, start_ticks = 0;
  char comm[16] = {};
};
// This process (read again after a fork: a child must not claim under its parent's pid).
Self self() {
  static thread_local Self cached;
  const auto pid = static_cast<std::uint64_t>(::getpid());
  if (cached.pid != pid) {
    Self x;
    x.pid = pid;
    x.start_ticks = process_start_ticks(static_cast<pid_t>(pid));
    std::ifstream f("/proc/self/comm");
    std::string name;
    std::getline(f, name);
    std::memcpy(x.comm, name.data(), std::min(name.size(), sizeof x.comm));
    cached = x;
  }
  return cached;
}

}  // namespace

ReaderClaim ReaderClaim::claim(std::string_view segment, std::uint64_t generation,
                               std::string& why_not) {
  ReaderClaim c;
  c.base_ = map_table(segment, generation, true, why_not);
  if (c.base_ == nullptr) return c;
  const Self me = self();
  ReaderRecord* recs = reader_records(c.base_);
  for (std::uint32_t i = 0; i < kReaderRecords; ++i) {
    std::uint64_t expected = 0;
    if (load_relaxed(&recs[i].owner) != 0) continue;
    // RC1: acquire pairs with the reaper's release of owner = 0: the counts we see are zero.
    if (__atomic_compare_exchange_n(&recs[i].owner, &expected, me.pid, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
      ReaderRecord& r = recs[i];
      store_relaxed(&r.start_ticks, me.start_ticks);
      store_relaxed(&r.attached_at_ns, realtime_ns());
      std::uint64_t words[2];
      std::memcpy(words, me.comm, sizeof words);
      store_relaxed(&r.name[0], words[0]);
      store_relaxed(&r.name[1], words[1]);
      c.record_ = &r;
      return c;
    }
  }
  why_not = reader_table_path(segment) + ": all " + std::to_string(kReaderRecords) +
            " records are in use";
  ::munmap(c.base_, kReaderTableBytes);
  c.base_ = nullptr;
  return c;
}

ReaderClaim::ReaderClaim(ReaderClaim&& o) noexcept : base_(o.base_), record_(o.record_) {
  o.base_ = nullptr;
  o.record_ = nullptr;
}
ReaderClaim& ReaderClaim::operator=(ReaderClaim&& o) noexcept {
  if (this != &o) {
    release();
    base_ = o.base_;
    record_ = o.record_;
    o.base_ = nullptr;
    o.record_ = nullptr;
  }
  return *this;
}
ReaderClaim::~ReaderClaim() {
  release();
}

void ReaderClaim::release() noexcept {
  // A forked child that inherited this Reader leaves the record to the process that claimed it.
  if (record_ != nullptr &&
      load_relaxed(&record_->owner) == static_cast<std::uint64_t>(::getpid())) {
    // RC3: release orders our last counts before the mark the reaper acquires.
    store_release(&record_->owner, static_cast<std::uint64_t>(::getpid()) | kReleased);
  }
  record_ = nullptr;
  if (base_ != nullptr) ::munmap(base_, kReaderTableBytes);
  base_ = nullptr;
}

}  // namespace detail

std::uint64_t ReaderInfo::gets() const noexcept {
  std::uint64_t n = 0;
  for (const std::uint64_t c : counts) n += c;
  return n;
}

namespace {
// `rows` (kReaderCountRows x kReaderCounts words) added to `by_row`; their sum to `sum`.
using RowCounts = std::array<ReadCounts, kReaderCountRows>;
void add_rows(const std::uint64_t (*rows)[kReaderCounts], RowCounts& by_row, ReadCounts& sum) {
  for (std::size_t row = 0; row < kReaderCountRows; ++row) {
    for (std::size_t c = 0; c < sum.size(); ++c) {
      const std::uint64_t n = load_relaxed(&rows[row][c]);
      by_row[row][c] += n;
      sum[c] += n;
    }
  }
}

ReaderTableInfo read_table(const ReaderTableHeader* h, const ReaderRecord* recs,
                           const std::vector<NamespaceInfo>& names) {
  ReaderTableInfo t;
  t.capacity = h->capacity;
  RowCounts by_row{};
  add_rows(h->retired, by_row, t.retired);
  t.total = t.retired;
  for (std::uint32_t i = 0; i < kReaderRecords; ++i) {
    const ReaderRecord& r = recs[i];
    const std::uint64_t owner = load_acquire(&r.owner);
    if (owner == 0) continue;
    ReaderInfo info;
    info.pid = static_cast<std::int64_t>(owner & ~kReleased);
    const auto pid = static_cast<pid_t>(info.pid);
    if (owner & kReleased) {
      info.state = "left";
    } else {
      const bool exists = ::kill(pid, 0) == 0 || errno == EPERM;
      const std::uint64_t ticks = load_relaxed(&r.start_ticks);
      info.state = exists && (ticks == 0 || process_start_ticks(pid) == ticks) ? "reading" : "gone";
    }
    char name[17] = {};
    const std::uint64_t words[2] = {load_relaxed(&r.name[0]), load_relaxed(&r.name[1])};
    std::memcpy(name, words, 16);
    info.name = name;
    info.attached_at_ns = load_relaxed(&r.attached_at_ns);
    add_rows(r.counts, by_row, info.counts);
    for (std::size_t c = 0; c < info.counts.size(); ++c) t.total[c] += info.counts[c];
    t.readers.push_back(std::move(info));
  }
  for (std::size_t ns = 0; ns < names.size() && ns < kMaxNamespaces; ++ns)
    t.namespaces.push_back({names[ns].name, by_row[ns]});
  const ReadCounts& none = by_row[kNoNamespaceRow];
  if (std::any_of(none.begin(), none.end(), [](std::uint64_t n) { return n != 0; }))
    t.namespaces.push_back({"", none});
  return t;
}
}  // namespace

std::optional<ReaderTableInfo> reader_table(const Reader& reader, std::string* why_not) {
  std::string why;
  void* p = detail::map_table(reader.segment_name(), reader.generation(), false, why);
  if (p == nullptr) {
    if (why_not) *why_not = why;
    return std::nullopt;
  }
  const auto* h = static_cast<const ReaderTableHeader*>(p);
  const ReaderRecord* recs = reader_records(p);
  ReaderTableInfo t;
  for (int attempt = 0; attempt < 100; ++attempt) {  // RC4: retry while the writer folds
    const std::uint64_t seq = load_acquire(&h->reap_seq);
    if (seq & 1) continue;
    t = read_table(h, recs, reader.namespaces());
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (load_relaxed(&h->reap_seq) == seq) break;
  }
  ::munmap(p, kReaderTableBytes);
  return t;
}

}  // namespace poscache
