// The change ring's records as the public API names them (poscache/changes.hpp).
#include "poscache/changes.hpp"

#include <string>

#include "values/key_text.hpp"

namespace poscache {

std::string_view to_string(ChangeKind k) noexcept {
  switch (k) {
    case ChangeKind::inserted:
      return "inserted";
    case ChangeKind::updated:
      return "updated";
    case ChangeKind::erased:
      return "erased";
    case ChangeKind::evicted:
      return "evicted";
    case ChangeKind::expired:
      return "expired";
    case ChangeKind::invalidated_account:
      return "invalidated_account";
    case ChangeKind::invalidated_namespace:
      return "invalidated_namespace";
    case ChangeKind::invalidated_glob:
      return "invalidated_glob";
    case ChangeKind::invalidated_all:
      return "invalidated_all";
  }
  return "unknown";
}

std::string_view to_string(ChangeStatus s) noexcept {
  switch (s) {
    case ChangeStatus::ok:
      return "ok";
    case ChangeStatus::lapped:
      return "lapped";
    case ChangeStatus::writer_restarted:
      return "writer_restarted";
    case ChangeStatus::invalid_position:
      return "invalid_position";
    case ChangeStatus::unavailable:
      return "unavailable";
    case ChangeStatus::retired:
      return "retired";
  }
  return "unknown";
}

bool Change::covers(NamespaceId key_ns, std::string_view ns_name, std::string_view acct,
                    std::string_view instr) const {
  switch (kind) {
    case ChangeKind::inserted:
    case ChangeKind::updated:
    case ChangeKind::erased:
    case ChangeKind::evicted:
    case ChangeKind::expired:
      return ns == key_ns && account_view() == acct && instrument_view() == instr;
    case ChangeKind::invalidated_account:
      return account_view() == acct && (ns == kAnyNamespace || ns == key_ns);
    case ChangeKind::invalidated_namespace:
      return ns == key_ns;
    case ChangeKind::invalidated_glob: {
      const std::string glob(pattern_view());
      std::string scratch;
      return detail::key_matches(glob.c_str(), scratch, ns_name, acct, instr);
    }
    case ChangeKind::invalidated_all:
      return true;
  }
  return false;
}

}  // namespace poscache
