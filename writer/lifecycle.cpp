#include "writer/lifecycle.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "shm/process.hpp"
#include "writer/table_detail.hpp"

namespace poscache::detail {

using namespace shm;

namespace {

// Why the existing segment `h` cannot serve `config` (empty: it can).
std::string mismatch(const SegmentHeader& h, const WriterConfig& config) {
  if (h.capacity != config.capacity || h.namespace_count != config.namespaces.size()) {
    return "expected capacity " + std::to_string(config.capacity) + " with namespaces " +
           namespace_names(config.namespaces) + ", found capacity " + std::to_string(h.capacity) +
           " with " + std::to_string(h.namespace_count) + " namespaces";
  }
  for (std::size_t i = 0; i < config.namespaces.size(); ++i) {
    if (!same_schema(h.namespaces[i], config.namespaces[i])) {
      return "namespace " + std::to_string(i) + ": expected " + schema_text(config.namespaces[i]) +
             ", found " + schema_text(spec_of(h.namespaces[i]));
    }
  }
  return {};
}

// The old generation's readers follow to the new one: they keep a valid mapping meanwhile.
void retire(SegmentHeader& h) noexcept {
  store_release(&h.state, static_cast<std::uint32_t>(SegmentState::retired));
  futex_wake_all(&h.change_futex);
}

void warn_dropped_journal(const SegmentHeader& h, const Mapping& m, const WriterConfig& config) {
  const auto& j = *reinterpret_cast<const JournalHeader*>(static_cast<const std::byte*>(m.base()) +
                                                          geometry_for(h.capacity).journal_offset);
  if (const std::uint64_t pending = journal_pending(j); pending > 0 && config.log) {
    config.log(LogLevel::warn,
               "replacing segment '" + config.segment + "' drops " + std::to_string(pending) +
                   " removals its journal had not written to Redis yet (a warm start may bring "
                   "those positions back)");
  }
}

}  // namespace

OpenedSegment open_segment(const WriterConfig& config, std::int64_t now_ns) {
  const std::string& name = config.segment;
  bool not_found = false;
  const int fd = open_segment_file(name, true, not_found);
  if (!not_found) {
    struct stat st {};
    ::fstat(fd, &st);
    const auto size = static_cast<std::size_t>(st.st_size);
    bool replace = config.fresh;
    if (size == 0) {
      ::close(fd);
      replace = true;  // a creation that died between shm_open and sizing it: nothing to keep
    } else if (size < sizeof(SegmentHeader)) {
      ::close(fd);
      if (!config.recreate_on_mismatch) {  // not ours: a creation sizes the file in one step
        throw Error("segment '" + name + "': " + shm_path(name) +
                    " exists and is not a poscache segment (" + std::to_string(size) +
                    " bytes; a creation cut short leaves 0 bytes or a whole segment). " +
                    "Remove it, choose another name, or start with --recreate to replace it");
      }
      replace = true;  // --recreate: asked for
    } else {
      Mapping m = Mapping::map(fd, size, true, name);
      auto& h = *static_cast<SegmentHeader*>(m.base());
      std::string why;
      const AttachStatus status = check_header(h, m.size(), why);
      if (status == AttachStatus::ok) why = mismatch(h, config);
      const bool compatible = status == AttachStatus::ok && why.empty();
      // A header never finished (magic not yet stored) is ours, cut short, only if the file has
      // exactly the size a creation gives a segment; otherwise it is someone else's file.
      const bool cut_creation = status == AttachStatus::initializing &&
                                (load_acquire(&h.magic) == kMagic || is_segment_size(size));
      if (status == AttachStatus::initializing && !cut_creation) {
        why = "found " + std::to_string(size) +
              " bytes that begin with an empty header, not a segment size";
      }
      if (cut_creation) {
        replace = true;  // its creator died before it was ready: nothing was ever served
      } else if (!compatible && !replace) {
        if (!config.recreate_on_mismatch) {
          throw Error("segment '" + name + "' exists but does not match this writer: " + why +
                      " (start with --recreate to replace it: readers follow the new generation)");
        }
        replace = true;
      }
      if (!replace) return OpenedSegment{std::move(m), false};
      if (status == AttachStatus::ok) warn_dropped_journal(h, m, config);
      if (status == AttachStatus::ok || status == AttachStatus::initializing) retire(h);
    }
    remove_segment_file(name);
  }
  CreateSpec spec;
  spec.name = name;
  spec.mode = config.mode;
  spec.capacity = config.capacity;
  spec.namespaces = config.namespaces;
  spec.huge_pages = config.huge_pages;
  spec.now_ns = now_ns;
  return OpenedSegment{create_segment(spec), true};
}

Journal::Scan reattach(Table& table, const Journal& journal, const LogSink& log) {
  SegmentHeader& h = table.header();
  const auto prev_state = static_cast<SegmentState>(load_relaxed(&h.state));
  if (prev_state == SegmentState::ready) bump(h.writer_restarts);  // it did not close cleanly
  // 0. Every account stripe and the account index's epoch odd until step 4 is done: snapshots
  //    that straddle the repairs and rebuilds retry (shm/accounts.hpp, "THE WRITER DIES").
  table.open_all_accounts();
  // 1. The slot caught mid-write, if any, restored from the undo record; 2. a namespace id
  //    beyond the table (only corruption makes one) dropped.
  bump(h.counters.repairs, table.repair_torn_slots() + table.drop_unknown_namespaces());
  // 3. The index: derived from the slots, rebuilt into the inactive copy and published.
  table.rebuild_index(true);
  // 4. Free list, recency order, account lists and index, live count, next version.
  table.rebuild_lists();
  table.close_all_accounts();
  // 5. The journal: corrupt entries are reported and skipped; a removal recorded there may have
  //    been cut short by the kill: finish it.
  Journal::Scan scan = journal.scan(table.next_version(), h.namespace_count);
  if (scan.header_corrupt) {
    bump(h.counters.repairs);
    if (log) {
      log(LogLevel::error, "re-attach: " + scan.problem +
                               ": its entries are dropped, Redis may keep removed positions");
    }
  } else if (!scan.invalid.empty()) {
    bump(h.counters.repairs, scan.invalid.size());
    if (log) {
      log(LogLevel::error, "re-attach: skipped " + std::to_string(scan.invalid.size()) +
                               " corrupt journal entries (" + scan.problem + ")");
    }
  }
  std::size_t finished = 0;
  for (const auto& [n, entry] : scan.valid) finished += table.finish_removal(from_entry(*entry, n));
  if (finished > 0) {
    bump(h.counters.repairs, finished);
    if (log) {
      log(LogLevel::warn,
          "re-attach: finished " + std::to_string(finished) +
              " removals of positions that a killed writer had recorded but not completed");
    }
  }
  return scan;
}

void stamp_writer(SegmentHeader& h, std::chrono::nanoseconds heartbeat_interval,
                  std::int64_t now_ns) {
  const pid_t pid = ::getpid();
  store_relaxed(&h.writer_pid, pid);
  store_relaxed(&h.writer_start_ticks, process_start_ticks(pid));
  store_relaxed(&h.writer_started_at_ns, now_ns);
  store_relaxed(&h.heartbeat_interval_ns, heartbeat_interval.count());
  store_relaxed(&h.heartbeat_ns, now_ns);
}

std::uint64_t report_pages(const Mapping& m, const WriterConfig& config, bool created) {
  const std::uint64_t huge = huge_mapped_bytes(m.base(), m.size());
  const std::string what = "segment '" + config.segment + "': " + std::to_string(huge >> 20) +
                           " of " + std::to_string(m.size() >> 20) + " MiB on 2 MiB pages";
  const std::string why =
      m.collapse_error().empty() ? "" : " (MADV_COLLAPSE: " + m.collapse_error() + ")";
  if (huge > 0 || m.size() < kHugePageSize) {
    config.log(LogLevel::info, what + why);
  } else if (created && config.huge_pages) {
    config.log(LogLevel::warn,
               what + (why.empty() ? " (MADV_COLLAPSE took no effect)" : why) +
                   ": every random access may also miss the TLB; see README, \"Huge pages\"");
  } else {
    config.log(LogLevel::info, what + (created ? " (huge_pages is off)"
                                               : " (as created; a fresh segment collapses)"));
  }
  return huge;
}

}  // namespace poscache::detail
