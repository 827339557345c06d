// The refresh broker's lines to refreshers and its reading of theirs (broker.cpp, answer.cpp):
// replies, refusals with a reason, exact field values.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace poscache::refresh::detail {

using json = nlohmann::json;

struct Bad {
  std::string error;
};

inline std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

// A field value: a decimal string or a JSON integer, never a binary float.
inline std::string value_text(const std::string& field, const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  if (v.is_number_float())
    throw Bad{"field '" + field + "': " + shown(v) +
              " is a floating-point JSON number; give decimals as strings (\"12.5\") so they "
              "stay exact"};
  throw Bad{"field '" + field + "' must be a decimal string or an integer; found " + shown(v)};
}

inline std::string reply_ok(std::uint64_t id, std::size_t applied, std::size_t dropped) {
  return "{\"status\":\"applied\",\"request\":" + std::to_string(id) +
         ",\"applied\":" + std::to_string(applied) + ",\"dropped\":" + std::to_string(dropped) +
         "}\n";
}
inline std::string reply_error(std::optional<std::uint64_t> id, const std::string& error) {
  json j;
  j["status"] = "rejected";
  if (id) j["request"] = *id;
  j["error"] = error;
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace poscache::refresh::detail
