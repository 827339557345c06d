#include "writer/writer_lock.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "poscache/error.hpp"
#include "shm/writer_lock_file.hpp"

namespace poscache::detail {

namespace {

// Opens the lock file, creating it if there is none; `created` says whether this call did.
int open_lock_file(const std::string& path, unsigned mode, bool& created) {
  for (;;) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT) {
      created = false;
      return fd;
    }
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0666);
    if (fd >= 0 || errno != EEXIST) {
      created = fd >= 0;
      return fd;
    }
  }  // another process created it between the two opens: open it as it is
}

// Whether `fd` is still the file at `path`: a lock taken on a file that was unlinked meanwhile
// (discard() and Writer::remove_segment unlink it under the lock) guards nothing.
bool still_linked(int fd, const std::string& path) {
  struct stat a {
  }, b{};
  return ::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

}  // namespace

WriterLock WriterLock::acquire(const std::string& segment, unsigned mode) {
  WriterLock l;
  l.segment_ = segment;
  l.path_ = shm::writer_lock_path(segment);
  if (!shm::note_writer(segment)) {
    throw Error("segment '" + segment + "' already has a writer: this process (pid " +
                std::to_string(::getpid()) + ") holds " + l.path_ +
                "; a segment has exactly one writer");
  }
  l.noted_ = true;  // from here on, the destructor forgets it again
  for (;;) {
    l.fd_ = open_lock_file(l.path_, mode, l.created_);
    if (l.fd_ < 0) {
      throw Error("cannot open writer lock " + l.path_ + ": " + std::strerror(errno));
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
      if (err == EAGAIN || err == EACCES) {
        throw Error("segment '" + segment + "' already has a writer: " + holder + " holds " +
                    l.path_ + "; a segment has exactly one writer");
      }
      throw Error("cannot lock " + l.path_ + ": " + std::strerror(err));
    }
    if (still_linked(l.fd_, l.path_)) break;
    ::close(l.fd_);  // its holder unlinked it before letting go: take the file now there
    l.fd_ = -1;
  }
  // For people: the holder's pid in the file (the lock, not this text, is what counts).
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(l.fd_, 0) == 0) {
    [[maybe_unused]] const auto n = ::pwrite(l.fd_, pid.data(), pid.size(), 0);
  }
  return l;
}

WriterLock::WriterLock(WriterLock&& o) noexcept
    : fd_(o.fd_),
      created_(o.created_),
      noted_(o.noted_),
      segment_(std::move(o.segment_)),
      path_(std::move(o.path_)) {
  o.fd_ = -1;
  o.noted_ = false;
}

WriterLock& WriterLock::operator=(WriterLock&& o) noexcept {
  if (this != &o) {
    release();
    fd_ = o.fd_;
    created_ = o.created_;
    noted_ = o.noted_;
    segment_ = std::move(o.segment_);
    path_ = std::move(o.path_);
    o.fd_ = -1;
    o.noted_ = false;
  }
  return *this;
}

WriterLock::~WriterLock() {
  release();
}

void WriterLock::release() noexcept {
  if (fd_ >= 0) ::close(fd_);  // drops the fcntl lock
  fd_ = -1;
  if (noted_) shm::forget_writer(segment_);
  noted_ = false;
}

void WriterLock::discard() noexcept {
  // Unlinked while still held: a process that opened the file meanwhile finds, once it has the
  // lock, that the path names another file or none (still_linked), and takes that instead.
  if (fd_ >= 0 && created_) ::unlink(path_.c_str());
  release();
}

}  // namespace poscache::detail
