// Facts about a process that tell it apart from a later one with the same pid.
#pragma once

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace poscache::shm {

// Clock ticks since boot when the process started (/proc/<pid>/stat field 22): with the pid it
// identifies a process even after the pid is reused. 0 if it cannot be read (no such process).
//
// Read with open/read, not a stream: a process that exits between the open and the read makes
// the read fail with ESRCH, and libstdc++'s filebuf throws from underflow on a read error
// whatever the stream's exception mask (a writer died of it on SIGTERM while reaping readers).
// No allocation: a reader asks it on a noexcept path (shm/writer_lock_file.hpp).
inline std::uint64_t process_start_ticks(pid_t pid) noexcept {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];  // the stat line is a few hundred bytes; the name is at most 16
  std::size_t len = 0;
  while (len < sizeof buf - 1) {
    const ssize_t n = ::read(fd, buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buf[len] = '\0';
  // Field 2 is the name in parentheses and may hold spaces or ')': fields resume after the last.
  const char* close = std::strrchr(buf, ')');
  if (close == nullptr) return 0;
  const char* p = close + 1;
  for (int field = 3; field <= 22; ++field) {
    while (*p == ' ') ++p;
    if (*p == '\0') return 0;
    if (field == 22) return std::strtoull(p, nullptr, 10);
    while (*p != ' ' && *p != '\0') ++p;
  }
  return 0;
}

}  // namespace poscache::shm
