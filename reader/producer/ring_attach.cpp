#include "reader/producer/ring_attach.hpp"

#include <linux/futex.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace poscache::detail {
namespace {
std::string errno_text() {
  return std::strerror(errno);
}
}  // namespace

int connect_and_attach(const std::string& path, int ring_fd, const std::string& name,
                       std::string& why) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    why = "socket path '" + path + "' is too long";
    return -1;
  }
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    why = "socket(): " + errno_text();
    return -1;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    why = "cannot connect to the writer's socket " + path + ": " + errno_text();
    ::close(s);
    return -1;
  }
  const std::string line = "{\"op\":\"attach_ring\",\"name\":\"" + name + "\"}\n";
  iovec iov{const_cast<char*>(line.data()), line.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &ring_fd, sizeof(int));
  if (::sendmsg(s, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    why = "cannot hand the ring to the writer: " + errno_text();
    ::close(s);
    return -1;
  }
  std::string reply;
  char c;
  pollfd p{s, POLLIN, 0};
  while (reply.size() < 4096) {
    if (::poll(&p, 1, 5000) <= 0) {
      why = "the writer did not answer the ring hand-over within 5 s";
      ::close(s);
      return -1;
    }
    const ssize_t n = ::read(s, &c, 1);
    if (n <= 0) {
      why = "the writer closed the connection during the ring hand-over";
      ::close(s);
      return -1;
    }
    if (c == '\n') break;
    reply += c;
  }
  if (reply.find("\"attached\"") == std::string::npos) {
    why = "the writer refused the ring: " + reply;
    ::close(s);
    return -1;
  }
  return s;
}

void futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::nanoseconds t) {
  const auto ns = t.count();
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  ::syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

}  // namespace poscache::detail
