#include "poscache/format.hpp"

namespace poscache {

std::string format_field(const NamespaceInfo& ns, const Position& p, std::size_t field) {
  if (field >= ns.fields.size() || !p.has(field)) return {};
  const FieldSpec& f = ns.fields[field];
  return format_decimal(p.values[field], f.type == FieldType::decimal ? f.scale : 0);
}

std::string key_string(const NamespaceInfo& ns, const Position& p) {
  std::string k = ns.name;
  k += ':';
  k.append(p.account_view());
  k += ':';
  k.append(p.instrument_view());
  return k;
}

}  // namespace poscache
