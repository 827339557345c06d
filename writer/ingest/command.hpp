// The ingest command set: what every source (producer rings, the JSON-lines socket, a Redis
// stream) turns its input into, and what the CommandExecutor applies. One set, one error
// discipline: a command is checked whole before anything is written, so a refused command
// changes nothing.
//
//   upsert      Update (poscache/writer.hpp): merge or replace the given fields
//   erase       Erase: one position
//   invalidate  InvalidateAccount (account, or account + namespace), InvalidateNamespace,
//               InvalidateMatching (a glob over "ns:account:instrument"), InvalidateAll
//   add         Add: an int64 field += by, or reset to 0 (the lending bot's blocks_unhealthy)
//   fill        Fill: a trade, kept with the average-cost method (writer/ingest/fill_math.hpp)
//   mark        Mark: mark_price and unrealized_pnl of one position, or of every position in the
//               namespace on that instrument
//   batch       Group: commands applied all or nothing, seen whole by snapshot() readers
//
// Keys travel as fixed-size arrays (PositionKey), so a command is a value with no heap behind it
// except the glob and Erase's KeyRef strings (both rare, admin-path commands).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "poscache/apply.hpp"
#include "writer/ingest/fill_math.hpp"

namespace poscache::ingest {

inline constexpr std::size_t kMaxTradeIdLen = 64;

struct PositionKey {
  NamespaceId ns = 0;
  std::uint8_t account_len = 0;
  std::uint8_t instrument_len = 0;
  char account[kMaxAccountLen] = {};
  char instrument[kMaxInstrumentLen] = {};
  [[nodiscard]] std::string_view account_view() const noexcept { return {account, account_len}; }
  [[nodiscard]] std::string_view instrument_view() const noexcept {
    return {instrument, instrument_len};
  }
  // Copies the parts (callers have checked their lengths against the limits).
  void set(NamespaceId n, std::string_view acc, std::string_view ins) noexcept {
    ns = n;
    account_len = static_cast<std::uint8_t>(acc.size());
    instrument_len = static_cast<std::uint8_t>(ins.size());
    // (an empty part may have a null data(): memcpy from null is undefined even for 0 bytes)
    if (!acc.empty()) std::memcpy(account, acc.data(), acc.size());
    if (!ins.empty()) std::memcpy(instrument, ins.data(), ins.size());
  }
};

struct Add {
  PositionKey key;
  std::uint8_t field = 0;  // an int64 field of the namespace
  bool reset = false;      // true: set to 0; false: += by
  std::int64_t by = 0;
  std::uint64_t source_seq = 0;
};

struct Fill {
  PositionKey key;
  FillInput fill;  // mantissas at the qty / avg_price / fees fields' scales
  std::uint8_t trade_id_len = 0;
  char trade_id[kMaxTradeIdLen] = {};  // empty: no de-duplication for this fill
  std::uint64_t source_seq = 0;
  [[nodiscard]] std::string_view trade_id_view() const noexcept { return {trade_id, trade_id_len}; }
};

struct Mark {
  PositionKey key;   // account_len 0: every account holding the instrument
  int128 price = 0;  // at the mark_price field's scale
  [[nodiscard]] bool all_accounts() const noexcept { return key.account_len == 0; }
};

// A batch (a group): commands applied all or nothing and seen whole by snapshot() readers
// (CommandExecutor::execute). Only commands on one position each: upsert, erase, add, fill and
// a one-account mark; at most kMaxGroupCommands.
struct Group;
inline constexpr std::size_t kMaxGroupCommands = 64;

using Command = std::variant<Update, Erase, InvalidateAccount, InvalidateNamespace,
                             InvalidateMatching, InvalidateAll, Add, Fill, Mark, Group>;

struct Group {
  std::vector<Command> commands;
};

// The command's name as the JSON lines spell it ("upsert", "fill", ...).
std::string_view command_name(const Command& c) noexcept;

enum class CommandStatus : std::uint8_t {
  applied,       // written (version says which); for removals and marks, `count` says how many
  duplicate,     // a fill whose trade_id is in the de-duplication window: ignored, counted
  stale_source,  // source_seq not newer than the stored one: ignored, counted
  not_found,     // erase, or a one-account mark, of a position that is not there
  rejected,      // bad input: `error` names the field and the value; nothing was written
};
std::string_view to_string(CommandStatus s) noexcept;

struct CommandResult {
  CommandStatus status = CommandStatus::rejected;
  std::uint64_t version = 0;  // the version written (upsert, add, fill, one-account mark)
  std::uint64_t count = 0;    // positions removed (erase, invalidate) or marked (mark)
  std::string error;          // set when rejected
  // A group's: one result per command, in order (empty when the group was rejected whole).
  std::vector<CommandResult> results{};
};

}  // namespace poscache::ingest
