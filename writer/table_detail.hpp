// Small helpers the table's two files share (writer/table.cpp, writer/table_remove.cpp).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <string_view>

#include "shm/atomic.hpp"
#include "shm/hash.hpp"

namespace poscache::detail {

// A header counter (poscache/counters.hpp): one writer, relaxed.
inline void bump(std::uint64_t& c, std::uint64_t n = 1) noexcept {
  shm::add_relaxed(&c, n);
}

inline void futex_wake_all(std::uint32_t* word) noexcept {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace poscache::detail
