// poscache — text for a position's fields, exactly as stored (decimals never pass through float).
#pragma once

#include <string>

#include "poscache/position.hpp"
#include "poscache/reader.hpp"

namespace poscache {

// The field's value as text: "12.500000000000000000" at scale 18, "21000123" for int64 fields.
// Empty if the position does not carry the field.
std::string format_field(const NamespaceInfo& ns, const Position& p, std::size_t field);

// "ns:account:instrument", the key as globs and the inspector show it.
std::string key_string(const NamespaceInfo& ns, const Position& p);

}  // namespace poscache
