// The writer lease: only one writer writes under a prefix, and a writer that lost the lease
// writes nothing more (RedisGuard::fence; DESIGN.md "Redis", README.md "The Redis format").
//
//   {prefix}:@writer   HASH, expires (PEXPIRE) lease_ttl after its last renewal
//       epoch          this holder's epoch (decimal)
//       host, pid      who holds it (RedisConfig::host_name or gethostname(); getpid())
//       started_at_ms  when it took the lease; renewed_at_ms, expires_at_ms: its last renewal
//   {prefix}:@epoch    HASH, no expiry: the last epoch granted (epoch) and its holder's
//                      connection (client: CLIENT ID). A fresh epoch is above it and above the
//                      wall clock in µs, so it is new even after Redis lost the counter.
//
// TAKING IT (take(), in one WATCH/MULTI/EXEC so that two writers racing for it cannot both win):
//   CLIENT ID; WATCH @writer @epoch; HGETALL @writer; HGETALL @epoch; then
//   * no holder (never taken, expired, released):
//       - a writer that never held it takes a fresh epoch;
//       - a writer that held epoch E takes E again only if @epoch still says E (no other writer
//         took the lease in between: its data could be newer than ours) or is gone with the rest
//         of Redis's data (a restart without persistence, a flush); otherwise it is fenced;
//   * the holder is this writer's epoch: nothing to take (renewed);
//   * the holder is another process on this host that is gone (kill(pid, 0) says ESRCH: a
//     writer killed -9 and restarted): taken over at once, with a fresh epoch;
//   * else: refused, naming the holder (epoch, host, pid, seconds left);
//   MULTI; HSET @epoch epoch E client <our CLIENT ID>; HSET @writer ...; PEXPIRE @writer ttl;
//   CLIENT KILL ID <the previous holder's connection>; EXEC. A nil EXEC: someone touched either
//   key meanwhile; read again (a few times).
//
// THE FENCE (every write of the sync thread; writer/redis/fenced_writes.cpp):
//   WATCH @writer; HGET @writer epoch   -> ours? else stop (or take it back, as above, if it
//                                          merely expired); with the connection fence below,
//                                          the answer is read after the EXEC
//   MULTI; the batch's plain commands [; the renewal when due: a script that, if @writer still
//          holds our epoch, sets renewed_at_ms and expires_at_ms and PEXPIREs it]; EXEC
//   Redis runs EXEC only if nobody wrote @writer since the WATCH (EXEC answers nil otherwise):
//   a writer that took the lease meanwhile wrote it, so the old holder's batch is dropped
//   whole. No clock is trusted: a writer paused past its expiry (SIGSTOP, a long GC, a network
//   partition) finds another epoch, or an aborted EXEC, when it resumes.
//
// THE CONNECTION FENCE: a take kills the previous holder's connection in the same EXEC, so no
// command that holder sent runs after the take (Redis runs a transaction alone; a killed
// connection's unread commands are dropped). A holder's WATCH therefore cannot miss a take that
// came before it: its connection would be dead. That lets the sync send each fenced
// transaction (WATCH, HGET epoch, MULTI, ..., EXEC) without waiting for the epoch's answer
// first, two in flight as a plain pipeline; the answer, read afterwards, can only confirm it
// (a foreign epoch with a committed EXEC would mean a taker that could not kill us: logged as a
// broken fence, and the writer stops writing). Where the ACL forbids CLIENT KILL (its reply is
// an error: kill_fence() false), every transaction waits for its fence's answer first.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "poscache/error.hpp"
#include "poscache/redis.hpp"
#include "writer/net/redis_client.hpp"

namespace poscache::detail {

// Who holds a lease, as read from {prefix}:@writer.
struct LeaseHolder {
  std::uint64_t epoch = 0;
  std::string host;
  std::int64_t pid = 0;
  std::int64_t expires_at_ms = 0;  // its last renewal's deadline (ms since the epoch)
  // "epoch 7, host trade-1, pid 4242, expires in 8.2 s"
  [[nodiscard]] std::string describe() const;
};

class Lease {
 public:
  enum class Outcome {
    taken,      // a fresh epoch (or the holder's dead predecessor's lease taken over)
    retaken,    // ours again after it expired, nobody took another epoch meanwhile
    ours,       // it is ours and live (renewed)
    held,       // another live writer holds it: holder()
    superseded  // another writer took an epoch after ours: we write nothing more (holder() if any)
  };

  Lease(const RedisConfig& config);
  [[nodiscard]] const std::string& key() const noexcept { return key_; }
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_; }
  [[nodiscard]] const LeaseHolder& holder() const noexcept { return holder_; }
  // The last take could kill the previous holder's connection (see THE CONNECTION FENCE); else
  // why not (the error Redis gave).
  [[nodiscard]] bool kill_fence() const noexcept { return kill_fence_; }
  [[nodiscard]] const std::string& kill_error() const noexcept { return kill_error_; }
  // The last take found no {prefix}:@epoch: this Redis has never seen a writer of the prefix, or
  // it lost its data since (a restart without persistence, FLUSHALL, an evicting policy).
  [[nodiscard]] bool counter_lost() const noexcept { return counter_lost_; }

  // Takes the lease (or confirms it) on `client`; one of the outcomes above, or the connection's
  // error.
  Expected<Outcome> take(RedisClient& client);

  // The fence's opening: WATCH @writer; HGET @writer epoch (2 replies; check_fence reads them).
  void add_fence(Commands& out) const;
  // Reads add_fence's two replies: true when the lease is ours; false with holder() updated
  // (epoch 0: nobody holds it, it expired) when not; the connection's error.
  Expected<bool> check_fence(RedisClient& client);
  [[nodiscard]] bool renewal_due(std::int64_t monotonic_now) const noexcept {
    return monotonic_now >= renew_due_;
  }
  // A renewal inside a transaction: 1 command, a script that renews the lease only if it still
  // holds this writer's epoch. (Plain HSET + PEXPIRE recreated an expired lease as a hash with
  // no epoch, host or pid when a writer resumed from a pause longer than its ttl: the writer's
  // own next take found it "held" and fenced it, and standbys saw it held by nobody they could
  // name.)
  void add_renewal(Commands& out);
  // The transaction that carried a renewal committed: the next one is due a third of a ttl later.
  void renewed(std::int64_t monotonic_at) noexcept {
    renew_due_ = monotonic_at + ttl_ms_ * 1'000'000 / 3;
  }
  // Whether a take would find the lease free now: nobody holds it (never taken, expired,
  // released), or its holder is a process of this host that is gone. A standby asks this before
  // it tries to become the writer (writer/follow/follower.hpp).
  Expected<bool> vacant(RedisClient& client);
  // Deletes the lease if it is still ours (a clean close: the next writer need not wait).
  void release(RedisClient& client);

 private:
  std::string key_, epoch_key_, host_;
  std::int64_t pid_;
  std::int64_t ttl_ms_;
  std::uint64_t epoch_ = 0;
  bool kill_fence_ = false;
  bool counter_lost_ = false;
  std::string kill_error_;
  std::int64_t started_at_ms_ = 0;
  std::int64_t renew_due_ = 0;  // monotonic ns
  LeaseHolder holder_;
  Args args_;
};

const char* to_string(Lease::Outcome o) noexcept;

}  // namespace poscache::detail
