// Wrong-token attempts on the admin endpoints, per peer (its address, not its port): after
// `max_failures` within `window` the peer is answered 429 with Retry-After until the window
// ends, even with the right token (a guesser must not learn that a guess was right). Their log
// lines are coalesced: a peer's first refusal of a period is logged at once, the rest are counted
// and told in one line per `log_every` (flush(), called by the server about once a second), so a
// guesser cannot fill the log. At most kMaxPeers are remembered; past that, new peers share one
// entry ("other peers"), which is then limited as one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace poscache::http {

struct AuthLimits {
  int max_failures = 5;  // 0: no limit
  std::chrono::milliseconds window{60'000};
  std::chrono::milliseconds log_every{10'000};
};

class AuthLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  using Log = std::function<void(const std::string&)>;  // a warning line
  static constexpr std::size_t kMaxPeers = 10'000;

  AuthLimiter(AuthLimits limits, Log log) : limits_(limits), log_(std::move(log)) {}

  // Seconds until `peer` may try again (a 429's Retry-After, counted and logged as one), or 0.
  std::int64_t refuse_for(const std::string& peer, Clock::time_point now);
  // A refused attempt (401): `why` says what was wrong with it ("wrong token", ...).
  void failed(const std::string& peer, const std::string& why, Clock::time_point now);
  void succeeded(const std::string& peer);
  // Logs what was counted in periods that have ended; forgets peers with nothing left to tell.
  void flush(Clock::time_point now);

 private:
  struct Peer {
    Clock::time_point window_start{};
    int failures = 0;  // in the window
    Clock::time_point logged_at{};
    bool ever_logged = false;
    std::uint64_t unlogged_failures = 0, unlogged_limited = 0;
  };
  Peer& entry(const std::string& peer);
  void tell(const std::string& peer, Peer& p, Clock::time_point now);  // under m_

  AuthLimits limits_;
  Log log_;
  std::mutex m_;
  std::unordered_map<std::string, Peer> peers_;
};

}  // namespace poscache::http
