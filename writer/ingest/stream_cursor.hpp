// Where each consumed Redis stream stands: the id of the last entry the writer applied (or
// refused), per stream, in a writer-only shared-memory file beside the segment,
// "/dev/shm/<segment>.streams" (mode 0600). It makes a restart exact: Redis re-delivers every
// entry that was not acknowledged yet, and the ones at or below the cursor were already handled
// by the writer that died, so they are acknowledged without being applied again.
//
//   +----------------------------------+
//   | magic, generation                |  StreamCursorHeader
//   | streams[64]: name hash, last id  |  one slot per stream name (found by its hash)
//   | reject_head                      |
//   +----------------------------------+
//   | rejects[1024]: stream, id, why   |  the last refusals, for their copy to <stream>:rejected
//   +----------------------------------+
//
// Crash protocol, per entry (apply thread only):
//   SC1 the entry is executed (applied, ignored or refused; the table's own undo record covers a
//      kill mid-write);
//   SC2 if refused: rejects[reject_head % 1024] = (stream, id, reason), then reject_head + 1;
//   SC3 streams[s].last_id = id (one aligned 8-byte store).
// Killed before SC3: the entry is executed again after the restart. For upsert, add and fill that
// is harmless: they carry the stream id (or the producer's seq) as source_seq, and the table
// refuses one not newer than the stored seq; erase, invalidate and mark set the same state
// again. Killed after SC3: the entry is acknowledged without being executed; if it was refused,
// its reason is found in `rejects` and its copy to <stream>:rejected is made then (the sync
// thread's copy may not have reached Redis). 1024 refusals cover every entry that can be in
// flight between the apply loop and Redis (StreamSource::kMaxInFlight).
//
// The cursor belongs to one segment generation, like the trade window: a segment created anew
// starts with no cursor, so what Redis still holds as pending is applied to it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "writer/ingest/state_file.hpp"

namespace poscache::ingest {

inline constexpr std::size_t kCursorStreams = 64;
inline constexpr std::size_t kCursorRejects = 1024;
inline constexpr std::size_t kCursorReasonLen = 240;

struct StreamCursorSlot {
  std::uint64_t name_hash;  // 0: free
  std::uint64_t last_id;    // packed stream id (stream_codec.hpp) of the last entry handled
};

struct StreamCursorReject {
  std::uint64_t id;      // packed stream id
  std::uint32_t stream;  // slot index
  std::uint32_t reason_len;
  char reason[kCursorReasonLen];
};

struct StreamCursorHeader {
  std::uint64_t magic;
  std::uint64_t generation;
  StreamCursorSlot streams[kCursorStreams];
  std::uint64_t reject_head;
};

class StreamCursor {
 public:
  // Opens (or creates) the cursor of `segment`'s generation `generation`. Throws poscache::Error
  // naming the file.
  StreamCursor(const std::string& segment, std::uint64_t generation);
  ~StreamCursor();
  StreamCursor(const StreamCursor&) = delete;
  StreamCursor& operator=(const StreamCursor&) = delete;

  // The slot of a stream (claimed on first use). Throws when 64 stream names are taken.
  std::uint32_t slot(std::string_view stream);
  [[nodiscard]] std::uint64_t last(std::uint32_t slot) const noexcept;
  void refused(std::uint32_t slot, std::uint64_t id, std::string_view reason) noexcept;  // SC2
  void advance(std::uint32_t slot, std::uint64_t id) noexcept;                           // SC3
  // The reason recorded for a refused entry, if it is among the last 1024 refusals.
  [[nodiscard]] std::optional<std::string> refusal(std::uint32_t slot, std::uint64_t id) const;
  [[nodiscard]] bool restored() const noexcept { return restored_; }
  static std::string path_of(const std::string& segment);

 private:
  StreamCursorHeader* header_ = nullptr;
  StreamCursorReject* rejects_ = nullptr;
  StateFile file_;
  bool restored_ = false;
};

}  // namespace poscache::ingest
