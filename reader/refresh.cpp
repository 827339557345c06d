// Read-through on the reader's side: the request channel (shm/refresh.hpp, RQ1-RQ3, RT2) and
// Reader::request / pending / get_or_fetch.
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
#include <cstring>

#include "poscache/reader.hpp"
#include "reader/refresh_channel.hpp"
#include "shm/clock.hpp"
#include "shm/hash.hpp"
#include "shm/process.hpp"

namespace poscache {

using namespace shm;

std::string_view to_string(RequestStatus s) noexcept {
  switch (s) {
    case RequestStatus::asked:
      return "asked";
    case RequestStatus::pending:
      return "pending";
    case RequestStatus::remembered:
      return "remembered";
    case RequestStatus::full:
      return "full";
    case RequestStatus::no_refresher:
      return "no_refresher";
    case RequestStatus::unavailable:
      return "unavailable";
    case RequestStatus::bad_key:
      return "bad_key";
  }
  return "?";
}

std::string_view to_string(FetchReason r) noexcept {
  switch (r) {
    case FetchReason::cached:
      return "cached";
    case FetchReason::fetched:
      return "fetched";
    case FetchReason::absent:
      return "absent";
    case FetchReason::timeout:
      return "timeout";
    case FetchReason::failed:
      return "failed";
    case FetchReason::no_refresher:
      return "no_refresher";
    case FetchReason::unavailable:
      return "unavailable";
  }
  return "?";
}

namespace detail {
namespace {

void* map_file(const std::string& path, std::size_t bytes, bool writable, std::string& why) {
  const int fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    why = path + ": " + std::strerror(errno);
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) != bytes) {
    ::close(fd);
    why = path + ": not a file of this build (size " + std::to_string(st.st_size) + ")";
    return nullptr;
  }
  void* p =
      ::mmap(nullptr, bytes, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    why = path + ": mmap: " + std::strerror(errno);
    return nullptr;
  }
  return p;
}

bool terminal(PendingState s) noexcept {
  return s != PendingState::none && s != PendingState::pending;
}

}  // namespace

