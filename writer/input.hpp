// The writer's input rules: one validator for every way a change reaches the table.
//
// The rules are written once, in InputRules::check: a namespace id the segment has, a key that
// is a key (poscache/schema.hpp: valid_account, valid_instrument), at least one field
// and none beyond the schema, a decimal mantissa of at most 38 digits, an int64 field within 64
// bits. The hot path (upsert, upsert_batch) asks check() for a yes or no: no allocation, no
// text. The slow paths (apply(), make_update) turn the same answer into a message with explain().
#pragma once

#include <climits>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "poscache/apply.hpp"
#include "poscache/decimal.hpp"
#include "poscache/position.hpp"

namespace poscache::detail {

enum class InputFault : std::uint8_t {
  none,
  namespace_id,       // beyond the segment's namespaces
  account_length,     // 0 or > kMaxAccountLen
  instrument_length,  // 0 or > kMaxInstrumentLen
  account_text,       // a character a key may not hold
  instrument_text,
  no_fields,       // fields_mask == 0
  unknown_fields,  // a bit beyond the namespace's fields
  decimal_digits,  // a decimal mantissa of more than 38 digits
  int64_range,     // an int64 field outside 64 bits
  text_value,      // a text field: too long, a NUL, not UTF-8, or its padding not zero
};

struct InputCheck {
  InputFault fault = InputFault::none;
  std::uint8_t field = 0;  // the field, for decimal_digits, int64_range and text_value
  [[nodiscard]] bool ok() const noexcept { return fault == InputFault::none; }
};

class InputRules {
 public:
  explicit InputRules(const std::vector<NamespaceSpec>& namespaces);

  // Hot path: yes or no, and which rule failed.
  [[nodiscard]] InputCheck check(const Update& u) const noexcept;
  // check() without the key's characters: for updates whose key the table proves instead
  // (Writer::upsert_batch with claimed hashes: a key found equal to a stored key, or checked in
  // full before it is inserted).
  [[nodiscard]] InputCheck check_shape(const Update& u) const noexcept;
  // Slow path: the message for a failed check, naming what was wrong.
  [[nodiscard]] std::string explain(const InputCheck& c, const Update& u) const;
  // check() then explain(): empty when the update is good.
  [[nodiscard]] std::string problem(const Update& u) const;

  [[nodiscard]] std::string problem(const KeyRef& k) const;
  [[nodiscard]] std::string problem(const Op& op) const;  // every kind of op apply() takes
  [[nodiscard]] std::string problem_of_glob(std::string_view glob) const;
  [[nodiscard]] std::string problem_of_namespace(NamespaceId ns) const;

  // make_update: an Update from parts, or the message of the first rule it breaks.
  [[nodiscard]] Expected<Update> build(NamespaceId ns, std::string_view account,
                                       std::string_view instrument, std::uint32_t mask,
                                       const int128* values, std::uint64_t source_seq,
                                       UpdateMode mode) const;
  // The same from names and decimal text.
  [[nodiscard]] Expected<Update> build(
      std::string_view ns, std::string_view account, std::string_view instrument,
      std::span<const std::pair<std::string_view, std::string_view>> fields,
      std::uint64_t source_seq, UpdateMode mode) const;

  [[nodiscard]] Expected<NamespaceId> namespace_id(std::string_view ns) const;

 private:
  struct Shape {
    std::uint32_t field_count = 0;
    std::uint32_t int_fields = 0;          // bit f: field f is an int64
    std::uint32_t text_fields = 0;         // bit f: field f is text (after every numeric field)
    std::uint8_t slot[kMaxFields] = {};    // the field's first value slot
    std::uint8_t length[kMaxFields] = {};  // a text field's length
  };
  // A text field's slots hold valid text (at most its length, no NUL, UTF-8) and zeros after.
  static bool text_ok(const Update& u, std::size_t slot, std::size_t length) noexcept;
  const std::vector<NamespaceSpec>* specs_;
  std::vector<Shape> shapes_;
};

// Inline: the apply paths call it once per update.
inline InputCheck InputRules::check(const Update& u) const noexcept {
  const InputCheck c = check_shape(u);
  if (!c.ok()) return c;
  if (!valid_account(u.account_view())) return {InputFault::account_text};
  if (!valid_instrument(u.instrument_view())) return {InputFault::instrument_text};
  return {};
}

inline InputCheck InputRules::check_shape(const Update& u) const noexcept {
  if (u.ns >= shapes_.size()) return {InputFault::namespace_id};
  if (u.account_len == 0 || u.account_len > kMaxAccountLen) return {InputFault::account_length};
  if (u.instrument_len == 0 || u.instrument_len > kMaxInstrumentLen)
    return {InputFault::instrument_length};
  const Shape& s = shapes_[u.ns];
  if (u.fields_mask == 0) return {InputFault::no_fields};
  if (s.field_count < 32 && (u.fields_mask >> s.field_count) != 0)
    return {InputFault::unknown_fields};
  for (std::uint32_t f = 0; f < s.field_count; ++f) {
    if (((u.fields_mask >> f) & 1u) == 0) continue;
    if (((s.text_fields >> f) & 1u) != 0) {
      if (!text_ok(u, s.slot[f], s.length[f]))
        return {InputFault::text_value, static_cast<std::uint8_t>(f)};
      continue;
    }
    const int128 v = u.values[f];
    if (((s.int_fields >> f) & 1u) != 0) {
      if (v > INT64_MAX || v < INT64_MIN)
        return {InputFault::int64_range, static_cast<std::uint8_t>(f)};
    } else if (v >= kDecimalLimit || v <= -kDecimalLimit) {
      return {InputFault::decimal_digits, static_cast<std::uint8_t>(f)};
    }
  }
  return {};
}

inline bool InputRules::text_ok(const Update& u, std::size_t slot, std::size_t length) noexcept {
  const std::string_view t = text_in(u.values, slot, length);
  if (!valid_text(t, length)) return false;
  const auto* b = reinterpret_cast<const char*>(u.values + slot);
  const std::size_t end = (length + kValueSlotBytes - 1) / kValueSlotBytes * kValueSlotBytes;
  for (std::size_t i = t.size(); i < end; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

}  // namespace poscache::detail
