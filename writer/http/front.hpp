// The HTTP front: one thread with an epoll set that holds every connection from accept until its
// request is complete, and again while its answer is written. Only a complete request (head and
// body, parsed: request_head.hpp) reaches a worker, so a client that connects and says nothing,
// or trickles a byte at a time, costs a file descriptor and a few hundred bytes, never a worker.
//
// Why this and not civetweb's options: Debian 12's civetweb (1.15) gives each connection a worker
// thread from accept to close, and reads a request head with blocking calls bounded only by
// request_timeout_ms. With 2 workers, two idle sockets stop the API; 500 of them stopped it for
// minutes (issue 30). No option of 1.15 changes that model: more threads only move the number.
// A front of our own is ~400 lines, and its parser (request_head.cpp) accepts only what the API
// needs; Boost.Beast would parse more than we serve and bring Asio to one room of the daemon.
//
// Limits, each with its counter (http_counters.hpp) and config key ([http], configuration.md):
//   - request_timeout: from accept to the request's last byte (head and body). Past it: 408, close.
//   - max_connections_per_peer: per client address. Over it: 503 at once, close.
//   - max_connections: over it, the oldest connection still sending its request is closed to make
//     room (an idle flood cannot keep a fresh probe out); with none to close: 503, close.
//   - write timeout (10 s) for an answer the client does not read, and a linger of 500 ms to drain
//     what a client sent past a refused request before the close (else the close resets it and
//     the client may never read the refusal).
// Connections live in lists ordered by when they entered their state: as every connection of a
// state has the same timeout, the list's head is the next to expire and the oldest to evict, O(1).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "writer/http/api.hpp"
#include "writer/http/request_head.hpp"

namespace poscache::http {

struct FrontLimits {
  std::chrono::milliseconds request_timeout{3000};
  std::chrono::milliseconds write_timeout{10'000};
  std::chrono::milliseconds linger{500};
  std::size_t max_connections = 4096;
  std::size_t max_per_peer = 64;
  std::size_t max_head = 16 * 1024;  // request line and headers
  std::size_t max_body = kMaxBody;
};

// A complete request taken off its connection; a worker answers it with Front::answer(fd, ..).
struct Job {
  int fd = -1;
  HttpRequest request;
  bool head_only = false;  // HEAD: the answer's head without its body
};

// An answer as bytes on the wire: status line, headers (Content-Length always but for a 204,
// Connection: close) and the body unless `head_only`.
std::string to_wire(const HttpResponse& r, bool head_only);

class Front {
 public:
  using Dispatch = std::function<void(Job&&)>;  // on the front's thread: must not block
  // Takes `listen_fd` (bound, listening, non-blocking) and starts its thread. `each_second` runs
  // on that thread about once a second.
  Front(int listen_fd, FrontLimits limits, HttpCounters& counters, Dispatch dispatch,
        std::function<void()> each_second, Api::Log log);
  ~Front();  // stops the thread and closes every connection and the listening socket
  Front(const Front&) = delete;
  Front& operator=(const Front&) = delete;

  // Any thread (a worker): the answer for the connection of a dispatched Job. What the socket
  // takes at once is sent here; the rest, and the connection's end, go to the front's thread.
  void answer(int fd, std::string bytes);

 private:
  using Clock = std::chrono::steady_clock;
  enum class State { reading, working, writing, draining };
  struct Conn {
    State state = State::working;  // a state without a list until enter()
    std::string peer, remote;      // address; address and port
    std::string in, out;
    std::size_t scanned = 0;          // bytes of `in` searched for the head's end
    std::optional<RequestHead> head;  // once complete: the body may still be on its way
    std::size_t out_at = 0;
    bool drain = false;       // input may be left unread: shut down and drain before closing
    bool watched = false;     // in the epoll set
    Clock::time_point since;  // entered its state
    std::list<int>::iterator at;
  };

  void run();
  void accept_all(Clock::time_point now);
  void refuse(int fd, std::string_view why);
  bool evict_oldest();
  void on_event(int fd, std::uint32_t events, Clock::time_point now);
  void on_readable(int fd, Conn& c, Clock::time_point now);
  void examine(int fd, Conn& c, bool eof, Clock::time_point now);
  bool take_head(int fd, Conn& c, bool eof, Clock::time_point now);  // false: not yet, or refused
  void dispatch(int fd, Conn& c, bool eof, Clock::time_point now);
  void answer_here(int fd, Conn& c, const HttpResponse& r, Clock::time_point now);
  void start_write(int fd, Conn& c, std::string bytes, Clock::time_point now);
  void on_writable(int fd, Conn& c, Clock::time_point now);
  void take_answers(Clock::time_point now);
  void expire(Clock::time_point now);
  int wait_ms(Clock::time_point now) const;
  void enter(int fd, Conn& c, State s, Clock::time_point now);  // moves it to the state's list
  void watch(int fd, Conn& c, std::uint32_t events);            // 0: out of the epoll set
  void close_conn(int fd);
  std::list<int>* list_of(State s);

  int listen_fd_, epoll_fd_ = -1, wake_fd_ = -1;
  FrontLimits limits_;
  HttpCounters& counters_;
  Dispatch dispatch_;
  std::function<void()> each_second_;
  Api::Log log_;
  std::unordered_map<int, Conn> conns_;
  std::unordered_map<std::string, std::size_t> per_peer_;
  std::list<int> reading_, writing_, draining_;  // each ordered by Conn::since
  Clock::time_point accept_paused_until_{};      // out of descriptors: accept again after it
  std::mutex answers_m_;
  std::vector<std::pair<int, std::string>> answers_;  // from workers: fd, bytes left to send
  bool stop_ = false;                                 // under answers_m_
  std::thread thread_;
};

}  // namespace poscache::http
