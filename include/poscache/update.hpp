// poscache — an upsert as the writer applies it and a producer sends it: key, mode, the given
// fields as mantissas. Fixed-size, so building and applying one allocates nothing. Built and
// validated by Writer::make_update or Producer::make_update.
#pragma once

#include <cstdint>
#include <string_view>

#include "poscache/decimal.hpp"
#include "poscache/position.hpp"
#include "poscache/schema.hpp"

namespace poscache {

enum class Side : std::uint8_t { buy, sell };  // of a fill

enum class UpdateMode : std::uint8_t {
  merge,    // set the given fields, keep the others
  replace,  // the given fields become the whole record; the others become unset
};

// A validated upsert: key checked, namespace resolved, values converted to mantissas.
// Fixed-size, so building and applying one allocates nothing.
struct Update {
  NamespaceId ns = 0;
  std::uint8_t account_len = 0;
  std::uint8_t instrument_len = 0;
  UpdateMode mode = UpdateMode::merge;
  std::uint32_t fields_mask = 0;  // bit i: field i is given (its value slots below)
  std::uint64_t source_seq =
      0;  // producer's sequence; an update older than the stored one is refused
  char account[kMaxAccountLen] = {};
  char instrument[kMaxInstrumentLen] = {};
  int128 values[kMaxFields] = {};  // by value slot, as Position::values
  [[nodiscard]] std::string_view account_view() const noexcept { return {account, account_len}; }
  [[nodiscard]] std::string_view instrument_view() const noexcept {
    return {instrument, instrument_len};
  }
};

}  // namespace poscache
