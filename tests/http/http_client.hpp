// A raw HTTP/1.1 client for the tests: sends exactly the bytes given (malformed ones too) to
// 127.0.0.1:port and reads the reply (its Content-Length, or until the server closes).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace poscache::test {

struct HttpReply {
  int status = 0;  // 0: no status line came back (the server closed the connection)
  std::string head, body;
  [[nodiscard]] std::string header(const std::string& name) const {
    const std::size_t at = head.find("\r\n" + name + ": ");
    if (at == std::string::npos) return {};
    const std::size_t from = at + name.size() + 4;
    return head.substr(from, head.find("\r\n", from) - from);
  }
};

// A connection to 127.0.0.1:port from `source`: any address of 127/8 is this host's loopback,
// so a test can be many peers. -1 if it fails. Replies wait at most `timeout_s`.
inline int connect_from(int port, const std::string& source = "127.0.0.1", int timeout_s = 30) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, const std::string& raw) {
  std::size_t sent = 0;
  while (sent < raw.size()) {
    const ssize_t n = ::send(fd, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;  // the server may close early (a refused oversized request)
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads the head, then Content-Length bytes of body (as a client does: it does not wait for the
// server to close), or until the server closes. Closes `fd`.
inline HttpReply read_reply(int fd) {
  std::string in;
  char buf[65536];
  for (;;) {
    const std::size_t head_end = in.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      const std::size_t cl = in.find("\r\nContent-Length: ");
      if (cl == std::string::npos || cl > head_end ||
          in.size() >= head_end + 4 + std::strtoull(in.c_str() + cl + 18, nullptr, 10))
        break;  // no Content-Length (a 204): the head is all
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  HttpReply r;
  const std::size_t end = in.find("\r\n\r\n");
  r.head = in.substr(0, end);
  r.body = end == std::string::npos ? std::string() : in.substr(end + 4);
  if (in.rfind("HTTP/1.", 0) == 0 && in.size() > 12) r.status = std::atoi(in.c_str() + 9);
  return r;
}

// `half_close`: shut the sending side after `raw` (the server sees the end of the request).
inline HttpReply http_raw(int port, const std::string& raw, bool half_close = false,
                          const std::string& source = "127.0.0.1") {
  const int fd = connect_from(port, source);
  if (fd < 0) throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
  send_all(fd, raw);
  if (half_close) ::shutdown(fd, SHUT_WR);
  return read_reply(fd);
}

inline HttpReply http_get(int port, const std::string& path, const std::string& method = "GET") {
  return http_raw(port, method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
}

inline HttpReply http_post(int port, const std::string& path, const std::string& body,
                           const std::string& token = "") {
  std::string req = "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  return http_raw(port, req + "\r\n" + body);
}

}  // namespace poscache::test
