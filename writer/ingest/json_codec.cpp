#include "writer/ingest/json_codec.hpp"

#include <simdjson.h>

#include <nlohmann/json.hpp>

namespace poscache::ingest {

// The parser's buffers, reused from line to line (no allocation once warmed up).
struct JsonDecoder::Parser {
  simdjson::dom::parser dom;
};

namespace {

using json = nlohmann::json;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

// A short, printable rendering of a JSON value for error messages.
std::string shown(element v) {
  std::string s = simdjson::minify(v);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

struct Bad {
  std::string error;
};

element member(object obj, const char* name) {
  element v;
  if (obj[name].get(v) != simdjson::SUCCESS)
    throw Bad{std::string("missing member \"") + name + "\""};
  return v;
}

bool has(object obj, const char* name) {
  return obj[name].error() == simdjson::SUCCESS;
}

std::string_view text(object obj, const char* name) {
  const element v = member(obj, name);
  std::string_view s;
  if (v.get(s) != simdjson::SUCCESS)
    throw Bad{std::string("member \"") + name + "\" must be a string; found " + shown(v)};
  return s;
}

// A decimal or integer given as a string or a JSON integer: its text.
std::string number_text(element v, const std::string& what) {
  switch (v.type()) {
    case element_type::STRING:
      return std::string(v.get_string().value_unsafe());
    case element_type::INT64:
      return std::to_string(v.get_int64().value_unsafe());
    case element_type::UINT64:
      return std::to_string(v.get_uint64().value_unsafe());
    case element_type::DOUBLE:
      throw Bad{what + ": " + shown(v) +
                " is a floating-point JSON number; give decimals as strings (\"12.5\") so they "
                "stay exact"};
    default:
      throw Bad{what + " must be a decimal string or an integer; found " + shown(v)};
  }
}

std::uint64_t seq_of(object obj) {
  element v;
  if (obj["seq"].get(v) != simdjson::SUCCESS) return 0;
  if (v.type() == element_type::UINT64) return v.get_uint64().value_unsafe();
  if (v.type() == element_type::INT64 && v.get_int64().value_unsafe() >= 0)
    return static_cast<std::uint64_t>(v.get_int64().value_unsafe());
  throw Bad{"member \"seq\" must be a non-negative integer; found " + shown(v)};
}

bool is_true(element v) {
  bool b = false;
  return v.get(b) == simdjson::SUCCESS && b;
}

}  // namespace

JsonDecoder::JsonDecoder(const std::vector<NamespaceSpec>& namespaces)
    : specs_(&namespaces), rules_(namespaces), parser_(std::make_unique<Parser>()) {}
JsonDecoder::~JsonDecoder() = default;
JsonDecoder::JsonDecoder(JsonDecoder&&) noexcept = default;

std::variant<DecodedLine, JsonDecoder::Failure> JsonDecoder::decode(std::string_view line) const {
  if (line.size() > kMaxJsonLine) {
    return Failure{"line of " + std::to_string(line.size()) + " bytes; the limit is " +
                       std::to_string(kMaxJsonLine),
                   {}};
  }
  element doc;
  if (auto err = parser_->dom.parse(line.data(), line.size()).get(doc)) {
    return Failure{"not valid JSON (" + std::string(simdjson::error_message(err)) +
                       "): " + std::string(line.substr(0, 80)),
                   {}};
  }
  object obj;
  if (doc.get(obj) != simdjson::SUCCESS)
    return Failure{"a command must be a JSON object; found " + shown(doc), {}};
  std::string id;
  if (element v; obj["id"].get(v) == simdjson::SUCCESS) {
    const auto t = v.type();
    if (t != element_type::STRING && t != element_type::INT64 && t != element_type::UINT64)
      return Failure{"member \"id\" must be a string or an integer; found " + shown(v), {}};
    id = simdjson::minify(v);
  }
  std::string op_name;
  try {
    op_name = std::string(text(obj, "op"));
    auto ns_id = [&](object o) -> NamespaceId {
      const std::string_view ns = text(o, "ns");
      auto id_ = rules_.namespace_id(ns);
      if (!id_) throw Bad{id_.error()};
      return *id_;
    };
    auto key = [&](object o, NamespaceId ns) {
      const std::string_view acc = text(o, "account");
      const std::string_view ins = text(o, "instrument");
      if (auto ok = validate_account(acc); !ok) throw Bad{ok.error()};
      if (auto ok = validate_instrument(ins); !ok) throw Bad{ok.error()};
      PositionKey k;
      k.set(ns, acc, ins);
      return k;
    };
    auto decimal_at = [&](object o, const char* name, NamespaceId ns, std::uint8_t field) {
      const FieldSpec& fs = (*specs_)[ns].fields[field];
      const std::string t = number_text(member(o, name), std::string("member \"") + name + "\"");
      auto v = parse_decimal(t, fs.scale);
      if (!v) throw Bad{std::string("member \"") + name + "\": " + v.error()};
      return *v;
    };

    if (op_name == "upsert") {
      const NamespaceId ns = ns_id(obj);
      const element fv = member(obj, "fields");
      object fields;
      if (fv.get(fields) != simdjson::SUCCESS || fields.size() == 0)
        throw Bad{"member \"fields\" must be a non-empty object; found " + shown(fv)};
      if (fields.size() > kMaxFields)
        throw Bad{"member \"fields\" has " + std::to_string(fields.size()) +
                  " fields; a namespace has at most " + std::to_string(kMaxFields)};
      // Values given as strings are used in place (views into the parser's buffer); integers
      // are turned into text first.
      std::string texts[kMaxFields];
      std::pair<std::string_view, std::string_view> pairs[kMaxFields];
      std::size_t n = 0;
      for (const auto field : fields) {
        std::string_view sv;
        if (field.value.get(sv) == simdjson::SUCCESS) {
          pairs[n] = {field.key, sv};
        } else {
          texts[n] = number_text(field.value, "field '" + std::string(field.key) + "'");
          pairs[n] = {field.key, texts[n]};
        }
        ++n;
      }
      UpdateMode mode = UpdateMode::merge;
      if (element mv; obj["mode"].get(mv) == simdjson::SUCCESS) {
        std::string_view m;
        if (mv.get(m) == simdjson::SUCCESS && m == "replace")
          mode = UpdateMode::replace;
        else if (mv.get(m) != simdjson::SUCCESS || m != "merge")
          throw Bad{"member \"mode\" must be \"merge\" or \"replace\"; found " + shown(mv)};
      }
      auto u = rules_.build((*specs_)[ns].name, text(obj, "account"), text(obj, "instrument"),
                            std::span(pairs, n), seq_of(obj), mode);
      if (!u) throw Bad{u.error()};
      return DecodedLine{*u, id};
    }
    if (op_name == "erase") {
      const NamespaceId ns = ns_id(obj);
      const PositionKey k = key(obj, ns);
      return DecodedLine{
          Erase{KeyRef{ns, std::string(k.account_view()), std::string(k.instrument_view())}}, id};
    }
    if (op_name == "invalidate") {
      const bool has_account = has(obj, "account"), has_ns = has(obj, "ns"),
                 has_glob = has(obj, "glob"), has_all = has(obj, "all");
      if (has_account + has_glob + has_all > 1 || (has_ns && (has_glob || has_all)))
        throw Bad{"invalidate takes one of: account (with ns or not), ns, glob, all"};
      if (has_account) {
        const std::string_view acc = text(obj, "account");
        if (auto ok = validate_account(acc); !ok) throw Bad{ok.error()};
        InvalidateAccount ia{std::string(acc), std::nullopt};
        if (has_ns) ia.ns = ns_id(obj);
        return DecodedLine{std::move(ia), id};
      }
      if (has_ns) return DecodedLine{InvalidateNamespace{ns_id(obj)}, id};
      if (has_glob) {
        const std::string_view g = text(obj, "glob");
        if (auto p = rules_.problem_of_glob(g); !p.empty()) throw Bad{p};
        return DecodedLine{InvalidateMatching{std::string(g)}, id};
      }
      if (has_all) {
        if (!is_true(member(obj, "all")))
          throw Bad{"member \"all\" must be true; found " + shown(member(obj, "all"))};
        return DecodedLine{InvalidateAll{}, id};
      }
      throw Bad{"invalidate needs one of: account (with ns or not), ns, glob, all"};
    }
    if (op_name == "add") {
      Add a;
      a.key = key(obj, ns_id(obj));
      const std::string_view field = text(obj, "field");
      const NamespaceSpec& spec = (*specs_)[a.key.ns];
      std::size_t f = 0;
      while (f < spec.fields.size() && spec.fields[f].name != field) ++f;
      if (f == spec.fields.size())
        throw Bad{"member \"field\": namespace '" + spec.name + "' has no field '" +
                  std::string(field) + "'"};
      a.field = static_cast<std::uint8_t>(f);
      const bool has_by = has(obj, "by"), has_reset = has(obj, "reset");
      if (has_by == has_reset)
        throw Bad{"add takes exactly one of \"by\" (an integer) or \"reset\""};
      if (has_reset) {
        if (!is_true(member(obj, "reset")))
          throw Bad{"member \"reset\" must be true; found " + shown(member(obj, "reset"))};
        a.reset = true;
      } else {
        auto v = parse_int64(number_text(member(obj, "by"), "member \"by\""));
        if (!v) throw Bad{"member \"by\": " + v.error()};
        a.by = *v;
      }
      a.source_seq = seq_of(obj);
      return DecodedLine{a, id};
    }
    if (op_name == "fill") {
      Fill fl;
      fl.key = key(obj, ns_id(obj));
      auto tf = TradingFields::for_fill((*specs_)[fl.key.ns]);
      if (!tf) throw Bad{tf.error()};
      const std::string_view side = text(obj, "side");
      if (side == "buy")
        fl.fill.side = Side::buy;
      else if (side == "sell")
        fl.fill.side = Side::sell;
      else
        throw Bad{"member \"side\" must be \"buy\" or \"sell\"; found \"" + std::string(side) +
                  "\""};
      fl.fill.qty = decimal_at(obj, "qty", fl.key.ns, tf->qty);
      if (fl.fill.qty <= 0)
        throw Bad{"member \"qty\" must be greater than 0; found " + shown(member(obj, "qty"))};
      fl.fill.price = decimal_at(obj, "price", fl.key.ns, tf->avg_price);
      if (fl.fill.price < 0)
        throw Bad{"member \"price\" must not be negative; found " + shown(member(obj, "price"))};
      if (has(obj, "fee")) fl.fill.fee = decimal_at(obj, "fee", fl.key.ns, tf->fees);
      if (element tv; obj["trade_id"].get(tv) == simdjson::SUCCESS) {
        const auto ty = tv.type();
        if (ty != element_type::STRING && ty != element_type::INT64 && ty != element_type::UINT64)
          throw Bad{"member \"trade_id\" must be a string or an integer; found " + shown(tv)};
        const std::string t = ty == element_type::STRING
                                  ? std::string(tv.get_string().value_unsafe())
                                  : simdjson::minify(tv);
        if (t.empty() || t.size() > kMaxTradeIdLen)
          throw Bad{"member \"trade_id\" must have 1 to " + std::to_string(kMaxTradeIdLen) +
                    " characters; found " + std::to_string(t.size())};
        fl.trade_id_len = static_cast<std::uint8_t>(t.size());
        std::memcpy(fl.trade_id, t.data(), t.size());
      }
      fl.source_seq = seq_of(obj);
      return DecodedLine{fl, id};
    }
    if (op_name == "mark") {
      Mark m;
      const NamespaceId ns = ns_id(obj);
      auto tf = TradingFields::for_mark((*specs_)[ns]);
      if (!tf) throw Bad{tf.error()};
      const std::string_view ins = text(obj, "instrument");
      if (auto ok = validate_instrument(ins); !ok) throw Bad{ok.error()};
      std::string_view acc;
      if (has(obj, "account")) {
        acc = text(obj, "account");
        if (auto ok = validate_account(acc); !ok) throw Bad{ok.error()};
      }
      m.key.set(ns, acc, ins);
      m.price = decimal_at(obj, "price", ns, *tf->mark_price);
      if (m.price < 0)
        throw Bad{"member \"price\" must not be negative; found " + shown(member(obj, "price"))};
      return DecodedLine{m, id};
    }
    throw Bad{"unknown op \"" + op_name +
              "\": expected upsert, erase, invalidate, add, fill or mark"};
  } catch (const Bad& b) {
    return Failure{op_name.empty() ? b.error : op_name + ": " + b.error, id};
  }
}

namespace {
std::string with_id(std::string_view id) {
  std::string s = "{";
  if (!id.empty()) {
    s += "\"id\":";
    s += id;
    s += ',';
  }
  return s;
}
}  // namespace

std::string encode_reply(const CommandResult& r, std::string_view id) {
  if (r.status == CommandStatus::rejected) return encode_error(r.error, id);
  std::string s = with_id(id);
  s += "\"status\":\"";
  s += to_string(r.status);
  s += '"';
  if (r.version != 0) s += ",\"version\":" + std::to_string(r.version);
  if (r.count != 0 || r.version == 0) {
    if (r.status == CommandStatus::applied) s += ",\"count\":" + std::to_string(r.count);
  }
  s += "}\n";
  return s;
}

std::string encode_error(std::string_view error, std::string_view id) {
  std::string s = with_id(id);
  s += "\"status\":\"rejected\",\"error\":";
  s += json(std::string(error)).dump(-1, ' ', false, json::error_handler_t::replace);
  s += "}\n";
  return s;
}

}  // namespace poscache::ingest
