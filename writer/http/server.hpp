// The daemon's HTTP listener: the front (front.hpp: one epoll thread holds every connection until
// its request is complete, with a deadline and caps per peer and in all) and a pool of workers
// that run the Api (api.hpp) on complete requests only. Why not civetweb, which served it before:
// front.hpp.
//
// Two lanes: the probes (/health, /health/live, /health/ready, /metrics) have a worker of their
// own besides the `threads` workers, which take probes too when idle. A read-through request may
// wait up to 30 s for a refresher (?timeout=30s): even `threads` of them at once leave the probes
// an answer.
//
// The apply loop never waits for it: handlers read the segment like any reader, the loop's
// counters come from a LoopBoard copy, and invalidations go through the AdminQueue.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "writer/http/api.hpp"
#include "writer/http/front.hpp"

namespace poscache::http {

struct ServerConfig {
  std::string listen = "127.0.0.1:9108";  // host:port; port 0 picks a free one
  int threads = 2;                        // workers, besides the probes' own
  FrontLimits limits;
};

class Server {
 public:
  // Starts listening; throws poscache::Error naming the address if it cannot. Raises the soft
  // RLIMIT_NOFILE up to what max_connections needs (within the hard limit); if the hard limit is
  // lower, max_connections is lowered to fit and a warning says so.
  Server(const ServerConfig& config, std::unique_ptr<Api> api, Api::Log log);
  ~Server();  // stops: queued and in-flight requests are answered first
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] int port() const noexcept { return port_; }  // the bound port
  [[nodiscard]] std::size_t max_connections() const noexcept { return limits_.max_connections; }

 private:
  void work(bool probes_only);
  void push(Job&& job);

  std::unique_ptr<Api> api_;
  Api::Log log_;
  FrontLimits limits_;
  int port_ = 0;
  std::mutex m_;
  std::condition_variable ready_;
  std::deque<Job> probes_, others_;  // under m_
  bool stopping_ = false;            // under m_
  std::vector<std::thread> workers_;
  std::unique_ptr<Front> front_;  // stopped after the workers, which answer through it
};

// The admin token from `path`: its first line, without surrounding whitespace. Throws
// poscache::Error if the file cannot be read, is empty, or is readable or writable by group or
// others (mode 0600 or 0400, as for an SSH key: the token is a password).
std::string read_admin_token(const std::string& path);

// "127.0.0.1:9108", "[::1]:9108", "9108" (→ 127.0.0.1:9108) or "0.0.0.0:9108"; an error names
// what is wrong.
Expected<std::string> parse_listen(std::string_view text);

}  // namespace poscache::http
