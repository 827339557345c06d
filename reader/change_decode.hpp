// Between the change ring's words (shm/change_ring.hpp) and the public Change: the reader's
// decoding of a record CR1-CR4 validated (reader/changes.cpp).
#pragma once

#include <cstdint>

#include "poscache/changes.hpp"
#include "shm/change_ring.hpp"

namespace poscache::detail {

// A validated record as a Change; false if it cannot be one (a corrupt segment).
bool decode_change(const shm::RecordWords& r, std::uint32_t ns_count, Change& c) noexcept;

}  // namespace poscache::detail
