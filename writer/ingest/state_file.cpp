#include "writer/ingest/state_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "poscache/error.hpp"

namespace poscache::ingest {

StateFile map_state_file(const std::string& path, std::size_t bytes, const char* what) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error(std::string(what) + ": cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  StateFile f;
  f.bytes = bytes;
  f.kept = static_cast<std::size_t>(st.st_size) == bytes;
  if (!f.kept && (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0)) {
    const int e = errno;
    ::close(fd);
    throw Error(std::string(what) + ": cannot size " + path + " to " + std::to_string(bytes) +
                " bytes: " + std::strerror(e));
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED)
    throw Error(std::string(what) + ": cannot map " + path + ": " + std::strerror(e));
  f.base = p;
  return f;
}

void unmap_state_file(StateFile& f) noexcept {
  if (f.base != nullptr) ::munmap(f.base, f.bytes);
  f.base = nullptr;
}

}  // namespace poscache::ingest
