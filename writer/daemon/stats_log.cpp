#include "writer/daemon/stats_log.hpp"

#include <spdlog/spdlog.h>

#include <string>

namespace poscache::daemon {

void log_stats(const WriterStats& st, const WriterStats& last, double secs, bool following,
               bool redis, const std::vector<std::unique_ptr<ingest::Source>>& sources) {
  spdlog::info(
      "live {} | {:.0f} inserts/s {:.0f} updates/s | evictions {} expirations {} invalidations "
      "{} rejects {} | index rebuilds {}{}",
      st.live, static_cast<double>(st.inserts - last.inserts) / secs,
      static_cast<double>(st.updates - last.updates) / secs, st.evictions, st.expirations,
      st.invalidations, st.rejects, st.index_rebuilds,
      following ? fmt::format(" | follow {} lag {:.2f} ms entries {} loads {}", st.follow_state,
                              static_cast<double>(st.follow_lag_ns) / 1e6, st.follow_entries,
                              st.follow_reloads)
      : redis   ? fmt::format(
                      " | redis {} dirty {} oldest unsynced {:.1f} ms journal {}{}", st.redis_state,
                      st.redis_dirty, static_cast<double>(st.redis_oldest_unsynced_age_ns) / 1e6,
                      st.journal_pending,
                    st.journal_overflows > 0 ? fmt::format(" (overflowed {})", st.journal_overflows)
                                               : std::string())
              : std::string());
  for (const auto& src : sources) {
    const ingest::SourceCounters sc = src->counters();
    if (sc.received == 0) continue;
    spdlog::info(
        "{}: {} commands: {} applied, {} ignored (duplicate, stale, not found), {} rejected",
        src->name(), sc.received, sc.applied, sc.ignored, sc.rejected);
  }
}

}  // namespace poscache::daemon
