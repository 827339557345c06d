#include "writer/daemon/logging.hpp"

#include <spdlog/sinks/ansicolor_sink.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace poscache::daemon {
namespace {

// systemd sets JOURNAL_STREAM to "<device>:<inode>" of the stream it connected to stderr; a
// process whose stderr was redirected since (a shell's 2>file) keeps the variable but not the
// stream, so both are compared (systemd.exec(5)).
bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr || *env == '\0') return false;
  struct stat st {};
  if (::fstat(2, &st) != 0) return false;
  const std::string want = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  return want == env;
}

}  // namespace

bool setup_logging(spdlog::level::level_enum level) {
  std::shared_ptr<spdlog::logger> logger;
  const bool journal = stderr_is_journal();
  if (journal) {
    // The journal stamps time, host and priority itself: the message alone.
    auto sink = std::make_shared<spdlog::sinks::systemd_sink_mt>("poscache-writer");
    logger = std::make_shared<spdlog::logger>("poscache-writer", std::move(sink));
  } else {
    const char* no_color = std::getenv("NO_COLOR");
    const auto mode = no_color != nullptr && *no_color != '\0' ? spdlog::color_mode::never
                                                               : spdlog::color_mode::automatic;
    auto sink = std::make_shared<spdlog::sinks::ansicolor_stderr_sink_mt>(mode);
    logger = std::make_shared<spdlog::logger>("poscache-writer", std::move(sink));
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ poscache-writer: %v");
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);  // each line at once: lines are rare
  spdlog::set_default_logger(std::move(logger));
  return journal;
}

}  // namespace poscache::daemon
