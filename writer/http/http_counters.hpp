// What the HTTP front (front.hpp) and the admin path count, for /metrics (poscache_http_*).
// Written by the front's thread and the workers, read by a scrape: relaxed atomics, as each is a
// count on its own that no other memory is published through.
#pragma once

#include <atomic>
#include <cstdint>

namespace poscache::http {

struct HttpCounters {
  std::atomic<std::uint64_t> open{0};                 // connections held now (a gauge)
  std::atomic<std::uint64_t> accepted{0};             // connections taken in
  std::atomic<std::uint64_t> refused_peer_limit{0};   // a peer at max_connections_per_peer
  std::atomic<std::uint64_t> refused_total_limit{0};  // at max_connections, none to evict
  std::atomic<std::uint64_t> evicted{0};  // at max_connections: the oldest unfinished request
  std::atomic<std::uint64_t> request_timeouts{0};     // request not complete in request_timeout
  std::atomic<std::uint64_t> write_timeouts{0};       // answer not taken in time by the client
  std::atomic<std::uint64_t> requests{0};             // complete requests handed to a worker
  std::atomic<std::uint64_t> refused_requests{0};     // answered by the front: 400, 411, 413...
  std::atomic<std::uint64_t> admin_auth_failures{0};  // admin requests without the right token
  std::atomic<std::uint64_t> admin_rate_limited{0};   // admin requests answered 429

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.fetch_add(n, std::memory_order_relaxed);
  }
  static std::uint64_t load(const std::atomic<std::uint64_t>& c) noexcept {
    return c.load(std::memory_order_relaxed);
  }
};

}  // namespace poscache::http
