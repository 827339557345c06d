#include "shm/writer_lock_file.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <mutex>
#include <set>

#include "shm/process.hpp"
#include "shm/segment.hpp"

namespace poscache::shm {

std::string writer_lock_path(std::string_view segment) {
  return shm_path(segment) + ".lock";
}

namespace {

struct Registry {
  std::mutex mutex;
  std::set<std::string, std::less<>> segments;
};

Registry& registry() {
  // Never destroyed (a Writer may outlive static destruction); a forked child inherits no fcntl
  // lock, so it must not inherit the registry either.
  static Registry* r = [] {
    ::pthread_atfork(nullptr, nullptr, [] { registry().segments.clear(); });
    return new Registry();
  }();
  return *r;
}

}  // namespace

bool note_writer(std::string_view segment) {
  Registry& r = registry();
  std::lock_guard g(r.mutex);
  return r.segments.emplace(segment).second;
}

void forget_writer(std::string_view segment) noexcept {
  Registry& r = registry();
  std::lock_guard g(r.mutex);
  if (auto it = r.segments.find(segment); it != r.segments.end()) r.segments.erase(it);
}

bool this_process_writes(std::string_view segment) noexcept {
  Registry& r = registry();
  std::lock_guard g(r.mutex);
  return r.segments.find(segment) != r.segments.end();
}

LockQuery query_writer_lock(const char* path) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return {errno == ENOENT ? LockState::free : LockState::unknown, 0};
  struct flock fl {};
  fl.l_type = F_WRLCK;  // would an exclusive lock of the whole file conflict?
  fl.l_whence = SEEK_SET;
  const int rc = ::fcntl(fd, F_OFD_GETLK, &fl);
  ::close(fd);  // this process holds no lock on it (the caller's promise): nothing is dropped
  if (rc != 0) return {LockState::unknown, 0};
  if (fl.l_type == F_UNLCK) return {LockState::free, 0};
  return {LockState::held, fl.l_pid > 0 ? static_cast<pid_t>(fl.l_pid) : 0};
}

bool writer_process_gone(std::int64_t pid, std::uint64_t start_ticks) noexcept {
  if (pid <= 0) return true;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
  if (start_ticks == 0) return false;  // nothing to tell a reused pid by
  const std::uint64_t now = process_start_ticks(static_cast<pid_t>(pid));
  return now != 0 && now != start_ticks;  // 0: exited since, or /proc unreadable: no claim
}

}  // namespace poscache::shm
