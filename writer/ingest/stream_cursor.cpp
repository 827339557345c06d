#include "writer/ingest/stream_cursor.hpp"

#include <algorithm>
#include <cstring>

#include "poscache/error.hpp"
#include "shm/atomic.hpp"
#include "writer/ingest/state_file.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace poscache::ingest {
namespace {
constexpr std::uint64_t kMagic = 0x31525543'54534350ull;  // "PCSTCUR1"
}

std::string StreamCursor::path_of(const std::string& segment) {
  return "/dev/shm/" + segment + ".streams";
}

StreamCursor::StreamCursor(const std::string& segment, std::uint64_t generation) {
  file_ = map_state_file(path_of(segment),
                         sizeof(StreamCursorHeader) + kCursorRejects * sizeof(StreamCursorReject),
                         "stream cursor");
  void* p = file_.base;
  header_ = static_cast<StreamCursorHeader*>(p);
  rejects_ = reinterpret_cast<StreamCursorReject*>(header_ + 1);
  restored_ = file_.kept && header_->magic == kMagic && header_->generation == generation;
  if (!restored_) {
    std::memset(p, 0, file_.bytes);
    header_->generation = generation;
    header_->magic = kMagic;
  }
}

StreamCursor::~StreamCursor() {
  unmap_state_file(file_);
}

std::uint32_t StreamCursor::slot(std::string_view stream) {
  std::uint64_t h = XXH3_64bits(stream.data(), stream.size());
  if (h == 0) h = 1;
  for (std::uint32_t i = 0; i < kCursorStreams; ++i)
    if (header_->streams[i].name_hash == h) return i;
  for (std::uint32_t i = 0; i < kCursorStreams; ++i) {
    if (header_->streams[i].name_hash == 0) {
      header_->streams[i].last_id = 0;
      shm::store_release(&header_->streams[i].name_hash, h);
      return i;
    }
  }
  throw Error("stream cursor: " + std::to_string(kCursorStreams) +
              " stream names are recorded in " +
              std::string("the cursor file; remove it to start over"));
}

std::uint64_t StreamCursor::last(std::uint32_t slot) const noexcept {
  return header_->streams[slot].last_id;
}

void StreamCursor::refused(std::uint32_t slot, std::uint64_t id, std::string_view reason) noexcept {
  const std::uint64_t head = header_->reject_head;
  StreamCursorReject& r = rejects_[head % kCursorRejects];
  r.id = id;
  r.stream = slot;
  r.reason_len = static_cast<std::uint32_t>(std::min(reason.size(), kCursorReasonLen));
  if (r.reason_len > 0) std::memcpy(r.reason, reason.data(), r.reason_len);
  shm::store_release(&header_->reject_head, head + 1);
}

void StreamCursor::advance(std::uint32_t slot, std::uint64_t id) noexcept {
  shm::store_release(&header_->streams[slot].last_id, id);
}

std::optional<std::string> StreamCursor::refusal(std::uint32_t slot, std::uint64_t id) const {
  const std::uint64_t head = header_->reject_head;
  const std::uint64_t n = std::min<std::uint64_t>(head, kCursorRejects);
  for (std::uint64_t i = 0; i < n; ++i) {
    const StreamCursorReject& r = rejects_[(head - 1 - i) % kCursorRejects];
    if (r.id == id && r.stream == slot)
      return std::string(r.reason, std::min<std::size_t>(r.reason_len, kCursorReasonLen));
  }
  return std::nullopt;
}

}  // namespace poscache::ingest
