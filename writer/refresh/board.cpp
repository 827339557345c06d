#include "writer/refresh/board.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>

#include "poscache/error.hpp"
#include "shm/hash.hpp"
#include "shm/process.hpp"

namespace poscache::refresh {

using namespace shm;

namespace {

// The file of `generation` if one is there and whole, else a new one (never the old rewritten:
// readers of an older generation keep what they mapped). `fresh` says which.
void* open_file(const std::string& path, std::size_t bytes, mode_t mode, std::uint64_t magic,
                std::uint64_t generation, bool& fresh) {
  if (const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW); fd >= 0) {
    struct stat st {};
    void* p = MAP_FAILED;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<std::size_t>(st.st_size) == bytes)
      p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p != MAP_FAILED) {
      // Both headers begin with magic, then version, then (at 16) generation.
      const auto* w = static_cast<const std::uint64_t*>(p);
      if (load_acquire(&w[0]) == magic && w[2] == generation) {
        fresh = false;
        return p;
      }
      ::munmap(p, bytes);
    }
  }
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) throw Error("refresh: cannot create " + path + ": " + std::strerror(errno));
  if (::fchmod(fd, mode) != 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    ::unlink(path.c_str());
    throw Error("refresh: cannot size " + path + ": " + why);
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw Error("refresh: cannot map " + path + ": " + std::strerror(errno));
  fresh = true;
  return p;
}

}  // namespace

RequestBoard::RequestBoard(const std::string& segment, std::uint64_t generation,
                           mode_t segment_mode, std::uint32_t namespace_count)
    : requests_path_(requests_path(segment)),
      refresh_path_(refresh_path(segment)),
      wake_path_("/dev/shm/" + segment + ".wake"),
      heads_(kRequestRings, 0),
      owners_(kRequestRings, 0) {
  // Whoever may read the segment may ask (as the reader table); only the writer writes the table.
  const mode_t ask_mode = segment_mode | ((segment_mode & 0044) >> 1);
  bool fresh = false;
  requests_ =
      open_file(requests_path_, kRequestsBytes, ask_mode, kRequestsMagic, generation, fresh);
  auto* qh = static_cast<RequestsHeader*>(requests_);
  if (fresh) {
    RequestRing* rings = request_rings(requests_);
    for (std::uint32_t i = 0; i < kRequestRings; ++i)
      for (std::uint32_t c = 0; c < kRequestCells; ++c) rings[i].cells[c].seq = c;
    qh->version = kRefreshVersion;
    qh->rings = kRequestRings;
    qh->generation = generation;
    store_release(&qh->magic, kRequestsMagic);
  } else {
    // A restart after kill -9: each ring's head from its cells, not from the `head` word the
    // last writer may have died before storing. Cell c holds position p = c (mod N): seq == p
    // while it waits for p (empty), p + 1 once p is written; the head is the least such p.
    RequestRing* rings = request_rings(requests_);
    for (std::uint32_t i = 0; i < kRequestRings; ++i) {
      std::uint64_t head = UINT64_MAX;
      for (std::uint32_t c = 0; c < kRequestCells; ++c) {
        const std::uint64_t seq = load_acquire(&rings[i].cells[c].seq);
        head = std::min(head, (seq - c) % kRequestCells == 0 ? seq : seq - 1);
      }
      heads_[i] = head;
      owners_[i] = load_relaxed(&rings[i].owner);
    }
  }
  refresh_ =
      open_file(refresh_path_, kRefreshBytes, segment_mode, kRefreshMagic, generation, fresh);
  header_ = static_cast<RefreshHeader*>(refresh_);
  if (fresh) {
    header_->version = kRefreshVersion;
    header_->generation = generation;
  }
  header_->namespace_count = namespace_count;
  store_relaxed(&header_->writer_pid, static_cast<std::int64_t>(::getpid()));
  for (auto& p : header_->policy) store_relaxed(&p.refreshers, 0u);  // none registered yet
  store_release(&header_->magic, kRefreshMagic);

  wake_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (wake_fd_ < 0 || wake_path_.size() >= sizeof addr.sun_path)
    throw Error("refresh: cannot make the wake socket " + wake_path_);
  std::memcpy(addr.sun_path, wake_path_.c_str(), wake_path_.size());
  ::unlink(wake_path_.c_str());
  const mode_t old_mask = ::umask(0777);
  const int rc = ::bind(wake_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old_mask);
  if (rc != 0 || ::chmod(wake_path_.c_str(), ask_mode) != 0)
    throw Error("refresh: cannot bind " + wake_path_ + ": " + std::strerror(errno));
}

