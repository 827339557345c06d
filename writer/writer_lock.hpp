// The one-writer rule: an exclusive fcntl() lock on /dev/shm/<segment>.lock. The kernel drops it
// when the holder dies (kill -9 included), so a crashed writer never blocks its successor, and
// F_GETLK tells a second writer who holds it. fcntl locks are per process, so a registry of the
// segments this process already writes (shm/writer_lock_file.hpp, which readers consult too)
// catches a second Writer inside the same process.
#pragma once

#include <string>

namespace poscache::detail {

class WriterLock {
 public:
  // Throws poscache::Error naming the holder ("held by pid N") if another writer has it.
  static WriterLock acquire(const std::string& segment, unsigned mode);
  WriterLock() = default;
  WriterLock(WriterLock&&) noexcept;
  WriterLock& operator=(WriterLock&&) noexcept;
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;
  ~WriterLock();
  void release() noexcept;
  // release(), and the lock file unlinked first if acquire() created it: what a writer that
  // failed to start leaves is what it found.
  void discard() noexcept;

 private:
  int fd_ = -1;
  bool created_ = false;  // acquire() created the lock file
  bool noted_ = false;    // in the process's registry (shm::note_writer)
  std::string segment_;
  std::string path_;
};

}  // namespace poscache::detail
