// A Reader's record in the reader table (shm/reader_table.hpp): claimed at open (RC1), counted
// into by get() (RC2), released when the Reader goes (RC3). Internal to the reader library.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shm/reader_table.hpp"

namespace poscache::detail {

class ReaderClaim {
 public:
  ReaderClaim() = default;
  // RC1. On failure (no table, no permission, another generation, full) returns an unclaimed
  // ReaderClaim and says why in `why_not`.
  static ReaderClaim claim(std::string_view segment, std::uint64_t generation,
                           std::string& why_not);
  ReaderClaim(ReaderClaim&&) noexcept;
  ReaderClaim& operator=(ReaderClaim&&) noexcept;
  ~ReaderClaim();  // RC3

  // The record's counts[row][ReadStatus] (rows of kReaderCounts words), or null if not claimed.
  [[nodiscard]] std::uint64_t* counts() const noexcept {
    return record_ ? &record_->counts[0][0] : nullptr;
  }

 private:
  void release() noexcept;
  void* base_ = nullptr;
  shm::ReaderRecord* record_ = nullptr;
};

}  // namespace poscache::detail