std::unique_ptr<RefreshChannel> RefreshChannel::open(std::string_view segment,
                                                     std::uint64_t generation,
                                                     std::string& why_not) {
  std::unique_ptr<RefreshChannel> c(new RefreshChannel());
  const std::string rpath = refresh_path(segment);
  c->refresh_ = map_file(rpath, kRefreshBytes, false, why_not);
  if (c->refresh_ == nullptr) return nullptr;
  c->header_ = static_cast<const RefreshHeader*>(c->refresh_);
  if (load_acquire(&c->header_->magic) != kRefreshMagic || c->header_->version != kRefreshVersion ||
      c->header_->generation != generation) {
    why_not = rpath + ": not the refresh table of this generation of the segment";
    return nullptr;
  }
  const std::string qpath = requests_path(segment);
  c->requests_ = map_file(qpath, kRequestsBytes, true, why_not);
  if (c->requests_ == nullptr) return nullptr;
  const auto* qh = static_cast<const RequestsHeader*>(c->requests_);
  if (load_acquire(&qh->magic) != kRequestsMagic || qh->generation != generation ||
      qh->rings != kRequestRings) {
    why_not = qpath + ": not the request rings of this generation of the segment";
    return nullptr;
  }
  // RQ1: a free ring (acquire pairs with RQ5's release of owner = 0: its cells are reset).
  const auto pid = static_cast<std::uint64_t>(::getpid());
  RequestRing* rings = request_rings(c->requests_);
  for (std::uint32_t i = 0; i < kRequestRings && c->ring_ == nullptr; ++i) {
    std::uint64_t expected = 0;
    if (load_relaxed(&rings[i].owner) != 0) continue;
    if (__atomic_compare_exchange_n(&rings[i].owner, &expected, pid, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
      store_relaxed(&rings[i].start_ticks, process_start_ticks(static_cast<pid_t>(pid)));
      c->ring_ = &rings[i];
      c->ring_index_ = i;
    }
  }
  if (c->ring_ == nullptr) {
    why_not = qpath + ": all " + std::to_string(kRequestRings) + " request rings are in use";
    return nullptr;
  }
  c->wake_path_ = "/dev/shm/" + std::string(segment) + ".wake";
  c->wake_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  return c;
}

RefreshChannel::~RefreshChannel() {
  // RQ5 is the writer's; the owner only marks the ring released (a forked child leaves it).
  if (ring_ != nullptr && load_relaxed(&ring_->owner) == static_cast<std::uint64_t>(::getpid()))
    store_release(&ring_->owner, static_cast<std::uint64_t>(::getpid()) | kRingReleased);
  if (requests_ != nullptr) ::munmap(requests_, kRequestsBytes);
  if (refresh_ != nullptr) ::munmap(const_cast<void*>(refresh_), kRefreshBytes);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

PendingInfo RefreshChannel::pending(std::uint64_t hash) const noexcept {
  const std::uint64_t w = pending_word(hash);
  PendingInfo info;
  if (w == 0) return info;
  info.state = pending_state(w);
  info.reason = pending_reason(w);
  info.since_ns = pending_time_ns(w);
  return info;
}

RefreshStats RefreshChannel::stats() const noexcept {
  const RefreshCounters& fc = header_->counters;
  RefreshStats s;
  for (std::size_t i = 0; i < kRefreshReasons; ++i) s.requests[i] = load_relaxed(&fc.requests[i]);
  s.deduplicated = load_relaxed(&fc.deduplicated);
  s.in_flight = load_relaxed(&fc.in_flight);
  for (std::size_t i = 0; i < 8; ++i) s.outcomes[i] = load_relaxed(&fc.answers[i]);
  s.errors = load_relaxed(&fc.errors);
  s.timeouts = load_relaxed(&fc.timeouts);
  s.refused = load_relaxed(&fc.refused);
  s.bad_requests = load_relaxed(&fc.bad_requests);
  s.refreshers = load_relaxed(&fc.refreshers);
  s.rebuilds_running = load_relaxed(&fc.rebuilds_running);
  s.rebuild_positions = load_relaxed(&fc.rebuild_positions);
  const RequestRing* rings = request_rings(requests_);
  for (std::uint32_t i = 0; i < kRequestRings; ++i)
    s.ring_full += load_relaxed(&rings[i].full_count);
  return s;
}

RequestStatus RefreshChannel::ask(NamespaceId ns, std::string_view account,
                                  std::string_view instrument, std::uint64_t hash,
                                  RefreshReason why, std::int64_t now_ns) const noexcept {
  const RefreshPolicyWords& pol = policy(ns);
  if (load_relaxed(&pol.refreshers) == 0) return RequestStatus::no_refresher;
  const std::uint64_t w = pending_word(hash);
  const auto state = shm::pending_state(w);
  const std::int64_t decided = w == 0 ? 0 : pending_time_ns(w);
  if (state == PendingState::pending && why != RefreshReason::forced) return RequestStatus::pending;
  if ((state == PendingState::absent || state == PendingState::erased) &&
      now_ns - decided < load_relaxed(&pol.negative_ttl_ns) && why != RefreshReason::forced)
    return RequestStatus::remembered;
  // A key whose refreshers just failed is not asked again at once: a failing source would get
  // every read's ask. For one try's timeout the failure stands (forced asks excepted).
  if ((state == PendingState::failed || state == PendingState::no_refresher) &&
      now_ns - decided < load_relaxed(&pol.timeout_ns) && why != RefreshReason::forced)
    return RequestStatus::remembered;
  // Asked by this reader lately, and the writer has decided nothing since: it will (or the ask
  // was lost to a full ring, and the next one after the horizon goes).
  Asked& a = asked_[(hash >> 7) % kAsked];
  const std::int64_t horizon = std::min<std::int64_t>(load_relaxed(&pol.timeout_ns), 100'000'000);
  if (load_relaxed(&a.hash) == hash && now_ns - load_relaxed(&a.at_ns) < horizon &&
      (!terminal(state) || decided < load_relaxed(&a.at_ns)))
    return RequestStatus::pending;
  const RequestStatus r = push(ns, account, instrument, hash, why, now_ns);
  if (r == RequestStatus::asked) {
    store_relaxed(&a.hash, hash);
    store_relaxed(&a.at_ns, now_ns);
  }
  return r;
}

RequestStatus RefreshChannel::push(NamespaceId ns, std::string_view account,
                                   std::string_view instrument, std::uint64_t hash,
                                   RefreshReason why, std::int64_t now_ns) const noexcept {
  RequestRing& r = *ring_;
  for (int tries = 0; tries < 16; ++tries) {  // RQ2
    const std::uint64_t pos = load_relaxed(&r.tail);
    RequestCell& c = r.cells[pos % kRequestCells];
    const std::uint64_t seq = load_acquire(&c.seq);
    const auto dif = static_cast<std::int64_t>(seq - pos);
    if (dif < 0) {
      __atomic_fetch_add(&r.full_count, 1, __ATOMIC_RELAXED);
      return RequestStatus::full;
    }
    if (dif > 0) continue;  // another thread of ours took it
    std::uint64_t expected = pos;
    if (!__atomic_compare_exchange_n(&r.tail, &expected, pos + 1, false, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
      continue;
    store_relaxed(&c.hash, hash);
    // ns, reason and the lengths in one word, so that the writer reads them with one load.
    const std::uint64_t meta = static_cast<std::uint64_t>(ns) |
                               static_cast<std::uint64_t>(why) << 8 |
                               static_cast<std::uint64_t>(account.size()) << 16 |
                               static_cast<std::uint64_t>(instrument.size()) << 24;
    std::memcpy(&c.ns, &meta, 8);
    store_relaxed(&c.asked_at_ns, now_ns);
    std::memcpy(c.account, account.data(), account.size());
    std::memcpy(c.instrument, instrument.data(), instrument.size());
    store_release(&c.seq, pos + 1);
    auto* qh = static_cast<RequestsHeader*>(requests_);  // RQ3
    __atomic_fetch_or(&qh->doorbell[ring_index_ / 64], 1ULL << (ring_index_ % 64),
                      __ATOMIC_RELEASE);
    return RequestStatus::asked;
  }
  __atomic_fetch_add(&r.full_count, 1, __ATOMIC_RELAXED);
  return RequestStatus::full;
}

void RefreshChannel::ring_doorbell_now() const noexcept {
  if (wake_fd_ < 0) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, wake_path_.c_str(),
              std::min(wake_path_.size(), sizeof addr.sun_path - 1));
  const char byte = 1;
  // A full socket buffer means the writer has wakes enough waiting: nothing to do.
  [[maybe_unused]] const ssize_t n = ::sendto(
      wake_fd_, &byte, 1, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
}

}  // namespace detail

// --- Reader -------------------------------------------------------------------------------------

namespace {
bool key_ok(std::string_view account, std::string_view instrument) noexcept {
  return !account.empty() && account.size() <= kMaxAccountLen && !instrument.empty() &&
         instrument.size() <= kMaxInstrumentLen;
}
}  // namespace

bool Reader::refresh_available() const noexcept {
  return channel() != nullptr;
}

RequestStatus Reader::request(NamespaceId ns, std::string_view account, std::string_view instrument,
                              RefreshReason why) const noexcept {
  // A rebuild is a whole namespace's, asked over the socket (poscache-feed rebuild), never by a
  // reader's ring; a reason out of range is no request either.
  const bool reason_ok = why == RefreshReason::stale || why == RefreshReason::miss ||
                         why == RefreshReason::forced || why == RefreshReason::ahead;
  if (ns >= namespaces().size() || !key_ok(account, instrument) || !reason_ok)
    return RequestStatus::bad_key;
  const detail::RefreshChannel* c = channel();
  if (c == nullptr) return RequestStatus::unavailable;
  return c->ask(ns, account, instrument, key_hash(ns, account, instrument), why, realtime_ns());
}

std::optional<RefreshStats> Reader::refresh_stats() const {
  const detail::RefreshChannel* c = channel();
  if (c == nullptr) return std::nullopt;
  return c->stats();
}

PendingInfo Reader::pending(NamespaceId ns, std::string_view account,
                            std::string_view instrument) const noexcept {
  const detail::RefreshChannel* c = channel();
  if (c == nullptr || ns >= namespaces().size() || !key_ok(account, instrument)) return {};
  return c->pending(key_hash(ns, account, instrument));
}

FetchResult Reader::get_or_fetch(NamespaceId ns, std::string_view account,
                                 std::string_view instrument, Position& out,
                                 std::chrono::nanoseconds timeout, bool force) const {
  const std::int64_t t0 = realtime_ns();
  FetchResult r;
  r.status = get(ns, account, instrument, out, t0);
  const bool fresh = r.status == ReadStatus::ok;
  if ((fresh && !force) ||
      (r.status != ReadStatus::stale && r.status != ReadStatus::not_found && !fresh)) {
    r.reason = FetchReason::cached;
    return r;
  }
  const detail::RefreshChannel* c = channel();
  if (c == nullptr) {
    r.reason = FetchReason::unavailable;
    return r;
  }
  const std::uint64_t hash = key_hash(ns, account, instrument);
  const std::uint32_t* wake = c->wake_word(hash);
  std::uint32_t seen = load_acquire(wake);  // RT3: before we look
  const RefreshReason why = force                               ? RefreshReason::forced
                            : r.status == ReadStatus::not_found ? RefreshReason::miss
                                                                : RefreshReason::stale;
  const RequestStatus asked = c->ask(ns, account, instrument, hash, why, t0);
  switch (asked) {
    case RequestStatus::no_refresher:
      r.reason = FetchReason::no_refresher;
      return r;
    case RequestStatus::remembered: {  // a recent decision stands: absent, or a failure
      const PendingState st = shm::pending_state(c->pending_word(hash));
      r.reason = st == PendingState::failed         ? FetchReason::failed
                 : st == PendingState::no_refresher ? FetchReason::no_refresher
                                                    : FetchReason::absent;
      return r;
    }
    case RequestStatus::full:
    case RequestStatus::unavailable:
    case RequestStatus::bad_key:
      r.reason = FetchReason::unavailable;
      return r;
    case RequestStatus::asked:
    case RequestStatus::pending:
      break;
  }
  c->ring_doorbell_now();
  const std::int64_t deadline = t0 + timeout.count();
  for (;;) {
    // Decided since we asked? (A de-duplicated request may have been decided by an earlier ask's
    // answer, decided after t0: it is the answer to ours too.)
    const std::uint64_t w = c->pending_word(hash);
    const auto st = shm::pending_state(w);
    const bool decided_now =
        w != 0 && pending_time_ns(w) >= t0 / 1000 * 1000 && st != PendingState::pending;
    const std::int64_t now = realtime_ns();
    r.status = get(ns, account, instrument, out, now);
    if (!force && r.status == ReadStatus::ok) {  // answered, or a producer wrote it meanwhile
      r.reason = FetchReason::fetched;
      return r;
    }
    if (decided_now) {
      switch (st) {
        case PendingState::answered:
          r.reason = FetchReason::fetched;
          break;
        case PendingState::absent:
        case PendingState::erased:
          r.reason = FetchReason::absent;
          break;
        case PendingState::no_refresher:
          r.reason = FetchReason::no_refresher;
          break;
        default:
          r.reason = FetchReason::failed;
          break;
      }
      return r;
    }
    if (now >= deadline) {
      r.reason = FetchReason::timeout;
      return r;
    }
    const std::int64_t left = deadline - now;
    timespec ts{static_cast<time_t>(left / 1'000'000'000), static_cast<long>(left % 1'000'000'000)};
    // A shared futex on the read-only mapping (FUTEX_WAIT only reads the word): returns at once
    // if the writer bumped it since `seen`.
    ::syscall(SYS_futex, wake, FUTEX_WAIT, seen, &ts, nullptr, 0);
    seen = load_acquire(wake);
  }
}

}  // namespace poscache
