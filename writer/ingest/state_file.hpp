// A writer-only file beside the segment in /dev/shm (mode 0600), mapped shared: the ingest state
// that must outlive a kill -9 of the writer (the trade-id window, the stream cursor). The
// process's stores reach the file in program order (one mapping of page-cache memory); a power
// loss takes /dev/shm, and the segment, with it.
#pragma once

#include <cstddef>
#include <string>

namespace poscache::ingest {

struct StateFile {
  void* base = nullptr;
  std::size_t bytes = 0;
  bool kept = false;  // the file existed with this size: its contents are the previous writer's
};

// Opens or creates `path` with exactly `bytes` (a file of another size starts over, zeroed) and
// maps it. Throws poscache::Error starting with `what`, naming the path and the cause.
StateFile map_state_file(const std::string& path, std::size_t bytes, const char* what);
void unmap_state_file(StateFile& f) noexcept;

}  // namespace poscache::ingest
