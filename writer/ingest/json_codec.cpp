#include "writer/ingest/json_codec.hpp"

#include <nlohmann/json.hpp>

namespace poscache::ingest {
namespace {

using json = nlohmann::json;

// A short, printable rendering of a JSON value for error messages.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', true, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

struct Bad {
  std::string error;
};

const json& member(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end()) throw Bad{std::string("missing member \"") + name + "\""};
  return *it;
}

std::string_view text(const json& obj, const char* name) {
  const json& v = member(obj, name);
  if (!v.is_string())
    throw Bad{std::string("member \"") + name + "\" must be a string; found " + shown(v)};
  return v.get_ref<const std::string&>();
}

// A decimal or integer given as a string or a JSON integer: its text.
std::string number_text(const json& v, const std::string& what) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  if (v.is_number_float()) {
    throw Bad{what + ": " + shown(v) +
              " is a floating-point JSON number; give decimals as strings (\"12.5\") so they stay "
              "exact"};
  }
  throw Bad{what + " must be a decimal string or an integer; found " + shown(v)};
}

std::uint64_t seq_of(const json& obj) {
  auto it = obj.find("seq");
  if (it == obj.end()) return 0;
  if (!it->is_number_unsigned())
    throw Bad{"member \"seq\" must be a non-negative integer; found " + shown(*it)};
  return it->get<std::uint64_t>();
}

}  // namespace

JsonDecoder::JsonDecoder(const std::vector<NamespaceSpec>& namespaces)
    : specs_(&namespaces), rules_(namespaces) {}

std::variant<DecodedLine, JsonDecoder::Failure> JsonDecoder::decode(std::string_view line) const {
  if (line.size() > kMaxJsonLine) {
    return Failure{"line of " + std::to_string(line.size()) + " bytes; the limit is " +
                       std::to_string(kMaxJsonLine),
                   {}};
  }
  json obj = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) return Failure{"not valid JSON: " + std::string(line.substr(0, 80)), {}};
  if (!obj.is_object()) return Failure{"a command must be a JSON object; found " + shown(obj), {}};
  std::string id;
  if (auto it = obj.find("id"); it != obj.end()) {
    if (!it->is_string() && !it->is_number_integer())
      return Failure{"member \"id\" must be a string or an integer; found " + shown(*it), {}};
    id = it->dump();
  }
  std::string op_name;
  try {
    op_name = std::string(text(obj, "op"));
    auto ns_id = [&](const json& o) -> NamespaceId {
      const std::string_view ns = text(o, "ns");
      auto id_ = rules_.namespace_id(ns);
      if (!id_) throw Bad{id_.error()};
      return *id_;
    };
    auto key = [&](const json& o, NamespaceId ns) {
      const std::string_view acc = text(o, "account");
      const std::string_view ins = text(o, "instrument");
      if (auto ok = validate_account(acc); !ok) throw Bad{ok.error()};
      if (auto ok = validate_instrument(ins); !ok) throw Bad{ok.error()};
      PositionKey k;
      k.set(ns, acc, ins);
      return k;
    };
    auto decimal_at = [&](const json& o, const char* name, NamespaceId ns, std::uint8_t field) {
      const FieldSpec& fs = (*specs_)[ns].fields[field];
      const std::string t = number_text(member(o, name), std::string("member \"") + name + "\"");
      auto v = parse_decimal(t, fs.scale);
      if (!v) throw Bad{std::string("member \"") + name + "\": " + v.error()};
      return *v;
    };

    if (op_name == "upsert") {
      const NamespaceId ns = ns_id(obj);
      const json& fields = member(obj, "fields");
      if (!fields.is_object() || fields.empty())
        throw Bad{"member \"fields\" must be a non-empty object; found " + shown(fields)};
      if (fields.size() > kMaxFields)
        throw Bad{"member \"fields\" has " + std::to_string(fields.size()) +
                  " fields; a namespace has at most " + std::to_string(kMaxFields)};
      std::vector<std::string> texts;
      texts.reserve(fields.size());
      std::vector<std::pair<std::string_view, std::string_view>> pairs;
      for (auto it = fields.begin(); it != fields.end(); ++it)
        texts.push_back(number_text(it.value(), "field '" + it.key() + "'"));
      std::size_t i = 0;
      for (auto it = fields.begin(); it != fields.end(); ++it, ++i)
        pairs.emplace_back(it.key(), texts[i]);
      UpdateMode mode = UpdateMode::merge;
      if (auto it = obj.find("mode"); it != obj.end()) {
        if (*it == "replace")
          mode = UpdateMode::replace;
        else if (*it != "merge")
          throw Bad{"member \"mode\" must be \"merge\" or \"replace\"; found " + shown(*it)};
      }
      auto u = rules_.build((*specs_)[ns].name, text(obj, "account"), text(obj, "instrument"),
                            pairs, seq_of(obj), mode);
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
      const bool has_account = obj.contains("account"), has_ns = obj.contains("ns"),
                 has_glob = obj.contains("glob"), has_all = obj.contains("all");
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
        if (obj["all"] != true)
          throw Bad{"member \"all\" must be true; found " + shown(obj["all"])};
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
      const bool has_by = obj.contains("by"), has_reset = obj.contains("reset");
      if (has_by == has_reset)
        throw Bad{"add takes exactly one of \"by\" (an integer) or \"reset\""};
      if (has_reset) {
        if (obj["reset"] != true)
          throw Bad{"member \"reset\" must be true; found " + shown(obj["reset"])};
        a.reset = true;
      } else {
        auto v = parse_int64(number_text(obj["by"], "member \"by\""));
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
        throw Bad{"member \"qty\" must be greater than 0; found " + shown(obj["qty"])};
      fl.fill.price = decimal_at(obj, "price", fl.key.ns, tf->avg_price);
      if (fl.fill.price < 0)
        throw Bad{"member \"price\" must not be negative; found " + shown(obj["price"])};
      if (obj.contains("fee")) fl.fill.fee = decimal_at(obj, "fee", fl.key.ns, tf->fees);
      if (auto it = obj.find("trade_id"); it != obj.end()) {
        if (!it->is_string() && !it->is_number_integer())
          throw Bad{"member \"trade_id\" must be a string or an integer; found " + shown(*it)};
        const std::string t = it->is_string() ? it->get<std::string>() : it->dump();
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
      if (obj.contains("account")) {
        acc = text(obj, "account");
        if (auto ok = validate_account(acc); !ok) throw Bad{ok.error()};
      }
      m.key.set(ns, acc, ins);
      m.price = decimal_at(obj, "price", ns, *tf->mark_price);
      if (m.price < 0)
        throw Bad{"member \"price\" must not be negative; found " + shown(obj["price"])};
      return DecodedLine{m, id};
    }
    throw Bad{"unknown op \"" + op_name +
              "\": expected upsert, erase, invalidate, add, fill or mark"};
  } catch (const Bad& b) {
    return Failure{op_name.empty() ? b.error : op_name + ": " + b.error, id};
  } catch (const json::exception& e) {  // a type mismatch nlohmann caught first
    return Failure{(op_name.empty() ? "" : op_name + ": ") + e.what(), id};
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
