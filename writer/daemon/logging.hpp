// Where poscache-writer's log goes (docs/operations.md, "Logs"):
//   * under systemd, when its stderr is the journal (JOURNAL_STREAM names that stream): straight
//     to the journal through sd_journal_send, each line with its priority (err, warning, info,
//     debug), so `journalctl -u poscache-writer -p err` finds the errors, with
//     SYSLOG_IDENTIFIER=poscache-writer;
//   * otherwise on stderr (stdout is for what a command prints: --print-config), one line per
//     message with its time and level, coloured only on a terminal and never when NO_COLOR is
//     set (https://no-color.org).
#pragma once

#include <spdlog/common.h>

namespace poscache::daemon {

// Installs the default spdlog logger; returns true if it writes to the journal.
bool setup_logging(spdlog::level::level_enum level);

}  // namespace poscache::daemon
