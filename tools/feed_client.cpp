#include "tools/feed_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace poscache::feed {

SocketClient::SocketClient(const std::string& path) : path_(path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    throw std::runtime_error("socket path '" + path + "' is empty or too long");
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket(): ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string e = std::strerror(errno);
    ::close(fd_);
    throw std::runtime_error("cannot connect to the writer's socket " + path + ": " + e +
                             (errno == ENOENT || errno == ECONNREFUSED
                                  ? " (is poscache-writer running with its ingest socket on?)"
                                  : ""));
  }
}

SocketClient::~SocketClient() {
  if (fd_ >= 0) ::close(fd_);
}

void SocketClient::send_all(std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("writing to " + path_ + ": " + std::strerror(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

bool SocketClient::read_some() {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno != EINTR) throw std::runtime_error("reading " + path_ + ": " + std::strerror(errno));
  }
}

std::string SocketClient::call(std::string_view line) {
  std::string out(line);
  out += '\n';
  send_all(out);
  for (;;) {
    const auto nl = in_.find('\n');
    if (nl != std::string::npos) {
      std::string reply = in_.substr(0, nl);
      in_.erase(0, nl + 1);
      return reply;
    }
    if (!read_some()) throw std::runtime_error("the writer closed " + path_ + " before replying");
  }
}

std::size_t SocketClient::pipeline(const std::function<bool(std::string&)>& next,
                                   const std::function<void(std::string_view)>& on_reply,
                                   std::size_t window) {
  std::size_t sent = 0, answered = 0;
  bool more = true;
  std::string line, batch;
  while (more || answered < sent) {
    // Send while the window has room, a batch at a time.
    batch.clear();
    while (more && sent - answered < window && batch.size() < 64 * 1024) {
      line.clear();
      if (!next(line)) {
        more = false;
        break;
      }
      batch += line;
      batch += '\n';
      ++sent;
    }
    if (!batch.empty()) send_all(batch);
    // Read what has come back (wait only if nothing can be sent).
    pollfd p{fd_, POLLIN, 0};
    const bool must_wait = !more || sent - answered >= window;
    if (::poll(&p, 1, must_wait ? -1 : 0) > 0) {
      if (!read_some() && answered < sent)
        throw std::runtime_error("the writer closed " + path_ + " with replies outstanding");
      std::size_t pos = 0, nl;
      while ((nl = in_.find('\n', pos)) != std::string::npos) {
        on_reply(std::string_view(in_).substr(pos, nl - pos));
        ++answered;
        pos = nl + 1;
      }
      in_.erase(0, pos);
    }
  }
  return sent;
}

}  // namespace poscache::feed
