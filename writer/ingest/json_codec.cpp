#include "writer/ingest/json_codec.hpp"

#include <simdjson.h>

#include <algorithm>
#include <initializer_list>
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

// Every member of a command is one it knows, given once: a misspelt "tradeId" or "fees" would
// otherwise be ignored silently (a redelivered fill applied twice, a fee lost), and of two "op"s
// the first would win.
void check_members(object obj, std::string_view op, std::initializer_list<std::string_view> known) {
  std::string_view seen[24];
  std::size_t n = 0;
  for (const auto field : obj) {
    const std::string_view k = field.key;
    if (k != "op" && k != "id" && std::find(known.begin(), known.end(), k) == known.end()) {
      std::string list;
      for (const auto& m : known) list += (list.empty() ? "" : ", ") + std::string(m);
      std::string shown_key(k.substr(0, 40));
      throw Bad{"unknown member \"" + shown_key + "\" (" + std::string(op) + " takes " + list +
                ")"};
    }
    for (std::size_t i = 0; i < n; ++i)
      if (seen[i] == k) throw Bad{"member \"" + std::string(k) + "\" is given twice"};
    if (n < std::size(seen)) seen[n++] = k;
  }
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

namespace {

// One command object to its Command (throws Bad naming what is wrong): a function per op over
// the namespaces' rules and schemas.
struct CommandReader {
  const detail::InputRules& rules_;
  const std::vector<NamespaceSpec>* specs_;

  NamespaceId ns_id(object o) const {
    const std::string_view ns = text(o, "ns");
    auto id_ = rules_.namespace_id(ns);
    if (!id_) throw Bad{id_.error()};
    return *id_;
  }
  PositionKey key(object o, NamespaceId ns) const {
    const std::string_view acc = text(o, "account");
    const std::string_view ins = text(o, "instrument");
    if (auto ok = validate_account(acc); !ok) throw Bad{ok.error()};
    if (auto ok = validate_instrument(ins); !ok) throw Bad{ok.error()};
    PositionKey k;
    k.set(ns, acc, ins);
    return k;
  }
  int128 decimal_at(object o, const char* name, NamespaceId ns, std::uint8_t field) const {
    const FieldSpec& fs = (*specs_)[ns].fields[field];
    const std::string t = number_text(member(o, name), std::string("member \"") + name + "\"");
    auto v = parse_decimal(t, fs.scale);
    if (!v) throw Bad{std::string("member \"") + name + "\": " + v.error()};
    return *v;
  }

  // `top`: not inside a batch.
  Command command_of(object o, const std::string& op, bool top) const {
    if (op == "upsert") return upsert_of(o);
    if (op == "erase") return erase_of(o);
    if (op == "invalidate") return invalidate_of(o);
    if (op == "add") return add_of(o);
    if (op == "fill") return fill_of(o);
    if (op == "mark") return mark_of(o);
    if (op == "batch") return batch_of(o, top);
    throw Bad{"unknown op \"" + op +
              "\": expected upsert, erase, invalidate, add, fill, mark or batch"};
  }

  // {"op":"upsert"}: an Update of the named fields (strings used in place, integers as text).
  Command upsert_of(object o) const {
    check_members(o, "upsert", {"ns", "account", "instrument", "fields", "mode", "seq"});
    const NamespaceId ns = ns_id(o);
    const element fv = member(o, "fields");
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
    if (element mv; o["mode"].get(mv) == simdjson::SUCCESS) {
      std::string_view m;
      if (mv.get(m) == simdjson::SUCCESS && m == "replace")
        mode = UpdateMode::replace;
      else if (mv.get(m) != simdjson::SUCCESS || m != "merge")
        throw Bad{"member \"mode\" must be \"merge\" or \"replace\"; found " + shown(mv)};
    }
    auto u = rules_.build((*specs_)[ns].name, text(o, "account"), text(o, "instrument"),
                          std::span(pairs, n), seq_of(o), mode);
    if (!u) throw Bad{u.error()};
    return Command{*u};
  }

  // {"op":"erase"}: one key.
  Command erase_of(object o) const {
    check_members(o, "erase", {"ns", "account", "instrument"});
    const NamespaceId ns = ns_id(o);
    const PositionKey k = key(o, ns);
    return Command{
        Erase{KeyRef{ns, std::string(k.account_view()), std::string(k.instrument_view())}}};
  }

  // {"op":"invalidate"}: an account (in one namespace or all), a namespace, a glob, or all.
  Command invalidate_of(object o) const {
    check_members(o, "invalidate", {"account", "ns", "glob", "all"});
    const bool has_account = has(o, "account"), has_ns = has(o, "ns"), has_glob = has(o, "glob"),
               has_all = has(o, "all");
    if (has_account + has_glob + has_all > 1 || (has_ns && (has_glob || has_all)))
      throw Bad{"invalidate takes one of: account (with ns or not), ns, glob, all"};
    if (has_account) {
      const std::string_view acc = text(o, "account");
      if (auto ok = validate_account(acc); !ok) throw Bad{ok.error()};
      InvalidateAccount ia{std::string(acc), std::nullopt};
      if (has_ns) ia.ns = ns_id(o);
      return Command{std::move(ia)};
    }
    if (has_ns) return Command{InvalidateNamespace{ns_id(o)}};
    if (has_glob) {
      const std::string_view g = text(o, "glob");
      if (auto p = rules_.problem_of_glob(g); !p.empty()) throw Bad{p};
      return Command{InvalidateMatching{std::string(g)}};
    }
    if (has_all) {
      if (!is_true(member(o, "all")))
        throw Bad{"member \"all\" must be true; found " + shown(member(o, "all"))};
      return Command{InvalidateAll{}};
    }
    throw Bad{"invalidate needs one of: account (with ns or not), ns, glob, all"};
  }

  // {"op":"add"}: an int64 field moved by an integer, or reset.
  Command add_of(object o) const {
    check_members(o, "add", {"ns", "account", "instrument", "field", "by", "reset", "seq"});
    Add a;
    a.key = key(o, ns_id(o));
    const std::string_view field = text(o, "field");
    const NamespaceSpec& spec = (*specs_)[a.key.ns];
    std::size_t f = 0;
    while (f < spec.fields.size() && spec.fields[f].name != field) ++f;
    if (f == spec.fields.size())
      throw Bad{"member \"field\": namespace '" + spec.name + "' has no field '" +
                std::string(field) + "'"};
    a.field = static_cast<std::uint8_t>(f);
    const bool has_by = has(o, "by"), has_reset = has(o, "reset");
    if (has_by == has_reset) throw Bad{"add takes exactly one of \"by\" (an integer) or \"reset\""};
    if (has_reset) {
      if (!is_true(member(o, "reset")))
        throw Bad{"member \"reset\" must be true; found " + shown(member(o, "reset"))};
      a.reset = true;
    } else {
      auto v = parse_int64(number_text(member(o, "by"), "member \"by\""));
      if (!v) throw Bad{"member \"by\": " + v.error()};
      a.by = *v;
    }
    a.source_seq = seq_of(o);
    return Command{a};
  }

  // {"op":"fill"}: a trade on a trading position (writer/ingest/fill_math.hpp).
  Command fill_of(object o) const {
    check_members(
        o, "fill",
        {"ns", "account", "instrument", "side", "qty", "price", "fee", "trade_id", "seq"});
    Fill fl;
    fl.key = key(o, ns_id(o));
    auto tf = TradingFields::for_fill((*specs_)[fl.key.ns]);
    if (!tf) throw Bad{tf.error()};
    const std::string_view side = text(o, "side");
    if (side == "buy")
      fl.fill.side = Side::buy;
    else if (side == "sell")
      fl.fill.side = Side::sell;
    else
      throw Bad{"member \"side\" must be \"buy\" or \"sell\"; found \"" + std::string(side) + "\""};
    fl.fill.qty = decimal_at(o, "qty", fl.key.ns, tf->qty);
    if (fl.fill.qty <= 0)
      throw Bad{"member \"qty\" must be greater than 0; found " + shown(member(o, "qty"))};
    fl.fill.price = decimal_at(o, "price", fl.key.ns, tf->avg_price);
    if (fl.fill.price < 0)
      throw Bad{"member \"price\" must not be negative; found " + shown(member(o, "price"))};
    if (has(o, "fee")) fl.fill.fee = decimal_at(o, "fee", fl.key.ns, tf->fees);
    if (element tv; o["trade_id"].get(tv) == simdjson::SUCCESS) {
      const auto ty = tv.type();
      if (ty != element_type::STRING && ty != element_type::INT64 && ty != element_type::UINT64)
        throw Bad{"member \"trade_id\" must be a string or an integer; found " + shown(tv)};
      const std::string t = ty == element_type::STRING ? std::string(tv.get_string().value_unsafe())
                                                       : simdjson::minify(tv);
      if (t.empty() || t.size() > kMaxTradeIdLen)
        throw Bad{"member \"trade_id\" must have 1 to " + std::to_string(kMaxTradeIdLen) +
                  " characters; found " + std::to_string(t.size())};
      fl.trade_id_len = static_cast<std::uint8_t>(t.size());
      std::memcpy(fl.trade_id, t.data(), t.size());
    }
    fl.source_seq = seq_of(o);
    return Command{fl};
  }

  // {"op":"mark"}: a price for an instrument, across accounts or for one.
  Command mark_of(object o) const {
    check_members(o, "mark", {"ns", "instrument", "price", "account"});
    Mark m;
    const NamespaceId ns = ns_id(o);
    auto tf = TradingFields::for_mark((*specs_)[ns]);
    if (!tf) throw Bad{tf.error()};
    const std::string_view ins = text(o, "instrument");
    if (auto ok = validate_instrument(ins); !ok) throw Bad{ok.error()};
    std::string_view acc;
    if (has(o, "account")) {
      acc = text(o, "account");
      if (auto ok = validate_account(acc); !ok) throw Bad{ok.error()};
    }
    m.key.set(ns, acc, ins);
    m.price = decimal_at(o, "price", ns, *tf->mark_price);
    if (m.price < 0)
      throw Bad{"member \"price\" must not be negative; found " + shown(member(o, "price"))};
    return Command{m};
  }

  // {"op":"batch"}: commands applied all or nothing (none of them a batch).
  Command batch_of(object o, bool top) const {
    check_members(o, "batch", {"commands"});
    if (!top) throw Bad{"a batch cannot hold a batch"};
    const element cv = member(o, "commands");
    simdjson::dom::array list;
    if (cv.get(list) != simdjson::SUCCESS || list.size() == 0)
      throw Bad{"member \"commands\" must be a non-empty array of commands; found " + shown(cv)};
    if (list.size() > kMaxGroupCommands)
      throw Bad{"member \"commands\" has " + std::to_string(list.size()) +
                " commands; a batch has at most " + std::to_string(kMaxGroupCommands)};
    Group g;
    g.commands.reserve(list.size());
    std::size_t i = 0;
    for (const element e : list) {
      std::string sub;
      try {
        object co;
        if (e.get(co) != simdjson::SUCCESS) throw Bad{"must be a JSON object; found " + shown(e)};
        sub = std::string(text(co, "op"));
        g.commands.push_back(command_of(co, sub, false));
      } catch (const Bad& b) {
        throw Bad{"command " + std::to_string(i) + (sub.empty() ? "" : " (" + sub + ")") + ": " +
                  b.error};
      }
      ++i;
    }
    return Command{std::move(g)};
  }
};

}  // namespace

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
    return DecodedLine{CommandReader{rules_, specs_}.command_of(obj, op_name, true), id};
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

namespace {
// "status":..., "version":..., "count":... of one result (no braces).
void put_result(std::string& s, const CommandResult& r) {
  s += "\"status\":\"";
  s += to_string(r.status);
  s += '"';
  if (r.status == CommandStatus::rejected) {
    s += ",\"error\":";
    s += json(r.error).dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  if (r.version != 0) s += ",\"version\":" + std::to_string(r.version);
  if (r.count != 0 || r.version == 0) {
    if (r.status == CommandStatus::applied) s += ",\"count\":" + std::to_string(r.count);
  }
}
}  // namespace

std::string encode_reply(const CommandResult& r, std::string_view id) {
  if (r.status == CommandStatus::rejected) return encode_error(r.error, id);
  std::string s = with_id(id);
  put_result(s, r);
  if (!r.results.empty()) {  // a batch: one result per command, in order
    s += ",\"results\":[";
    for (std::size_t i = 0; i < r.results.size(); ++i) {
      s += i == 0 ? "{" : ",{";
      put_result(s, r.results[i]);
      s += '}';
    }
    s += ']';
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
