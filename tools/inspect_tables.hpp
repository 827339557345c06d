// poscache-inspect's text for people (tools/inspect.cpp; --json is reader/views/): the
// segment's header and counters, positions and changes as aligned tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "poscache/mirror_status.hpp"
#include "poscache/reader.hpp"

namespace poscache::inspect {

// Nanoseconds as "1.234 ms".
std::string ms(std::int64_t ns);
// The segment, its writer, counters, index, Redis sync (or follower) and journal.
void print_stats(const SegmentStats& s, const MirrorStatus& m);
// Rows as aligned columns (the first row is the header).
void print_rows(const std::vector<std::vector<std::string>>& rows);
// A table of positions: key, then each field the namespace has, then version and age.
void print_table(const Reader& r, const std::vector<Position>& ps);
// Change ring records, most recent first: POSITION KIND WHAT VERSION AGE.
void print_changes(const Reader& r, const std::vector<Change>& cs);

}  // namespace poscache::inspect