RequestBoard::~RequestBoard() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (requests_ != nullptr) ::munmap(requests_, kRequestsBytes);
  if (refresh_ != nullptr) ::munmap(refresh_, kRefreshBytes);
}

void RequestBoard::drain_wakes() noexcept {
  char buf[64];
  while (::recv(wake_fd_, buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
}

std::size_t RequestBoard::pop(std::vector<PoppedRequest>& out, std::size_t budget, bool all,
                              std::uint64_t& bad) {
  auto* qh = static_cast<RequestsHeader*>(requests_);
  RequestRing* rings = request_rings(requests_);
  std::size_t n = 0;
  for (std::uint32_t word = 0; word < kRequestRings / 64 && n < budget; ++word) {
    std::uint64_t bits = all ? ~0ULL : 0;
    if (!all) {
      if (load_relaxed(&qh->doorbell[word]) == 0) continue;
      bits = __atomic_exchange_n(&qh->doorbell[word], 0, __ATOMIC_ACQUIRE);
    }
    while (bits != 0 && n < budget) {
      const std::uint32_t i = word * 64 + static_cast<std::uint32_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
      RequestRing& r = rings[i];
      const std::uint64_t owner = load_acquire(&r.owner);
      if (owner == 0) continue;
      if (owner != owners_[i]) {  // a new reader claimed it (RQ5 reset the cells): from 0
        owners_[i] = owner;
        heads_[i] = 0;
      }
      std::uint64_t& h = heads_[i];
      bool more = false;
      while (n < budget) {
        RequestCell& c = r.cells[h % kRequestCells];
        if (load_acquire(&c.seq) != h + 1) break;  // RQ4, pairs with RQ2's release
        RequestCell copy;
        std::memcpy(static_cast<void*>(&copy), &c, sizeof copy);
        store_release(&c.seq, h + kRequestCells);
        ++h;
        PoppedRequest p;
        p.ring = i;
        const std::string_view acc(copy.account,
                                   std::min<std::size_t>(copy.account_len, kMaxAccountLen));
        const std::string_view ins(copy.instrument,
                                   std::min<std::size_t>(copy.instrument_len, kMaxInstrumentLen));
        // Any reason but rebuild (a namespace's, asked over the socket only).
        const bool ok =
            copy.ns < header_->namespace_count && copy.reason >= 1 &&
            copy.reason < kRefreshReasons &&
            copy.reason != static_cast<std::uint8_t>(RefreshReason::rebuild) &&
            valid_account(acc) && valid_instrument(ins) && copy.account_len <= kMaxAccountLen &&
            copy.instrument_len <= kMaxInstrumentLen && key_hash(copy.ns, acc, ins) == copy.hash;
        if (!ok) {
          ++bad;
          continue;
        }
        p.ns = copy.ns;
        p.reason = static_cast<RefreshReason>(copy.reason);
        p.account.assign(acc);
        p.instrument.assign(ins);
        p.hash = copy.hash;
        p.asked_at_ns = copy.asked_at_ns;
        out.push_back(std::move(p));
        ++n;
        more = true;
      }
      store_relaxed(&r.head, h);
      // Left over by the budget: ring its bell again so the next poll continues.
      if (more && n >= budget)
        __atomic_fetch_or(&qh->doorbell[word], 1ULL << (i % 64), __ATOMIC_RELAXED);
    }
  }
  return n;
}

std::size_t RequestBoard::reap() {
  RequestRing* rings = request_rings(requests_);
  std::size_t reaped = 0;
  for (std::uint32_t i = 0; i < kRequestRings; ++i) {
    RequestRing& r = rings[i];
    const std::uint64_t owner = load_acquire(&r.owner);
    if (owner == 0) continue;
    const auto pid = static_cast<pid_t>(owner & ~kRingReleased);
    bool gone = (owner & kRingReleased) != 0;
    if (!gone) {
      const bool exists = ::kill(pid, 0) == 0 || errno == EPERM;
      const std::uint64_t ticks = load_relaxed(&r.start_ticks);
      gone = !exists || (ticks != 0 && process_start_ticks(pid) != ticks);
    }
    if (!gone) continue;
    for (std::uint32_t c = 0; c < kRequestCells; ++c) store_relaxed(&r.cells[c].seq, c);
    store_relaxed(&r.tail, 0);
    store_relaxed(&r.head, 0);
    store_relaxed(&r.full_count, 0);
    store_relaxed(&r.start_ticks, 0);
    heads_[i] = 0;
    owners_[i] = 0;
    store_release(&r.owner, 0);  // RQ5: the cells are reset before anyone can claim it
    ++reaped;
  }
  return reaped;
}

std::uint64_t RequestBoard::full_counts() const noexcept {
  const RequestRing* rings = request_rings(requests_);
  std::uint64_t n = 0;
  for (std::uint32_t i = 0; i < kRequestRings; ++i) n += load_relaxed(&rings[i].full_count);
  return n;
}

std::size_t RequestBoard::rings_claimed() const noexcept {
  const RequestRing* rings = request_rings(requests_);
  std::size_t n = 0;
  for (std::uint32_t i = 0; i < kRequestRings; ++i) n += load_relaxed(&rings[i].owner) != 0;
  return n;
}

void RequestBoard::publish(std::uint64_t key_hash, PendingState state, RefreshReason reason,
                           std::int64_t time_ns) {
  const std::uint64_t h = pending_hash(key_hash);
  auto* b = reinterpret_cast<PendingBucket*>(static_cast<std::byte*>(refresh_) + kPendingOffset) +
            h % kPendingBuckets;
  const std::uint64_t word = pending_word(state, reason, time_ns);
  // This key's way, else an empty one, else the oldest decided one, else the oldest.
  PendingWay* way = nullptr;
  for (PendingWay& w : b->ways)
    if (load_relaxed(&w.hash) == h) way = &w;
  if (way != nullptr) {  // the same key: one store (a reader sees the old word or the new)
    store_release(&way->word, word);
    return;
  }
  auto age_rank = [](std::uint64_t w) {  // pending ways are replaced last
    return (pending_state(w) == PendingState::pending ? (1ULL << 62) : 0) + (w >> 8);
  };
  for (PendingWay& w : b->ways) {
    if (load_relaxed(&w.hash) == 0) {
      way = &w;
      break;
    }
    if (way == nullptr || age_rank(load_relaxed(&w.word)) < age_rank(load_relaxed(&way->word)))
      way = &w;
  }
  store_relaxed(&way->hash, 0);  // RT1
  __atomic_thread_fence(__ATOMIC_RELEASE);
  store_relaxed(&way->word, word);
  store_release(&way->hash, h);
}

void RequestBoard::wake(std::uint64_t key_hash) {
  auto* words = reinterpret_cast<std::uint32_t*>(static_cast<std::byte*>(refresh_) + kWakeOffset);
  std::uint32_t* w = &words[pending_hash(key_hash) % kWakeWords];
  store_release(w, load_relaxed(w) + 1);  // RT3
  ::syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace poscache::refresh
