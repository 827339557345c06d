#include "writer/ingest/stream_codec.hpp"

#include <charconv>
#include <nlohmann/json.hpp>

namespace poscache::ingest {
namespace {
using json = nlohmann::json;

// A printable, bounded rendering of bytes from the stream for an error message.
std::string shown(std::string_view s) {
  std::string out =
      json(std::string(s.substr(0, 60))).dump(-1, ' ', true, json::error_handler_t::replace);
  if (s.size() > 60) out.insert(out.size() - 1, "...");
  return out;
}

bool parse_u64(std::string_view s, std::uint64_t& v) {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

template <class T>
void default_seq(T& c, std::uint64_t packed) {
  if (c.source_seq == 0) c.source_seq = packed;
}
}  // namespace

Expected<std::uint64_t> pack_stream_id(std::string_view id) {
  const std::size_t dash = id.find('-');
  std::uint64_t ms = 0, seq = 0;
  if (dash == std::string_view::npos || !parse_u64(id.substr(0, dash), ms) ||
      !parse_u64(id.substr(dash + 1), seq)) {
    return fail("stream id " + shown(id) + " is not of the form MILLISECONDS-SEQUENCE");
  }
  if (ms >= (1ull << (64 - kStreamSeqBits)))
    return fail("stream id " + shown(id) + ": milliseconds beyond 2^44 cannot order a position");
  if (seq >= (1ull << kStreamSeqBits)) {
    return fail("stream id " + shown(id) +
                ": more than 2^20 entries within one millisecond cannot order a position "
                "(source_seq)");
  }
  const std::uint64_t packed = (ms << kStreamSeqBits) | seq;
  if (packed == 0) return fail("stream id 0-0 is not a valid entry id");
  return packed;
}

std::string unpack_stream_id(std::uint64_t packed) {
  return std::to_string(packed >> kStreamSeqBits) + "-" +
         std::to_string(packed & ((1ull << kStreamSeqBits) - 1));
}

std::variant<Command, std::string> decode_stream_entry(const JsonDecoder& decoder,
                                                       std::uint64_t packed_id,
                                                       const StreamFields& fields) {
  const std::string* cmd = nullptr;
  for (const auto& [name, value] : fields) {
    if (name != "cmd") continue;
    if (cmd != nullptr) return std::string("entry has two 'cmd' fields; it must have one");
    cmd = &value;
  }
  if (cmd == nullptr) {
    std::string names;
    for (const auto& f : fields) {
      if (names.size() > 80) {
        names += ", ...";
        break;
      }
      names += (names.empty() ? "" : ", ") + shown(f.first);
    }
    return "entry has no 'cmd' field (a JSON-lines command); its fields: " +
           (names.empty() ? std::string("none") : names);
  }
  if (cmd->size() > kMaxJsonLine) {
    return "field 'cmd' is " + std::to_string(cmd->size()) + " bytes; the limit is " +
           std::to_string(kMaxJsonLine);
  }
  auto decoded = decoder.decode(*cmd);
  if (auto* f = std::get_if<JsonDecoder::Failure>(&decoded)) return "field 'cmd': " + f->error;
  Command c = std::move(std::get<DecodedLine>(decoded).command);
  if (auto* u = std::get_if<Update>(&c)) default_seq(*u, packed_id);
  if (auto* a = std::get_if<Add>(&c)) default_seq(*a, packed_id);
  if (auto* f = std::get_if<Fill>(&c)) default_seq(*f, packed_id);
  if (auto* g = std::get_if<Group>(&c)) {  // every command of a batch carries the entry's id
    for (Command& sub : g->commands) {
      if (auto* u = std::get_if<Update>(&sub)) default_seq(*u, packed_id);
      if (auto* a = std::get_if<Add>(&sub)) default_seq(*a, packed_id);
      if (auto* f = std::get_if<Fill>(&sub)) default_seq(*f, packed_id);
    }
  }
  return c;
}

std::string rejected_payload(const StreamFields& fields) {
  for (const auto& [name, value] : fields)
    if (name == "cmd") return value;
  json o = json::object();
  for (const auto& [name, value] : fields) o[name] = value;
  return o.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace poscache::ingest
