#include "writer/http/front.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "poscache/error.hpp"
#include "writer/http/request_head.hpp"

namespace poscache::http {

namespace {

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

// "127.0.0.1" and "127.0.0.1:5555", or "::1" and "[::1]:5555".
std::pair<std::string, std::string> address_of(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
    return {text, std::string(text) + ":" + std::to_string(ntohs(a.sin_port))};
  }
  const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
  ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
  std::string remote(1, '[');  // not "[" + ...: GCC 12's false -Wrestrict (bug 105651)
  remote += text;
  remote += "]:";
  remote += std::to_string(ntohs(a.sin6_port));
  return {text, remote};
}

constexpr std::uint64_t kListenTag = ~std::uint64_t{0}, kWakeTag = kListenTag - 1;

}  // namespace

std::string to_wire(const HttpResponse& r, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
  if (r.status != 204) {  // a 204 has no content: no Content-Length (RFC 9110 8.6)
    out += "Content-Type: " + r.content_type +
           "\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n";
  }
  out += "Cache-Control: no-store\r\nConnection: close\r\n";
  for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  if (!head_only && r.status != 204) out += r.body;
  return out;
}

Front::Front(int listen_fd, FrontLimits limits, HttpCounters& counters, Dispatch dispatch,
             std::function<void()> each_second, Api::Log log)
    : listen_fd_(listen_fd),
      limits_(limits),
      counters_(counters),
      dispatch_(std::move(dispatch)),
      each_second_(std::move(each_second)),
      log_(std::move(log)) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  const bool ok = epoll_fd_ >= 0 && wake_fd_ >= 0 &&
                  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) == 0;
  ev.data.u64 = kWakeTag;
  if (!ok || ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    const std::string why = std::strerror(errno);
    for (const int fd : {epoll_fd_, wake_fd_, listen_fd_})
      if (fd >= 0) ::close(fd);
    throw Error("http: cannot set up epoll: " + why);
  }
  thread_ = std::thread([this] { run(); });
}

Front::~Front() {
  {
    std::lock_guard lock(answers_m_);
    stop_ = true;
  }
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  while (!conns_.empty()) close_conn(conns_.begin()->first);
  for (const int fd : {epoll_fd_, wake_fd_, listen_fd_}) ::close(fd);
}

void Front::answer(int fd, std::string bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n =
        ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      break;  // full (the front waits for room) or broken (the front's send says so)
    }
  }
  bytes.erase(0, sent);
  {
    std::lock_guard lock(answers_m_);
    answers_.emplace_back(fd, std::move(bytes));
  }
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void Front::run() {
  std::array<epoll_event, 256> events;
  auto next_second = Clock::now() + std::chrono::seconds(1);
  for (;;) {
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                               wait_ms(Clock::now()));
    const auto now = Clock::now();
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = events[static_cast<std::size_t>(i)].data.u64;
      if (tag == kListenTag) {
        accept_all(now);
      } else if (tag == kWakeTag) {
        std::uint64_t count = 0;
        (void)!::read(wake_fd_, &count, sizeof count);
        take_answers(now);
      } else {
        on_event(static_cast<int>(tag), events[static_cast<std::size_t>(i)].events, now);
      }
    }
    {
      std::lock_guard lock(answers_m_);
      if (stop_) return;
    }
    if (accept_paused_until_ != Clock::time_point{} && now >= accept_paused_until_) {
      accept_paused_until_ = {};
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenTag;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    }
    expire(now);
    if (now >= next_second) {
      next_second = now + std::chrono::seconds(1);
      if (each_second_) each_second_();
    }
  }
}

int Front::wait_ms(Clock::time_point now) const {
  auto next = now + std::chrono::seconds(1);
  const auto earliest = [&](const std::list<int>& l, std::chrono::milliseconds timeout) {
    if (!l.empty()) next = std::min(next, conns_.at(l.front()).since + timeout);
  };
  earliest(reading_, limits_.request_timeout);
  earliest(writing_, limits_.write_timeout);
  earliest(draining_, limits_.linger);
  if (accept_paused_until_ != Clock::time_point{}) next = std::min(next, accept_paused_until_);
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  return static_cast<int>(std::max<std::int64_t>(ms, 0));
}

void Front::accept_all(Clock::time_point now) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd =
        ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && evict_oldest()) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors with none to free: stop accepting for 100 ms rather than spin on a
        // listening socket that stays readable.
        log_(true, std::string("http: accept: ") + std::strerror(errno) + "; pausing 100 ms");
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        accept_paused_until_ = now + std::chrono::milliseconds(100);
      }
      return;  // EAGAIN: all taken
    }
    auto [peer, remote] = address_of(ss);
    if (const auto p = per_peer_.find(peer);
        p != per_peer_.end() && p->second >= limits_.max_per_peer) {
      HttpCounters::add(counters_.refused_peer_limit);
      refuse(fd, "too many connections from " + peer + " (max_connections_per_peer " +
                     std::to_string(limits_.max_per_peer) + ")");
      continue;
    }
    if (conns_.size() >= limits_.max_connections && !evict_oldest()) {
      HttpCounters::add(counters_.refused_total_limit);
      refuse(fd, "the server holds max_connections (" + std::to_string(limits_.max_connections) +
                     ") connections, all of them busy");
      continue;
    }
    ++per_peer_[peer];
    Conn& c = conns_[fd];
    c.peer = std::move(peer);
    c.remote = std::move(remote);
    HttpCounters::add(counters_.accepted);
    HttpCounters::add(counters_.open);
    enter(fd, c, State::reading, now);
    watch(fd, c, EPOLLIN | EPOLLRDHUP);
  }
}

