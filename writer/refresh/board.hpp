// The writer's side of read-through's files (shm/refresh.hpp): it creates the request rings and
// the refresh table beside the segment, pops readers' requests (RQ4), reaps the rings of readers
// that left (RQ5), publishes what became of each key (RT1) and wakes waiting readers (RT3). It
// also owns the wake socket, /dev/shm/<segment>.wake, a datagram socket on which get_or_fetch()
// tells a sleeping apply loop to look now.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "poscache/writer.hpp"
#include "shm/refresh.hpp"

namespace poscache::refresh {

// A request as popped from a reader's ring, copied out and checked.
struct PoppedRequest {
  NamespaceId ns = 0;
  RefreshReason reason = RefreshReason::miss;
  std::string account, instrument;
  std::uint64_t hash = 0;
  std::int64_t asked_at_ns = 0;  // the reader's CLOCK_REALTIME
  std::uint32_t ring = 0;
};

class RequestBoard {
 public:
  // Creates both files afresh (or keeps those of `generation`: a restart after kill -9, whose
  // readers keep their rings) and binds the wake socket. Throws Error naming the path.
  RequestBoard(const std::string& segment, std::uint64_t generation, mode_t segment_mode,
               std::uint32_t namespace_count);
  ~RequestBoard();
  RequestBoard(const RequestBoard&) = delete;
  RequestBoard& operator=(const RequestBoard&) = delete;

  // RQ4 over the rings whose doorbell rang (every ring when `all`): at most `budget` requests.
  // A malformed cell (bad namespace, lengths, characters or hash) is skipped and counted in
  // `bad`.
  std::size_t pop(std::vector<PoppedRequest>& out, std::size_t budget, bool all,
                  std::uint64_t& bad);
  std::size_t reap();  // RQ5: rings of readers that left or died
  // RT1 (and RT3 for a terminal state).
  void publish(std::uint64_t key_hash, PendingState state, RefreshReason reason,
               std::int64_t time_ns);
  void wake(std::uint64_t key_hash);
  [[nodiscard]] shm::RefreshHeader& header() noexcept { return *header_; }
  [[nodiscard]] int wake_fd() const noexcept { return wake_fd_; }
  void drain_wakes() noexcept;                               // reads what the wake socket holds
  [[nodiscard]] std::uint64_t full_counts() const noexcept;  // readers' `full`, summed
  [[nodiscard]] std::size_t rings_claimed() const noexcept;

 private:
  std::string requests_path_, refresh_path_, wake_path_;
  void* requests_ = nullptr;
  void* refresh_ = nullptr;
  shm::RefreshHeader* header_ = nullptr;
  int wake_fd_ = -1;
  std::vector<std::uint64_t> heads_;   // RQ4: the writer's private heads, by ring
  std::vector<std::uint64_t> owners_;  // the owner word each head belongs to
};

}  // namespace poscache::refresh
