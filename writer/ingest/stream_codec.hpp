// The Redis stream entry format, decoded the same way on every path (the stream source, its fuzz
// target, the tests):
//
//   XADD poscache:in * cmd '{"op":"fill","ns":"spot","account":"w1","instrument":"SOL",
//                             "side":"buy","qty":"10","price":"100","trade_id":"T-1"}'
//
// An entry carries one field `cmd`: one command of the JSON-lines format (json_codec.hpp). Other
// fields are ignored (publishers may add a trace id); an entry without `cmd`, or with two, is
// refused. The stream id orders the entry: upsert, add and fill commands that carry no "seq"
// get the id as their source_seq, so an entry delivered again after a restart is refused as
// stale instead of applied twice (poscache/update.hpp; the table keeps the highest seq).
//
// A stream id "MS-SEQ" becomes the 64-bit MS * 2^20 + SEQ: it keeps the ids' order as long as
// SEQ < 2^20 (a million entries within one millisecond of one stream) and MS < 2^44 (the year
// 2527). Ids outside that are refused with an error naming them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "poscache/error.hpp"
#include "writer/ingest/command.hpp"
#include "writer/ingest/json_codec.hpp"

namespace poscache::ingest {

inline constexpr std::uint64_t kStreamSeqBits = 20;

// "1700000000000-5" -> 1700000000000 * 2^20 + 5; the error names the id and what is wrong.
Expected<std::uint64_t> pack_stream_id(std::string_view id);
// The inverse, for messages and for XACK after a restart.
std::string unpack_stream_id(std::uint64_t packed);

using StreamFields = std::vector<std::pair<std::string, std::string>>;

// One entry -> the command to execute, or the error naming what was wrong. `packed_id` (from
// pack_stream_id) becomes the source_seq of an upsert, add or fill that has none.
std::variant<Command, std::string> decode_stream_entry(const JsonDecoder& decoder,
                                                       std::uint64_t packed_id,
                                                       const StreamFields& fields);

// What the rejected copy carries as `cmd`: the entry's `cmd` field, or, when it has none, its
// fields as one JSON object, so that nothing of a refused entry is lost.
std::string rejected_payload(const StreamFields& fields);

}  // namespace poscache::ingest
