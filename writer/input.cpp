#include "writer/input.hpp"

#include <climits>
#include <cstring>

#include "shm/layout.hpp"
#include "shm/segment.hpp"
#include "shm/values/quote.hpp"

namespace poscache::detail {

InputRules::InputRules(const std::vector<NamespaceSpec>& namespaces) : specs_(&namespaces) {
  for (const NamespaceSpec& n : namespaces) {
    Shape s;
    s.field_count = static_cast<std::uint32_t>(n.fields.size());
    for (std::size_t f = 0; f < n.fields.size() && f < kMaxFields; ++f) {
      if (n.fields[f].type == FieldType::int64) s.int_fields |= 1u << f;
      if (n.fields[f].type == FieldType::text) s.text_fields |= 1u << f;
      s.slot[f] = static_cast<std::uint8_t>(field_slot(n.fields, f));
      s.length[f] = n.fields[f].length;
    }
    shapes_.push_back(s);
  }
}

std::string InputRules::explain(const InputCheck& c, const Update& u) const {
  const auto& specs = *specs_;
  auto field = [&] { return "field '" + specs[u.ns].fields[c.field].name + "': "; };
  switch (c.fault) {
    case InputFault::none:
      return {};
    case InputFault::namespace_id:
      return problem_of_namespace(u.ns);
    case InputFault::account_length:
      return "account length " + std::to_string(u.account_len) + " is out of range 1..64";
    case InputFault::instrument_length:
      return "instrument length " + std::to_string(u.instrument_len) + " is out of range 1..64";
    case InputFault::account_text:
      return validate_account(u.account_view()).error();
    case InputFault::instrument_text:
      return validate_instrument(u.instrument_view()).error();
    case InputFault::no_fields:
      return "update of " + specs[u.ns].name + ":" + std::string(u.account_view()) + ":" +
             std::string(u.instrument_view()) + " sets no fields";
    case InputFault::unknown_fields:
      return "update of namespace '" + specs[u.ns].name + "' sets field bit(s) beyond its " +
             std::to_string(shapes_[u.ns].field_count) + " fields";
    case InputFault::decimal_digits:
      return field() + "mantissa " + format_decimal(u.values[c.field], 0) + " has more than " +
             std::to_string(kMaxDecimalDigits) + " digits";
    case InputFault::int64_range:
      return field() + format_decimal(u.values[c.field], 0) + " is out of the 64-bit range";
    case InputFault::text_value: {
      const Shape& sh = shapes_[u.ns];
      const FieldSpec& fs = specs[u.ns].fields[c.field];
      const std::string_view t = text_in(u.values, sh.slot[c.field], fs.length);
      if (auto r = validate_text(fs, t); !r) return r.error();
      return field() + "the bytes after its " + std::to_string(t.size()) +
             "-byte text are not zero (a text is NUL-padded)";
    }
  }
  return "unknown input fault";
}

std::string InputRules::problem(const Update& u) const {
  const InputCheck c = check(u);
  return c.ok() ? std::string() : explain(c, u);
}

std::string InputRules::problem(const KeyRef& k) const {
  if (std::string why = problem_of_namespace(k.ns); !why.empty()) return why;
  if (auto r = validate_account(k.account); !r) return r.error();
  if (auto r = validate_instrument(k.instrument); !r) return r.error();
  return {};
}

std::string InputRules::problem_of_glob(std::string_view glob) const {
  if (glob.empty() || glob.size() > shm::kJournalTextMax) {
    return "glob pattern must be 1 to " + std::to_string(shm::kJournalTextMax) +
           " characters, got " + std::to_string(glob.size());
  }
  return {};
}

std::string InputRules::problem_of_namespace(NamespaceId ns) const {
  if (ns < shapes_.size()) return {};
  return "namespace id " + std::to_string(ns) + " is out of range: this segment has " +
         std::to_string(shapes_.size()) + " namespaces";
}

std::string InputRules::problem(const Op& op) const {
  return std::visit(
      [&](const auto& o) -> std::string {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, Update>) {
          return problem(o);
        } else if constexpr (std::is_same_v<T, Erase>) {
          return problem(o.key);
        } else if constexpr (std::is_same_v<T, InvalidateAccount>) {
          if (auto r = validate_account(o.account); !r) return r.error();
          return o.ns ? problem_of_namespace(*o.ns) : std::string();
        } else if constexpr (std::is_same_v<T, InvalidateNamespace>) {
          return problem_of_namespace(o.ns);
        } else if constexpr (std::is_same_v<T, InvalidateMatching>) {
          return problem_of_glob(o.glob);
        } else {
          return {};
        }
      },
      op);
}

