#include "writer/ingest/socket_source.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace poscache::ingest {
namespace {
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxBufferedInput = 4 * kMaxJsonLine;  // stop reading a client beyond this

std::string errno_text() {
  return std::strerror(errno);
}
}  // namespace

std::string default_socket_path(const std::string& segment) {
  return "/dev/shm/" + segment + ".sock";
}

SocketSource::SocketSource(const SocketConfig& config, const std::vector<NamespaceSpec>& namespaces,
                           LogSink log)
    : path_(config.path),
      max_clients_(config.max_clients),
      decoder_(namespaces),
      log_(std::move(log)) {
  sockaddr_un addr{};
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path))
    throw Error("ingest socket: path '" + path_ + "' must have 1 to " +
                std::to_string(sizeof(addr.sun_path) - 1) + " characters");
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw Error("ingest socket: socket(): " + errno_text());
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size());
  // A socket file left by a previous daemon (killed, so it never unlinked it): only one writer
  // per segment runs (the writer lock), so the file is ours to replace.
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      ::close(listen_fd_);
      throw Error("ingest socket: '" + path_ + "' exists and is not a socket; not replacing it");
    }
    ::unlink(path_.c_str());
  }
  // Created with no permissions at all, then given its mode: no window in which a client the
  // mode would refuse can connect.
  const mode_t old_mask = ::umask(0777);
  const int rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old_mask);
  if (rc != 0) {
    const std::string e = errno_text();
    ::close(listen_fd_);
    throw Error("ingest socket: cannot bind '" + path_ + "': " + e);
  }
  if (!config.group.empty()) {
    const group* g = ::getgrnam(config.group.c_str());
    if (g == nullptr || ::chown(path_.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
      const std::string e = g == nullptr ? "no such group" : errno_text();
      ::close(listen_fd_);
      ::unlink(path_.c_str());
      throw Error("ingest socket: cannot give '" + path_ + "' to group '" + config.group +
                  "': " + e);
    }
  }
  if (::chmod(path_.c_str(), config.effective_mode()) != 0 || ::listen(listen_fd_, 128) != 0) {
    const std::string e = errno_text();
    ::close(listen_fd_);
    ::unlink(path_.c_str());
    throw Error("ingest socket: cannot set up '" + path_ + "': " + e);
  }
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
}

SocketSource::~SocketSource() {
  for (auto& [fd, c] : clients_) {
    flush(c);
    ::close(fd);
  }
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }
}

void SocketSource::accept_all() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: no more waiting
    ucred cred{};
    socklen_t len = sizeof cred;
    ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
    if (clients_.size() >= max_clients_) {
      const std::string msg = encode_error(
          "too many clients (" + std::to_string(max_clients_) + "); try again later", "");
      [[maybe_unused]] auto n = ::write(fd, msg.data(), msg.size());
      ::close(fd);
      if (log_)
        log_(LogLevel::warn, "ingest socket: refused pid " + std::to_string(cred.pid) + ": " +
                                 std::to_string(max_clients_) + " clients already");
      continue;
    }
    Client& c = clients_[fd];
    c.fd = fd;
    c.id = next_id_++;
    c.interest = EPOLLIN | EPOLLRDHUP;
    c.pid = cred.pid;
    c.uid = cred.uid;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    if (log_)
      log_(LogLevel::info, "ingest socket: client connected, uid " + std::to_string(cred.uid) +
                               " pid " + std::to_string(cred.pid));
  }
}

// Backpressure: a client with kMaxPendingReplies bytes of replies unread is not read from until
// it has taken them.
void SocketSource::want_write(Client& c, bool on) {
  const bool backlogged = c.out.size() - c.out_sent >= kMaxPendingReplies;
  const std::uint32_t want = (backlogged ? 0u : static_cast<std::uint32_t>(EPOLLIN | EPOLLRDHUP)) |
                             (on ? static_cast<std::uint32_t>(EPOLLOUT) : 0u);
  if (want == c.interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = c.fd;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  c.interest = want;
}

bool SocketSource::flush(Client& c) {
  while (c.out_sent < c.out.size()) {
    const ssize_t n =
        ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      want_write(c, true);
      return true;
    }
    return false;  // EPIPE, ECONNRESET: the client is gone
  }
  c.out.clear();
  c.out_sent = 0;
  want_write(c, false);
  return true;
}

void SocketSource::drop(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  if (log_)
    log_(LogLevel::info,
         "ingest socket: client pid " + std::to_string(it->second.pid) + " disconnected");
  if (rings_ != nullptr) rings_->hang_up(it->second.id);
  if (handler_ != nullptr) handler_->client_gone(it->second.id);
  for (int f : it->second.fds) ::close(f);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  clients_.erase(it);
}

