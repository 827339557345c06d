#include "poscache/schema.hpp"

#include <algorithm>
#include <set>

#include "poscache/decimal.hpp"
#include "poscache/status.hpp"
#include "shm/values/quote.hpp"

namespace poscache {

using namespace std::chrono_literals;

std::string_view to_string(FieldType type) noexcept {
  switch (type) {
    case FieldType::decimal:
      return "decimal";
    case FieldType::int64:
      return "int64";
    case FieldType::timestamp:
      return "timestamp";
    case FieldType::text:
      return "text";
  }
  return "unknown";
}

std::string_view to_string(ReadStatus s) noexcept {
  switch (s) {
    case ReadStatus::ok:
      return "ok";
    case ReadStatus::stale:
      return "stale";
    case ReadStatus::not_found:
      return "not_found";
    case ReadStatus::writer_busy:
      return "writer_busy";
    case ReadStatus::writer_dead:
      return "writer_dead";
    case ReadStatus::bad_key:
      return "bad_key";
    case ReadStatus::retired:
      return "retired";
  }
  return "unknown";
}

namespace {

FieldSpec dec(std::string name, std::uint8_t scale) {
  return FieldSpec{std::move(name), FieldType::decimal, scale};
}
FieldSpec i64(std::string name) {
  return FieldSpec{std::move(name), FieldType::int64, 0};
}
FieldSpec txt(std::string name, std::uint8_t length) {
  return FieldSpec{std::move(name), FieldType::text, 0, length};
}

std::string show(std::string_view v) {
  return detail::quoted(v, 80);
}

// Checks length and alphabet; `what` names the key part in the message.
Expected<bool> check_part(std::string_view what, std::string_view value, std::size_t limit,
                          bool (*allowed)(char), std::string_view alphabet) {
  if (!value.empty() && value.size() <= limit && std::all_of(value.begin(), value.end(), allowed)) {
    return true;  // the common case, without building any message
  }
  if (value.empty())
    return fail(std::string(what) + " is empty: expected 1 to " + std::to_string(limit) +
                " characters");
  if (value.size() > limit) {
    return fail(std::string(what) + " " + show(value) + " is " + std::to_string(value.size()) +
                " characters: the limit is " + std::to_string(limit));
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (!allowed(value[i])) {
      const std::string shown = detail::escape_byte(static_cast<unsigned char>(value[i]));
      return fail(std::string(what) + " " + show(value) + " has '" + shown + "' at position " +
                  std::to_string(i) + ": allowed are " + std::string(alphabet));
    }
  }
  return true;
}

// The alphabets as 256-entry tables: a key check is on the writer's apply path, so one load per
// character instead of a chain of comparisons.
struct Alphabet {
  bool allowed[256] = {};
  constexpr explicit Alphabet(const char* extra, bool upper) {
    for (int c = 'a'; c <= 'z'; ++c) allowed[c] = true;
    for (int c = '0'; c <= '9'; ++c) allowed[c] = true;
    if (upper) {
      for (int c = 'A'; c <= 'Z'; ++c) allowed[c] = true;
    }
    for (const char* e = extra; *e != 0; ++e) allowed[static_cast<unsigned char>(*e)] = true;
  }
};
constexpr Alphabet kNsAlphabet("_", false);
constexpr Alphabet kAccountAlphabet("._-", true);
constexpr Alphabet kInstrumentAlphabet("._-/", true);

bool ns_char(char c) {
  return kNsAlphabet.allowed[static_cast<unsigned char>(c)];
}
bool account_char(char c) {
  return kAccountAlphabet.allowed[static_cast<unsigned char>(c)];
}
bool instrument_char(char c) {
  return kInstrumentAlphabet.allowed[static_cast<unsigned char>(c)];
}

}  // namespace

NamespaceSpec preset_trading(std::string name) {
  return NamespaceSpec{
      std::move(name),
      {dec("qty", 18), dec("avg_price", 18), dec("cost_basis", 18), dec("realized_pnl", 18),
       dec("unrealized_pnl", 18), dec("mark_price", 18), dec("fees", 18)},
      0ns,
      0ns};
}

NamespaceSpec preset_lending(std::string name) {
  return NamespaceSpec{
      std::move(name),
      {dec("collateral_amount", 0), dec("debt_amount", 0), dec("liquidation_threshold", 18),
       dec("health_factor", 18), i64("last_update_block"), i64("blocks_unhealthy"),
       txt("collateral_asset", 48), txt("debt_asset", 48)},
      0ns,
      0ns};
}

NamespaceSpec preset_quote(std::string name) {
  return NamespaceSpec{std::move(name), {dec("bid", 18), dec("ask", 18), dec("last", 18)}, 1s, 60s};
}

Expected<NamespaceSpec> preset(std::string_view preset_name, std::string name) {
  if (preset_name == "trading") return preset_trading(std::move(name));
  if (preset_name == "lending") return preset_lending(std::move(name));
  if (preset_name == "quote") return preset_quote(std::move(name));
  return fail("unknown preset " + show(preset_name) + ": expected trading, lending or quote");
}

Expected<bool> validate_namespace_name(std::string_view ns) {
  auto r = check_part("namespace", ns, kMaxNameLen, ns_char, "[a-z0-9_]");
  if (!r) return r;
  if (!(ns[0] >= 'a' && ns[0] <= 'z'))
    return fail("namespace " + show(ns) + " must start with a letter [a-z]");
  return true;
}

Expected<bool> validate_account(std::string_view account) {
  return check_part("account", account, kMaxAccountLen, account_char, "[A-Za-z0-9._-]");
}

Expected<bool> validate_instrument(std::string_view instrument) {
  return check_part("instrument", instrument, kMaxInstrumentLen, instrument_char,
                    "[A-Za-z0-9._/-]");
}

namespace {
bool all_in(std::string_view v, std::size_t limit, const Alphabet& a) noexcept {
  if (v.empty() || v.size() > limit) return false;
  bool ok = true;
  for (const char c : v) ok &= a.allowed[static_cast<unsigned char>(c)];  // no branch per character
  return ok;
}
}  // namespace

bool valid_account(std::string_view account) noexcept {
  return all_in(account, kMaxAccountLen, kAccountAlphabet);
}
bool valid_instrument(std::string_view instrument) noexcept {
  return all_in(instrument, kMaxInstrumentLen, kInstrumentAlphabet);
}

Expected<bool> validate(const NamespaceSpec& spec) {
  if (auto r = validate_namespace_name(spec.name); !r) return r;
  const std::string where = "namespace '" + spec.name + "': ";
  if (spec.fields.empty())
    return fail(where + "has no fields: expected 1 to " + std::to_string(kMaxFields));
  if (spec.fields.size() > kMaxFields) {
    return fail(where + "has " + std::to_string(spec.fields.size()) + " fields: the limit is " +
                std::to_string(kMaxFields));
  }
  std::set<std::string> seen;
  for (const auto& f : spec.fields) {
    if (auto r = check_part("field name", f.name, kMaxNameLen, ns_char, "[a-z0-9_]"); !r) {
      return fail(where + r.error());
    }
    if (!seen.insert(f.name).second)
      return fail(where + "field '" + f.name + "' is declared twice");
    if (f.name == "version" || f.name == "source_seq" || f.name == "created_at" ||
        f.name == "updated_at") {
      return fail(where + "field name '" + f.name +
                  "' is reserved (every position carries version, "
                  "source_seq, created_at and updated_at)");
    }
    if (f.type != FieldType::decimal && f.type != FieldType::int64 &&
        f.type != FieldType::timestamp && f.type != FieldType::text) {
      return fail(where + "field '" + f.name + "' has an unknown type");
    }
    if (f.type == FieldType::text && (f.length < 1 || f.length > kMaxTextLen)) {
      return fail(where + "text field '" + f.name + "' has length " + std::to_string(f.length) +
                  ": it must be 1 to " + std::to_string(kMaxTextLen) + " bytes");
    }
    if (f.type != FieldType::text && f.length != 0) {
      return fail(where + "field '" + f.name + "' is " + std::string(to_string(f.type)) +
                  ": only text fields have a length");
    }
    if (f.type != FieldType::text && &f != &spec.fields.front() &&
        (&f)[-1].type == FieldType::text) {
      return fail(where + "field '" + f.name + "' (" + std::string(to_string(f.type)) +
                  ") follows text field '" + (&f)[-1].name +
                  "': text fields come after every numeric field");
    }
    if (f.type == FieldType::decimal && f.scale > kMaxScale) {
      return fail(where + "field '" + f.name + "' has scale " + std::to_string(f.scale) +
                  ": the limit is " + std::to_string(kMaxScale));
    }
    if (f.type != FieldType::decimal && f.scale != 0) {
      return fail(where + "field '" + f.name + "' is " + std::string(to_string(f.type)) +
                  ": only decimals have a scale");
    }
  }
  if (value_slots(spec.fields) > kMaxFields) {
    return fail(where + "the fields take " + std::to_string(value_slots(spec.fields)) +
                " value slots: the limit is " + std::to_string(kMaxFields) +
                " (a number takes one, a text field one per 16 bytes of its length)");
  }
  if (spec.stale_after.count() < 0) return fail(where + "stale_after is negative");
  if (spec.expire_after.count() < 0) return fail(where + "expire_after is negative");
  if (spec.expire_after.count() > 0 && spec.stale_after.count() > spec.expire_after.count()) {
    return fail(where + "stale_after (" + std::to_string(spec.stale_after.count()) +
                " ns) is longer than expire_after (" + std::to_string(spec.expire_after.count()) +
                " ns): a position would expire before it could be stale");
  }
  return true;
}

namespace {
// The offset of the first byte that is NUL or not UTF-8, or v.size() if there is none.
std::size_t first_bad_byte(std::string_view v) noexcept {
  for (std::size_t i = 0; i < v.size();) {
    const auto c = static_cast<unsigned char>(v[i]);
    if (c == 0) return i;
    std::size_t n = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xE  ? 3
                    : (c >> 3) == 0x1E ? 4
                                       : 0;
    if (n == 0 || i + n > v.size()) return i;
    std::uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (std::size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(v[i + k]);
      if ((d & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return i;
    i += n;
  }
  return v.size();
}
}  // namespace

bool valid_text(std::string_view v, std::size_t length) noexcept {
  return v.size() <= length && first_bad_byte(v) == v.size();
}

Expected<bool> validate_text(const FieldSpec& field, std::string_view v) {
  if (v.size() > field.length) {
    return fail("text field '" + field.name + "' holds at most " + std::to_string(field.length) +
                " bytes, got " + std::to_string(v.size()));
  }
  const std::size_t bad = first_bad_byte(v);
  if (bad == v.size()) return true;
  if (v[bad] == '\0')
    return fail("text field '" + field.name + "' may not contain NUL (byte " + std::to_string(bad) +
                ")");
  return fail("text field '" + field.name + "' is not valid UTF-8 (byte " + std::to_string(bad) +
              ")");
}

}  // namespace poscache
