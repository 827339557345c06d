// A client of poscache-writer's JSON-lines ingest socket (writer/ingest/socket_source.hpp):
// connects, sends command lines and reads one reply line per command, pipelined (it keeps
// sending while replies come back, so a long replay is not one round trip per line).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace poscache::feed {

class SocketClient {
 public:
  // Connects to `path`; throws std::runtime_error naming the path and the cause.
  explicit SocketClient(const std::string& path);
  ~SocketClient();
  SocketClient(const SocketClient&) = delete;
  SocketClient& operator=(const SocketClient&) = delete;

  // Sends one line and waits for its reply (without the newline).
  std::string call(std::string_view line);
  // Sends every line `next` yields (it returns false at the end), at most `window` unanswered at
  // a time, and hands each reply to `on_reply` in order. Returns the number of lines sent.
  std::size_t pipeline(const std::function<bool(std::string&)>& next,
                       const std::function<void(std::string_view)>& on_reply,
                       std::size_t window = 4096);

 private:
  void send_all(std::string_view data);
  bool read_some();  // appends to in_; false at EOF
  int fd_ = -1;
  std::string path_;
  std::string in_;
};

}  // namespace poscache::feed
