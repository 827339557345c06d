// The writer's side of the reader table (shm/reader_table.hpp): it creates the table beside the
// segment, with write permission for whoever may read the segment, and reaps the records of
// readers that left or died (RC4), folding their counts into the header so the sums only grow.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "poscache/writer_config.hpp"
#include "shm/reader_table.hpp"

namespace poscache::detail {

class ReaderTable {
 public:
  ReaderTable() = default;
  ReaderTable(ReaderTable&&) noexcept;
  ReaderTable& operator=(ReaderTable&&) noexcept;
  ~ReaderTable();

  // Opens /dev/shm/<segment>.readers, creating it afresh unless it already belongs to
  // `generation` (a restart after kill -9 keeps it: its readers go on counting). Its mode is the
  // segment's with a write bit for every class that has read. A failure is logged and leaves the
  // table off (readers then read uncounted and say so): statistics never stop a writer.
  static ReaderTable open(const std::string& segment, std::uint64_t generation, mode_t segment_mode,
                          const LogSink& log);

  // RC4: frees the records of readers that released them or are gone; returns how many.
  std::size_t reap();

  [[nodiscard]] bool on() const noexcept { return base_ != nullptr; }

 private:
  void* base_ = nullptr;
};

}  // namespace poscache::detail
