// The reader table: where reader processes count their reads, LMDB's reader table as the model.
// Readers map the segment read-only and never write it; this is a separate shared object beside
// it, `/dev/shm/<segment>.readers`, that the writer creates and every class of user that may
// read the segment may also write (0640 segment → 0660 table). Nothing here is on a path the
// writer waits for: a reader without the table reads on, uncounted.
//
//   +--------------------------------------------------------------+ 0
//   | ReaderTableHeader   line 0: magic, version, capacity,         |
//   |                     generation, reap_seq                      |
//   |                     retired[row][status]: the reaped records' |
//   |                     sums, one line per row                    |
//   +--------------------------------------------------------------+ 2176
//   | ReaderRecord[kReaderRecords]   2176 B each, 34 lines:         |
//   |   line 0: owner (0 free | pid | pid + released bit), start   |
//   |           ticks, attach time, command name                    |
//   |   lines 1..33: counts[row][ReadStatus], the owner's relaxed   |
//   |           stores; a row per namespace id, and a last row for  |
//   |           reads that named no namespace of the segment        |
//   +--------------------------------------------------------------+
// 2.2 MB in all, most of it never touched (tmpfs gives a page on its first write): a reader that
// reads two namespaces dirties one page of its record.
//
// PROTOCOL (every word through shm/atomic.hpp; the record's words and the header's retired
// counts are the only ones more than one process touches):
//   RC1 claim      a Reader, at open: CAS owner 0 -> its pid (acquire: it sees the zeroed counts
//                  of RC4's release), then writes start_ticks, attached_at and name (relaxed;
//                  statistics). A full table: the Reader reads uncounted.
//   RC2 count      the owner, in get(): counts[row][status] += 1 (row: the namespace id asked
//                  for, kNoNamespaceRow for a name the segment does not have), a relaxed load and
//                  store on its own line: no locked instruction, no line shared with another
//                  process's hot path. Threads sharing one Reader may lose increments (one
//                  Reader per thread counts exactly).
//   RC3 release    the Reader's destructor (or follow() to a new generation): owner = pid |
//                  kReleased (release: its counts are final). Never zeroed by the reader.
//   RC4 reap       the writer only, about once a second (Writer::tick) and at open: a record
//                  released, or whose pid is gone or reused (start ticks differ), has its counts
//                  added to the header's retired counts, then zeroed, then owner = 0 (release).
//                  Sums (retired + live records) therefore only grow: Prometheus counters.
//                  The writer makes reap_seq odd before and even after (release), so a tool that
//                  sums (poscache::reader_table) reads reap_seq (acquire), the counts, then
//                  reap_seq again after an acquire fence, and retries if it moved: no record is
//                  counted twice or missed while it moves into `retired`.
//   A writer that finds a table of another generation (or none, or of another size) unlinks it
//   and creates a new file (readers of the old generation count on into the old, unlinked
//   one); one of its own generation (a restart after kill -9) is kept and reaped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "poscache/schema.hpp"
#include "shm/atomic.hpp"

namespace poscache::shm {

inline constexpr std::uint64_t kReaderTableMagic = 0x3142'5452'4452'5350ULL;  // "PSRDRTB1"
inline constexpr std::uint32_t kReaderTableVersion = 2;  // 2: counts by namespace
inline constexpr std::uint32_t kReaderRecords = 1024;
inline constexpr std::size_t kReaderCounts = 8;                 // ReadStatus values (7) and a spare
inline constexpr std::size_t kNoNamespaceRow = kMaxNamespaces;  // reads naming no namespace
inline constexpr std::size_t kReaderCountRows = kMaxNamespaces + 1;
inline constexpr std::uint64_t kReleased = 1ULL << 62;  // owner bit: the reader has left

struct alignas(64) ReaderTableHeader {
  std::uint64_t magic;  // stored last (release) by the creating writer
  std::uint32_t version;
  std::uint32_t capacity;    // kReaderRecords
  std::uint64_t generation;  // the segment generation the table belongs to
  std::uint64_t reap_seq;    // odd while the writer folds records into `retired` (RC4)
  std::uint64_t reserved[4];
  std::uint64_t retired[kReaderCountRows][kReaderCounts];  // reaped records' (writer, relaxed)
};
static_assert(sizeof(ReaderTableHeader) == 64 * (1 + kReaderCountRows));

struct alignas(64) ReaderRecord {
  std::uint64_t owner;        // 0 free | pid | pid + kReleased (RC1, RC3, RC4)
  std::uint64_t start_ticks;  // /proc/<pid>/stat starttime: a reused pid is not the reader
  std::int64_t attached_at_ns;
  std::uint64_t name[2];  // the process's command name (16 bytes, NUL-padded)
  std::uint64_t reserved[3];
  std::uint64_t counts[kReaderCountRows][kReaderCounts];  // by namespace and ReadStatus (RC2)
};
static_assert(sizeof(ReaderRecord) == 64 * (1 + kReaderCountRows));
static_assert(sizeof(ReaderRecord::counts[0]) == 64, "a namespace's counts: one line");
static_assert(offsetof(ReaderRecord, counts) == 64, "the counts on a line of their own");

inline constexpr std::size_t kReaderTableBytes =
    sizeof(ReaderTableHeader) + kReaderRecords * sizeof(ReaderRecord);

inline std::string reader_table_path(std::string_view segment) {
  return "/dev/shm/" + std::string(segment) + ".readers";
}

inline ReaderRecord* reader_records(void* base) noexcept {
  return reinterpret_cast<ReaderRecord*>(static_cast<std::byte*>(base) + sizeof(ReaderTableHeader));
}

}  // namespace poscache::shm
