#include "poscache/format.hpp"

#include "shm/values/key_text.hpp"

namespace poscache {

std::string format_field(const NamespaceInfo& ns, const Position& p, std::size_t field) {
  if (field >= ns.fields.size() || !p.has(field)) return {};
  const FieldSpec& f = ns.fields[field];
  if (f.type == FieldType::text) return std::string(p.text(field_slot(ns.fields, field), f.length));
  return format_decimal(p.values[field], f.type == FieldType::decimal ? f.scale : 0);
}

std::string key_string(const NamespaceInfo& ns, const Position& p) {
  std::string k;
  detail::key_text(k, ns.name, p.account_view(), p.instrument_view());
  return k;
}

}  // namespace poscache
