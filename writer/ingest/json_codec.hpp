// The JSON-lines command format: one command per line in, one reply per line out. The unix
// socket, `poscache-feed replay` and the Redis stream's `cmd` field all speak it.
//
//   {"op":"upsert","ns":"spot","account":"w1","instrument":"SOL",
//    "fields":{"qty":"12.5","avg_price":"141.2"},"mode":"merge","seq":42}
//   {"op":"erase","ns":"spot","account":"w1","instrument":"SOL"}
//   {"op":"invalidate","account":"w1"}            (+ "ns": one namespace of the account)
//   {"op":"invalidate","ns":"quotes"}             {"op":"invalidate","glob":"spot:w*:SOL"}
//   {"op":"invalidate","all":true}
//   {"op":"add","ns":"lending","account":"0xab..","instrument":"USDC","field":"blocks_unhealthy",
//    "by":1}                                      (or "reset":true: set it to 0)
//   {"op":"fill","ns":"spot","account":"w1","instrument":"SOL","side":"buy","qty":"10",
//    "price":"100","fee":"0.05","trade_id":"T-1001"}
//   {"op":"mark","ns":"spot","instrument":"SOL","price":"120"}   (+ "account": one position)
//
// Decimals are JSON strings ("12.5") or integers (12); a JSON number with a fraction or an
// exponent is refused (binary floating point cannot carry an exact decimal). "id" (any string or
// integer) is echoed in the reply. Replies:
//   {"id":..,"status":"applied","version":123}      (upsert, add, fill, one-account mark)
//   {"id":..,"status":"applied","count":3}          (erase, invalidate, mark across accounts)
//   {"id":..,"status":"duplicate"} | "stale_source" | "not_found"
//   {"id":..,"status":"rejected","error":"fill: field 'qty': ..."}
// Every error names the member and the value it found.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "poscache/error.hpp"
#include "writer/ingest/command.hpp"
#include "writer/input.hpp"

namespace poscache::ingest {

inline constexpr std::size_t kMaxJsonLine = 64 * 1024;  // longer lines are refused

struct DecodedLine {
  Command command;
  std::string id;  // the request's "id" as JSON text ("" if none), echoed in the reply
};

// Parses with simdjson (Debian's libsimdjson-dev: ~0.2 us for a typical line, against ~2.5 us
// with a DOM of std::map and std::string), reusing its buffers from line to line. One decoder
// per thread: decode() is const to its callers but reuses the parser.
class JsonDecoder {
 public:
  explicit JsonDecoder(const std::vector<NamespaceSpec>& namespaces);
  ~JsonDecoder();
  JsonDecoder(JsonDecoder&&) noexcept;
  JsonDecoder(const JsonDecoder&) = delete;
  JsonDecoder& operator=(const JsonDecoder&) = delete;
  // One line (without its newline) -> a command, or the error (and the id, if one was readable).
  struct Failure {
    std::string error;
    std::string id;
  };
  [[nodiscard]] std::variant<DecodedLine, Failure> decode(std::string_view line) const;

 private:
  struct Parser;
  const std::vector<NamespaceSpec>* specs_;
  detail::InputRules rules_;
  std::unique_ptr<Parser> parser_;
};

// The reply line (with its newline) for `result`.
std::string encode_reply(const CommandResult& result, std::string_view id);
// The reply for a line that did not decode.
std::string encode_error(std::string_view error, std::string_view id);

}  // namespace poscache::ingest