// An answer that fits in a new socket's buffer, sent once, then the close: no state is kept for a
// connection that is refused.
void Front::refuse(int fd, std::string_view why) {
  HttpResponse r = error_response(503, std::string(why) + "; try again later");
  r.headers.emplace_back("Retry-After", "1");
  const std::string bytes = to_wire(r, false);
  (void)!::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::close(fd);
}

bool Front::evict_oldest() {
  if (reading_.empty()) return false;
  HttpCounters::add(counters_.evicted);
  close_conn(reading_.front());
  return true;
}

void Front::on_event(int fd, std::uint32_t events, Clock::time_point now) {
  const auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  switch (c.state) {
    case State::reading:
      on_readable(fd, c, now);
      break;
    case State::writing:
      if ((events & (EPOLLERR | EPOLLHUP)) != 0 && (events & EPOLLOUT) == 0) {
        close_conn(fd);
      } else {
        on_writable(fd, c, now);
      }
      break;
    case State::draining: {
      char scratch[4096];
      ssize_t n;
      while ((n = ::recv(fd, scratch, sizeof scratch, 0)) > 0) {
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_conn(fd);
      break;
    }
    case State::working:
      break;  // not watched
  }
}

void Front::on_readable(int fd, Conn& c, Clock::time_point now) {
  const std::size_t limit = limits_.max_head + limits_.max_body + 1;
  bool eof = false;
  char buf[16384];
  while (c.in.size() < limit) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      c.in.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      eof = true;
      break;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else {
      close_conn(fd);  // reset by the peer
      return;
    }
  }
  examine(fd, c, eof, now);
}