void SocketSource::handle_line(Client& c, CommandExecutor& exec, std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find_first_not_of(" \t") == std::string_view::npos) return;  // blank: no reply
  if (line.find("\"attach_ring\"") != std::string_view::npos) {
    attach_ring(c, line);
    return;
  }
  if (handler_ != nullptr) {
    if (auto reply = handler_->handle(c.id, c.pid, line, exec)) {
      c.out += *reply;
      return;
    }
  }
  ++counters_.received;
  auto decoded = decoder_.decode(line);
  if (auto* f = std::get_if<JsonDecoder::Failure>(&decoded)) {
    ++counters_.rejected;
    exec.writer().count_reject();
    c.out += encode_error(f->error, f->id);
    return;
  }
  const DecodedLine& d = std::get<DecodedLine>(decoded);
  const CommandResult r = exec.execute(d.command);
  count(counters_, r);
  const std::size_t kind = d.command.index();
  const bool admin = std::holds_alternative<Erase>(d.command) || (kind >= 2 && kind <= 5);
  if (admin && log_) {
    log_(LogLevel::info, "ingest socket: " + std::string(line.substr(0, 200)) + " from uid " +
                             std::to_string(c.uid) + " pid " + std::to_string(c.pid) + ": " +
                             std::string(to_string(r.status)) + ", " + std::to_string(r.count) +
                             " removed");
  }
  c.out += encode_reply(r, d.id);
}

// {"op":"attach_ring","name":"..."} with one descriptor: a producer hands over its ring.
void SocketSource::attach_ring(Client& c, std::string_view line) {
  if (c.fds.empty()) {
    c.out +=
        encode_error("attach_ring: no descriptor came with the line (send it with SCM_RIGHTS)", "");
    return;
  }
  const int fd = c.fds.front();
  c.fds.erase(c.fds.begin());
  std::string why = rings_ == nullptr ? "attach_ring: this writer serves no producer rings"
                                      : rings_->attach(fd, c.id, c.pid, c.uid);
  ::close(fd);  // the mapping (if any) keeps the ring
  if (!why.empty()) {
    if (log_)
      log_(LogLevel::warn,
           "ingest socket: ring from pid " + std::to_string(c.pid) + " refused: " + why);
    c.out += encode_error("attach_ring: " + why, "");
    return;
  }
  (void)line;
  c.out += "{\"status\":\"applied\",\"ring\":\"attached\"}\n";
}

bool SocketSource::send_to(std::uint64_t id, const std::string& line) {
  for (auto& [fd, c] : clients_) {
    if (c.id != id) continue;
    c.out += line;
    if (!flush(c)) c.eof = true;  // gone: dropped at the next poll
    return true;
  }
  return false;
}

std::size_t SocketSource::serve(Client& c, CommandExecutor& exec, std::size_t budget) {
  std::size_t handled = 0;
  std::size_t pos = 0;
  while (handled < budget && c.out.size() - c.out_sent < kMaxPendingReplies) {
    const std::size_t nl = c.in.find('\n', pos);
    if (nl == std::string::npos) break;
    if (c.skipping) {
      c.skipping = false;  // the rest of an over-long line: dropped, already answered
    } else {
      handle_line(c, exec, std::string_view(c.in).substr(pos, nl - pos));
      ++handled;
    }
    pos = nl + 1;
  }
  c.in.erase(0, pos);
  if (c.in.size() > kMaxJsonLine && c.in.find('\n') == std::string::npos) {
    if (!c.skipping) {
      ++counters_.received;
      ++counters_.rejected;
      exec.writer().count_reject();
      c.out += encode_error(
          "line longer than " + std::to_string(kMaxJsonLine) + " bytes; skipped up to its newline",
          "");
    }
    c.skipping = true;
    c.in.clear();
  }
  return handled;
}

std::size_t SocketSource::poll(CommandExecutor& exec, std::int64_t, std::size_t budget) {
  epoll_event events[64];
  const int n = ::epoll_wait(epoll_fd_, events, 64, 0);
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == listen_fd_) {
      accept_all();
      continue;
    }
    auto it = clients_.find(fd);
    if (it == clients_.end()) continue;
    Client& c = it->second;
    if ((events[i].events & EPOLLOUT) != 0 && !flush(c)) {
      drop(fd);
      continue;
    }
    if ((events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
      char buf[kReadChunk];
      while (c.in.size() < kMaxBufferedInput) {
        // recvmsg, not read: a producer's ring descriptor may come with the bytes.
        iovec iov{buf, sizeof buf};
        alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        const ssize_t r = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); r >= 0 && cm != nullptr;
             cm = CMSG_NXTHDR(&msg, cm)) {
          if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
          const std::size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          for (std::size_t j = 0; j < k; ++j) {
            int passed;
            std::memcpy(&passed, CMSG_DATA(cm) + j * sizeof(int), sizeof passed);
            if (c.fds.size() < 4)
              c.fds.push_back(passed);
            else
              ::close(passed);  // more than a producer ever sends: not kept
          }
        }
        if (r > 0) {
          c.in.append(buf, static_cast<std::size_t>(r));
          continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) c.eof = true;
        break;
      }
    }
  }
  // Serve every client with buffered lines, in turn, within the budget (a client whose lines
  // were left over by the budget is served on the next poll without a new event).
  std::size_t handled = 0;
  std::vector<int> gone;
  for (auto& [fd, c] : clients_) {
    if (c.eof && !c.in.empty() && c.in.back() != '\n') c.in += '\n';  // a last unended line
    if (handled < budget && !c.in.empty()) handled += serve(c, exec, budget - handled);
    if (!c.out.empty() && !flush(c)) {
      gone.push_back(fd);
      continue;
    }
    if (c.eof && c.in.find('\n') == std::string::npos) gone.push_back(fd);
  }
  for (int fd : gone) drop(fd);
  return handled;
}

}  // namespace poscache::ingest
