// Namespace descriptors in the header (shm/layout.hpp NamespaceDesc) and the NamespaceSpec each
// describes: written once by the creator, read back by readers, re-attaching writers and tools.
#include <algorithm>
#include <cstring>

#include "shm/segment.hpp"

namespace poscache::shm {

namespace {
void copy_name(char (&dst)[32], std::string_view src) noexcept {
  std::memset(dst, 0, sizeof dst);
  std::memcpy(dst, src.data(), std::min(src.size(), sizeof dst - 1));
}
}  // namespace

void write_namespace(NamespaceDesc& d, const NamespaceSpec& n) noexcept {
  copy_name(d.name, n.name);
  d.field_count = static_cast<std::uint32_t>(n.fields.size());
  d.stale_after_ns = n.stale_after.count();
  d.expire_after_ns = n.expire_after.count();
  for (std::size_t f = 0; f < n.fields.size() && f < kMaxFields; ++f) {
    copy_name(d.fields[f].name, n.fields[f].name);
    d.fields[f].type = static_cast<std::uint8_t>(n.fields[f].type);
    d.fields[f].scale = n.fields[f].scale;
    d.fields[f].length = n.fields[f].length;
  }
}

NamespaceSpec spec_of(const NamespaceDesc& d) {
  NamespaceSpec n;
  n.name = std::string(fixed_name(d.name));
  for (std::uint32_t i = 0; i < std::min<std::uint32_t>(d.field_count, kMaxFields); ++i) {
    n.fields.push_back(FieldSpec{std::string(fixed_name(d.fields[i].name)),
                                 static_cast<FieldType>(d.fields[i].type), d.fields[i].scale,
                                 d.fields[i].length});
  }
  n.stale_after = std::chrono::nanoseconds(d.stale_after_ns);
  n.expire_after = std::chrono::nanoseconds(d.expire_after_ns);
  return n;
}

bool same_schema(const NamespaceDesc& d, const NamespaceSpec& n) {
  if (fixed_name(d.name) != n.name) return false;
  if (d.field_count != n.fields.size() || d.stale_after_ns != n.stale_after.count() ||
      d.expire_after_ns != n.expire_after.count()) {
    return false;
  }
  for (std::size_t i = 0; i < n.fields.size(); ++i) {
    const FieldDesc& f = d.fields[i];
    if (fixed_name(f.name) != n.fields[i].name ||
        f.type != static_cast<std::uint8_t>(n.fields[i].type) || f.scale != n.fields[i].scale ||
        f.length != n.fields[i].length) {
      return false;
    }
  }
  return true;
}

std::string schema_text(const NamespaceSpec& n) {
  // Appends only (no "literal" + std::string): GCC 12's -Wrestrict misfires on those at -O3.
  std::string s = n.name;
  s += '{';
  for (std::size_t i = 0; i < n.fields.size(); ++i) {
    const auto& f = n.fields[i];
    if (i != 0) s += ',';
    s.append(f.name).append(":").append(to_string(f.type));
    if (f.type == FieldType::decimal) s.append("(").append(std::to_string(f.scale)).append(")");
    if (f.type == FieldType::text) s.append("(").append(std::to_string(f.length)).append(")");
  }
  s.append(",stale_after=").append(std::to_string(n.stale_after.count()));
  s.append("ns,expire_after=").append(std::to_string(n.expire_after.count())).append("ns}");
  return s;
}

std::string namespace_names(const std::vector<NamespaceSpec>& specs) {
  std::string s;
  for (const auto& n : specs) {
    if (!s.empty()) s += ", ";
    s += n.name;
  }
  return s.empty() ? "(none)" : s;
}

}  // namespace poscache::shm