Expected<NamespaceId> InputRules::namespace_id(std::string_view ns) const {
  const auto& specs = *specs_;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].name == ns) return static_cast<NamespaceId>(i);
  }
  return fail("unknown namespace " + detail::quoted(ns) + ": this segment has " +
              shm::namespace_names(*specs_));
}

Expected<Update> InputRules::build(NamespaceId ns, std::string_view account,
                                   std::string_view instrument, std::uint32_t mask,
                                   const int128* values, std::uint64_t source_seq,
                                   UpdateMode mode) const {
  if (std::string why = problem_of_namespace(ns); !why.empty()) return fail(why);
  // The key's own messages (they name the part and escape what they show) before the lengths
  // are cut to fit an Update.
  if (auto r = validate_account(account); !r) return fail(r.error());
  if (auto r = validate_instrument(instrument); !r) return fail(r.error());
  Update u;
  u.ns = ns;
  u.mode = mode;
  u.fields_mask = mask;
  u.source_seq = source_seq;
  u.account_len = static_cast<std::uint8_t>(account.size());
  u.instrument_len = static_cast<std::uint8_t>(instrument.size());
  std::memcpy(u.account, account.data(), account.size());
  std::memcpy(u.instrument, instrument.data(), instrument.size());
  const Shape& sh = shapes_[ns];
  for (std::uint32_t f = 0; f < sh.field_count; ++f) {
    if (((mask >> f) & 1u) == 0) continue;
    const std::size_t slots = ((sh.text_fields >> f) & 1u) ? (sh.length[f] + 15) / 16 : 1;
    for (std::size_t k = 0; k < slots; ++k) u.values[sh.slot[f] + k] = values[sh.slot[f] + k];
  }
  if (const InputCheck c = check(u); !c.ok()) return fail(explain(c, u));
  return u;
}

Expected<Update> InputRules::build(
    std::string_view ns, std::string_view account, std::string_view instrument,
    std::span<const std::pair<std::string_view, std::string_view>> fields, std::uint64_t source_seq,
    UpdateMode mode) const {
  auto id = namespace_id(ns);
  if (!id) return fail(id.error());
  const NamespaceSpec& spec = (*specs_)[*id];
  if (fields.empty()) {
    return fail("update of " + spec.name + ":" + std::string(account.substr(0, 64)) + ":" +
                std::string(instrument.substr(0, 64)) + " sets no fields");
  }
  std::uint32_t mask = 0;
  int128 values[kMaxFields] = {};
  for (const auto& [name, text] : fields) {
    std::size_t f = 0;
    while (f < spec.fields.size() && spec.fields[f].name != name) ++f;
    if (f == spec.fields.size()) {
      std::string known;
      for (const auto& fs : spec.fields) known += (known.empty() ? "" : ", ") + fs.name;
      return fail("namespace '" + spec.name + "' has no field " + detail::quoted(name) +
                  ": its fields are " + known);
    }
    if ((mask >> f) & 1u) return fail("field '" + spec.fields[f].name + "' is given twice");
    mask |= 1u << f;
    const FieldSpec& fs = spec.fields[f];
    if (fs.type == FieldType::text) {
      if (auto r = validate_text(fs, text); !r) return fail(r.error());
      put_text(values, field_slot(spec.fields, f), fs.length, text);
    } else if (fs.type == FieldType::decimal) {
      auto v = parse_decimal(text, fs.scale);
      if (!v) return fail("field '" + fs.name + "': " + v.error());
      values[f] = *v;
    } else {
      auto v = parse_int64(text);
      if (!v) return fail("field '" + fs.name + "': " + v.error());
      values[f] = *v;
    }
  }
  return build(*id, account, instrument, mask, values, source_seq, mode);
}

}  // namespace poscache::detail
