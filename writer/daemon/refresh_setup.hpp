// poscache-writer's read-through: the refresh broker (writer/refresh/broker.hpp) opened and wired
// into the socket and the executor when any namespace has a refresh policy, and the apply loop's
// idle wait, which wakes for socket input and for readers' get_or_fetch().
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "poscache/writer.hpp"
#include "writer/daemon/config.hpp"
#include "writer/ingest/executor.hpp"
#include "writer/ingest/socket_source.hpp"
#include "writer/refresh/broker.hpp"

namespace poscache::daemon {

// Null when no namespace refreshes. `socket` may be null (no socket: refreshers cannot register,
// which is logged). Throws Error naming what failed.
std::unique_ptr<refresh::RefreshBroker> open_refresh(Writer& writer, const DaemonConfig& cfg,
                                                     ingest::SocketSource* socket,
                                                     ingest::CommandExecutor& exec,
                                                     bool segment_empty);

// Sleeps up to `timeout`, waking early when any of the descriptors is readable (epoll_pwait2:
// a timeout finer than a millisecond).
class IdleWait {
 public:
  IdleWait();
  ~IdleWait();
  IdleWait(const IdleWait&) = delete;
  IdleWait& operator=(const IdleWait&) = delete;
  void watch(int fd);
  void wait(std::chrono::nanoseconds timeout);

 private:
  int epoll_fd_ = -1;
  bool any_ = false;
};

}  // namespace poscache::daemon
