#include "poscache/refresh.hpp"

namespace poscache {

std::string_view to_string(RefreshReason r) noexcept {
  switch (r) {
    case RefreshReason::stale:
      return "stale";
    case RefreshReason::miss:
      return "miss";
    case RefreshReason::forced:
      return "forced";
    case RefreshReason::rebuild:
      return "rebuild";
    case RefreshReason::ahead:
      return "ahead";
  }
  return "unknown";
}

std::string_view to_string(PendingState s) noexcept {
  switch (s) {
    case PendingState::none:
      return "none";
    case PendingState::pending:
      return "pending";
    case PendingState::answered:
      return "answered";
    case PendingState::absent:
      return "absent";
    case PendingState::erased:
      return "erased";
    case PendingState::failed:
      return "failed";
    case PendingState::superseded:
      return "superseded";
    case PendingState::no_refresher:
      return "no_refresher";
  }
  return "unknown";
}

}  // namespace poscache
