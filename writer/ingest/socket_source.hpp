// The daemon's unix socket: JSON lines (json_codec.hpp), one command per line, one reply per
// line, in order. For scripts, any language, poscache-feed --via socket, and operators' admin
// operations on a running daemon (invalidate, erase).
//
// Who may connect is the socket file's mode and group (SocketConfig); every connection's peer
// uid and pid (SO_PEERCRED) are logged when it connects and with every admin operation. The
// socket is non-blocking and served from the apply loop with epoll: no thread, no lock. A client
// that does not read its replies stops being read once kMaxPendingReplies bytes wait for it
// (backpressure, nothing dropped); a line longer than kMaxJsonLine is refused and skipped.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "poscache/writer.hpp"
#include "writer/ingest/json_codec.hpp"
#include "writer/ingest/ring_source.hpp"
#include "writer/ingest/source.hpp"

namespace poscache::ingest {

struct SocketConfig {
  std::string path;  // "" = /dev/shm/<segment>.sock
  // Who may produce: every command and every producer ring goes through this socket. 0 (the
  // default): 0660 when `group` names a producers' group, else 0600 (the daemon's user only):
  // the segment's own group is its readers', and a reader must not write.
  mode_t mode = 0;
  std::string group;  // chgrp the socket to this group ("" = the daemon's)
  std::size_t max_clients = 256;
  [[nodiscard]] mode_t effective_mode() const noexcept {
    return mode != 0 ? mode : group.empty() ? 0600 : 0660;
  }
};

// The default path of a segment's socket: tools find it from the segment name alone.
std::string default_socket_path(const std::string& segment);

// Lines a part of the daemon other than the command set answers on this socket: the refresh
// broker's (writer/refresh/broker.hpp) refresher registrations, answers and rebuilds. handle()
// returns the reply line, or nullopt if the line is not its.
class LineHandler {
 public:
  virtual ~LineHandler() = default;
  virtual std::optional<std::string> handle(std::uint64_t client, pid_t pid, std::string_view line,
                                            CommandExecutor& exec) = 0;
  virtual void client_gone(std::uint64_t client) = 0;
};

class SocketSource final : public Source {
 public:
  static constexpr std::size_t kMaxPendingReplies = 1 << 20;
  // Binds and listens (replacing a stale socket file). Throws poscache::Error naming the path.
  SocketSource(const SocketConfig& config, const std::vector<NamespaceSpec>& namespaces,
               LogSink log);
  // Producer rings arrive on this socket: {"op":"attach_ring","name":...} with the ring's
  // descriptor attached (SCM_RIGHTS) goes to `rings`; the connection's hang-up tells it the
  // producer is gone. Without it, attach_ring is refused.
  void set_rings(RingSource* rings) noexcept { rings_ = rings; }
  void set_handler(LineHandler* h) noexcept { handler_ = h; }
  // Queues `line` for client `id` and sends what it can now; false if there is no such client.
  bool send_to(std::uint64_t id, const std::string& line);
  [[nodiscard]] int epoll_fd() const noexcept { return epoll_fd_; }
  ~SocketSource() override;
  std::size_t poll(CommandExecutor& exec, std::int64_t now_ns, std::size_t budget) override;
  [[nodiscard]] std::string name() const override { return "socket " + path_; }
  [[nodiscard]] SourceCounters counters() const override { return counters_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::size_t clients() const noexcept { return clients_.size(); }

 private:
  struct Client {
    int fd = -1;
    std::uint64_t id = 0;  // unique for the daemon's lifetime (fds are reused)
    std::vector<int> fds;  // descriptors received (SCM_RIGHTS), oldest first
    pid_t pid = 0;
    uid_t uid = 0;
    std::string in, out;
    std::size_t out_sent = 0;
    bool skipping = false;  // discarding an over-long line up to its newline
    bool eof = false;
    std::uint32_t interest = 0;  // the epoll events asked for now (changed only when it differs)
  };
  void accept_all();
  std::size_t serve(Client& c, CommandExecutor& exec, std::size_t budget);
  void handle_line(Client& c, CommandExecutor& exec, std::string_view line);
  void attach_ring(Client& c, std::string_view line);
  bool flush(Client& c);  // false: the client is gone
  void drop(int fd);
  void want_write(Client& c, bool on);

  std::string path_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  std::size_t max_clients_;
  JsonDecoder decoder_;
  LogSink log_;
  SourceCounters counters_;
  std::unordered_map<int, Client> clients_;
  RingSource* rings_ = nullptr;
  LineHandler* handler_ = nullptr;
  std::uint64_t next_id_ = 1;
};

}  // namespace poscache::ingest
