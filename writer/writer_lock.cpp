#include "writer/writer_lock.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

#include "poscache/error.hpp"
#include "shm/segment.hpp"

namespace poscache::detail {

namespace {
std::mutex g_mutex;
std::set<std::string>& held() {
  // A forked child does not inherit fcntl locks, so it must not inherit the registry either.
  static std::set<std::string>* s = [] {
    ::pthread_atfork(nullptr, nullptr, [] { held().clear(); });
    return new std::set<std::string>();
  }();
  return *s;
}
}  // namespace

WriterLock WriterLock::acquire(const std::string& segment, unsigned mode) {
  WriterLock l;
  l.segment_ = segment;
  l.path_ = shm::shm_path(segment) + ".lock";
  {
    std::lock_guard g(g_mutex);
    if (!held().insert(segment).second) {
      throw Error("segment '" + segment + "' already has a writer: this process (pid " +
                  std::to_string(::getpid()) + ") holds " + l.path_ +
                  "; a segment has exactly one writer");
    }
  }
  l.fd_ = ::open(l.path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, mode & 0666);
  if (l.fd_ < 0) {
    const int err = errno;
    std::lock_guard g(g_mutex);
    held().erase(segment);
    throw Error("cannot open writer lock " + l.path_ + ": " + std::strerror(err));
  }
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(l.fd_, F_SETLK, &fl) != 0) {
    const int err = errno;
    struct flock who {};
    who.l_type = F_WRLCK;
    who.l_whence = SEEK_SET;
    std::string holder = "another process";
    if (::fcntl(l.fd_, F_GETLK, &who) == 0 && who.l_type != F_UNLCK) {
      holder = "pid " + std::to_string(who.l_pid);
    }
    ::close(l.fd_);
    l.fd_ = -1;
    {
      std::lock_guard g(g_mutex);
      held().erase(segment);
    }
    if (err == EAGAIN || err == EACCES) {
      throw Error("segment '" + segment + "' already has a writer: " + holder + " holds " +
                  l.path_ + "; a segment has exactly one writer");
    }
    throw Error("cannot lock " + l.path_ + ": " + std::strerror(err));
  }
  // For people: the holder's pid in the file (the lock, not this text, is what counts).
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(l.fd_, 0) == 0) {
    [[maybe_unused]] const auto n = ::pwrite(l.fd_, pid.data(), pid.size(), 0);
  }
  return l;
}

WriterLock::WriterLock(WriterLock&& o) noexcept
    : fd_(o.fd_), segment_(std::move(o.segment_)), path_(std::move(o.path_)) {
  o.fd_ = -1;
}

WriterLock& WriterLock::operator=(WriterLock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = o.fd_;
    segment_ = std::move(o.segment_);
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

WriterLock::~WriterLock() {
  release();
}

void WriterLock::release() noexcept {
  if (fd_ < 0) return;
  ::close(fd_);  // drops the fcntl lock
  fd_ = -1;
  std::lock_guard g(g_mutex);
  held().erase(segment_);
}

}  // namespace poscache::detail
