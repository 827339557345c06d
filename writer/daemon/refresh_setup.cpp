#include "writer/daemon/refresh_setup.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <thread>

namespace poscache::daemon {

std::unique_ptr<refresh::RefreshBroker> open_refresh(Writer& writer, const DaemonConfig& cfg,
                                                     ingest::SocketSource* socket,
                                                     ingest::CommandExecutor& exec,
                                                     bool segment_empty) {
  if (cfg.refresh.empty()) return nullptr;
  std::vector<refresh::RefreshPolicy> policies(cfg.writer.namespaces.size());
  for (const auto& [name, p] : cfg.refresh) {
    auto id = writer.namespace_id(name);
    if (!id) throw Error("refresh: " + id.error());
    policies[*id] = p;
  }
  auto broker =
      std::make_unique<refresh::RefreshBroker>(writer, policies, cfg.writer.mode, cfg.writer.log);
  if (socket != nullptr) {
    socket->set_handler(broker.get());
    broker->set_send([socket](std::uint64_t client, const std::string& line) {
      return socket->send_to(client, line);
    });
  } else {
    spdlog::warn("refresh: the ingest socket is off: no refresher can register");
  }
  refresh::RefreshBroker* b = broker.get();
  exec.set_removal_observer([b](const ingest::Command& c) { b->removed(c); });
  for (const auto& [name, p] : cfg.refresh) {
    spdlog::info(
        "refresh: namespace {}: on {}{}, timeout {} ms, {} retries, {} in flight at most, "
        "absent remembered {} ms{}",
        name,
        p.on_stale && p.on_miss ? "stale and miss"
        : p.on_stale            ? "stale"
        : p.on_miss             ? "miss"
                                : "request only",
        p.ahead > 0 ? fmt::format(", ahead at {:.0f}% of stale_after", p.ahead * 100) : "",
        p.timeout.count() / 1'000'000, p.retries, p.max_in_flight,
        p.negative_ttl.count() / 1'000'000,
        segment_empty && p.rebuild_on_empty ? "; a rebuild is asked of its first refresher" : "");
    if (segment_empty && p.rebuild_on_empty) b->rebuild_when_served(*writer.namespace_id(name));
  }
  return broker;
}

IdleWait::IdleWait() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {}
IdleWait::~IdleWait() {
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void IdleWait::watch(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_fd_ >= 0 && ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0) any_ = true;
}

void IdleWait::wait(std::chrono::nanoseconds timeout) {
  if (!any_) {
    std::this_thread::sleep_for(timeout);
    return;
  }
  epoll_event ev[4];
  const timespec ts{static_cast<time_t>(timeout.count() / 1'000'000'000),
                    static_cast<long>(timeout.count() % 1'000'000'000)};
  ::epoll_pwait2(epoll_fd_, ev, 4, &ts, nullptr);
}

}  // namespace poscache::daemon