// The head, parsed once its empty line has arrived (searched only in new bytes: a client that
// trickles a byte at a time costs no re-parse per byte), or refused. False: not yet, or answered.
bool Front::take_head(int fd, Conn& c, bool eof, Clock::time_point now) {
  const std::string_view in = c.in;
  const std::size_t from = c.scanned > 2 ? c.scanned - 2 : 0;
  c.scanned = in.size();
  const bool ended = in.find("\n\n", from) != std::string_view::npos ||
                     in.find("\n\r\n", from) != std::string_view::npos;
  HeadParse p;
  if (ended) p = parse_head(in);
  if (p.state == HeadParse::State::bad) {
    answer_here(fd, c, error_response(p.status, p.error), now);
    return false;
  }
  if (p.state == HeadParse::State::incomplete || p.head.head_bytes > limits_.max_head) {
    if (in.size() > limits_.max_head) {
      answer_here(fd, c,
                  error_response(431, "the request head is over " +
                                          std::to_string(limits_.max_head) + " bytes"),
                  now);
    } else if (eof && in.empty()) {
      close_conn(fd);
    } else if (eof) {
      answer_here(fd, c, error_response(400, "the connection ended before the request head did"),
                  now);
    }
    return false;
  }
  const RequestHead& h = p.head;
  if ((h.method == "POST" || h.method == "PUT" || h.method == "PATCH") && h.content_length < 0) {
    answer_here(fd, c, error_response(411, "a request body needs a Content-Length"), now);
    return false;
  }
  if (h.content_length > static_cast<std::int64_t>(limits_.max_body)) {
    answer_here(fd, c,
                error_response(413, "the body is " + std::to_string(h.content_length) +
                                        " bytes; at most " + std::to_string(limits_.max_body)),
                now);
    return false;
  }
  if (h.expect_continue && h.content_length > 0 &&
      in.size() < h.head_bytes + static_cast<std::size_t>(h.content_length)) {
    // curl and others wait for this (up to a second) before they send a body.
    constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    (void)!::send(fd, kContinue.data(), kContinue.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  c.head = std::move(p.head);
  return true;
}

// What the bytes so far are: not yet a request (wait), a request to refuse (answered here), or a
// complete request (to a worker).
void Front::examine(int fd, Conn& c, bool eof, Clock::time_point now) {
  c.drain = !eof;  // a refusal may leave input unread
  if (!c.head && !take_head(fd, c, eof, now)) return;
  const std::size_t need = c.head->head_bytes + static_cast<std::size_t>(std::max<std::int64_t>(
                                                    c.head->content_length, 0));
  if (c.in.size() >= need) return dispatch(fd, c, eof, now);
  if (!eof) return;  // the rest of the body is on its way
  answer_here(fd, c,
              error_response(400, "the body ended after " +
                                      std::to_string(c.in.size() - c.head->head_bytes) + " of " +
                                      std::to_string(need - c.head->head_bytes) + " bytes"),
              now);
}

void Front::dispatch(int fd, Conn& c, bool eof, Clock::time_point now) {
  RequestHead& h = *c.head;
  const std::size_t body = static_cast<std::size_t>(std::max<std::int64_t>(h.content_length, 0));
  Job job;
  job.fd = fd;
  job.head_only = h.method == "HEAD";
  HttpRequest& req = job.request;
  req.method = std::move(h.method);
  req.path = std::move(h.path);
  req.query = std::move(h.query);
  req.authorization = std::move(h.authorization);
  req.body = c.in.substr(h.head_bytes, body);
  req.remote = c.remote;
  req.peer = c.peer;
  c.drain = !eof && c.in.size() > h.head_bytes + body;  // bytes past the request: drain them
  c.in = std::string();
  c.head.reset();
  watch(fd, c, 0);  // the worker has the socket until it answers
  enter(fd, c, State::working, now);
  HttpCounters::add(counters_.requests);
  dispatch_(std::move(job));
}

void Front::answer_here(int fd, Conn& c, const HttpResponse& r, Clock::time_point now) {
  HttpCounters::add(counters_.refused_requests);
  start_write(fd, c, to_wire(r, false), now);
}

void Front::start_write(int fd, Conn& c, std::string bytes, Clock::time_point now) {
  c.out = std::move(bytes);
  c.out_at = 0;
  enter(fd, c, State::writing, now);
  watch(fd, c, EPOLLOUT);
  on_writable(fd, c, now);
}

void Front::on_writable(int fd, Conn& c, Clock::time_point now) {
  while (c.out_at < c.out.size()) {
    const ssize_t n =
        ::send(fd, c.out.data() + c.out_at, c.out.size() - c.out_at, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      c.out_at += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;  // EPOLLOUT again when there is room
    } else {
      return close_conn(fd);
    }
  }
  if (!c.drain) return close_conn(fd);
  // Input was left unread: a close now would reset the connection, and the client could lose
  // the answer. Say we are done and read until it closes too, or the linger ends.
  ::shutdown(fd, SHUT_WR);
  c.out.clear();
  enter(fd, c, State::draining, now);
  watch(fd, c, EPOLLIN | EPOLLRDHUP);
}

void Front::take_answers(Clock::time_point now) {
  std::vector<std::pair<int, std::string>> answers;
  {
    std::lock_guard lock(answers_m_);
    answers.swap(answers_);
  }
  for (auto& [fd, rest] : answers) {
    const auto it = conns_.find(fd);
    if (it == conns_.end() || it->second.state != State::working) continue;
    start_write(fd, it->second, std::move(rest), now);
  }
}

void Front::expire(Clock::time_point now) {
  while (!reading_.empty() && conns_.at(reading_.front()).since + limits_.request_timeout <= now) {
    const int fd = reading_.front();
    HttpCounters::add(counters_.request_timeouts);
    const std::string bytes =
        to_wire(error_response(408, "the request was not complete within " +
                                        std::to_string(limits_.request_timeout.count()) + " ms"),
                false);
    (void)!::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    close_conn(fd);
  }
  while (!writing_.empty() && conns_.at(writing_.front()).since + limits_.write_timeout <= now) {
    HttpCounters::add(counters_.write_timeouts);
    close_conn(writing_.front());
  }
  while (!draining_.empty() && conns_.at(draining_.front()).since + limits_.linger <= now)
    close_conn(draining_.front());
}

std::list<int>* Front::list_of(State s) {
  switch (s) {
    case State::reading:
      return &reading_;
    case State::writing:
      return &writing_;
    case State::draining:
      return &draining_;
    case State::working:
      return nullptr;
  }
  return nullptr;
}

void Front::enter(int fd, Conn& c, State s, Clock::time_point now) {
  if (std::list<int>* from = list_of(c.state)) from->erase(c.at);
  c.state = s;
  c.since = now;
  if (std::list<int>* to = list_of(s)) c.at = to->insert(to->end(), fd);
}

void Front::watch(int fd, Conn& c, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = static_cast<std::uint64_t>(fd);
  if (events == 0) {
    if (c.watched) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    c.watched = false;
    return;
  }
  ::epoll_ctl(epoll_fd_, c.watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  c.watched = true;
}

void Front::close_conn(int fd) {
  const auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  watch(fd, c, 0);
  if (std::list<int>* l = list_of(c.state)) l->erase(c.at);
  if (const auto p = per_peer_.find(c.peer); p != per_peer_.end() && --p->second == 0)
    per_peer_.erase(p);
  ::close(fd);
  conns_.erase(it);
  counters_.open.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace poscache::http
