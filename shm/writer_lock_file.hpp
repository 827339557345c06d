// The writer's lock file, /dev/shm/<segment>.lock, as both sides see it. The writer holds an
// exclusive fcntl() lock on it for its life (writer/writer_lock.hpp); the kernel drops the lock
// when the process ends, kill -9 included, before the process is even a zombie. A reader whose
// read is stuck mid-write asks it, on that slow path only, whether the writer still lives.
//
// One trap shapes this file: closing ANY descriptor of a file drops every fcntl() lock the
// closing process holds on it. A reader that opened and closed the lock file inside the
// writer's own process would silently free the writer's lock, and a second writer could start.
// So the writer's lock registers each segment this process writes (note_writer), and a process
// that writes a segment never opens its lock file to ask (this_process_writes): it is alive.
//
// The question is put with F_OFD_GETLK, not F_GETLK: a traditional query never reports the
// asking process's own locks, an open-file-description query does (so a reader forked from the
// writer, or beside it, sees the lock as held). A holder in another pid namespace is reported
// with pid 0: held, by a process we cannot name.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace poscache::shm {

// "/dev/shm/<segment>.lock".
std::string writer_lock_path(std::string_view segment);

// The process-wide registry of the segments this process holds (or is taking) the writer lock
// of. Thread-safe; a forked child starts with none (it inherits no fcntl lock either). note
// returns false if the segment was already noted (a second Writer in this process).
bool note_writer(std::string_view segment);
void forget_writer(std::string_view segment) noexcept;
bool this_process_writes(std::string_view segment) noexcept;

enum class LockState {
  free,     // nobody holds it, or there is no lock file: no writer lives
  held,     // a process holds it (holder: its pid here, 0 if another pid namespace hides it)
  unknown,  // the file cannot be opened or asked (permissions): no answer either way
};

struct LockQuery {
  LockState state = LockState::unknown;
  pid_t holder = 0;
};

// Asks who holds the writer lock at `path` (a NUL-terminated path). System calls (open,
// fcntl, close), no allocation. Never call it from a process that may hold that lock (see above).
LockQuery query_writer_lock(const char* path) noexcept;

// Whether the writer recorded in a segment header (pid, /proc start ticks, 0 if unknown) is
// gone for good: no such process, or another process that reuses its pid. A process we may not
// signal (EPERM) exists. System calls, no allocation.
bool writer_process_gone(std::int64_t pid, std::uint64_t start_ticks) noexcept;

}  // namespace poscache::shm
