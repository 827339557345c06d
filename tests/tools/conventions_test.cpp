// The conventions every program keeps (docs/cli.md): `--version` names the program and the one
// version of the project (CMakeLists.txt's project(), generated into poscache/version.h); a
// usage error exits 2 with a line naming what was wrong, and changes nothing.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "poscache/version.h"
#include "test_util.hpp"

namespace {

struct Program {
  std::string bin, name, subcommand;  // a subcommand it takes ("" if none)
};
const std::vector<Program>& programs() {
  static const std::vector<Program> p = {
      {POSCACHE_WRITER_BIN, "poscache-writer", ""},
      {POSCACHE_INSPECT_BIN, "poscache-inspect", "stats"},
      {POSCACHE_FEED_BIN, "poscache-feed", "replay backup.jsonl"},
      {POSCACHE_READER_DEMO_BIN, "poscache-reader-demo", ""}};
  return p;
}

TEST(ToolConventionsTest, EveryProgramReportsTheProjectVersion) {
  for (const auto& [bin, name, sub] : programs()) {
    const poscache::test::CliRun r = poscache::test::run_cli(bin + " --version");
    EXPECT_EQ(r.code, 0) << name << ": " << r.out;
    EXPECT_EQ(r.out, name + " " + POSCACHE_VERSION + "\n") << name;
  }
}

TEST(ToolConventionsTest, AUsageErrorExitsTwoNamingWhatWasWrong) {
  for (const auto& [bin, name, sub] : programs()) {
    const poscache::test::CliRun r = poscache::test::run_cli(bin + " " + sub + " --no-such-flag 1");
    EXPECT_EQ(r.code, 2) << name << ": " << r.out;
    EXPECT_NE(r.out.find("--no-such-flag"), std::string::npos) << name << ": " << r.out;
  }
}

// One duration syntax (values/duration.hpp) on every duration flag; the top-level flags (-s,
// --json) also after the subcommand.
TEST(ToolConventionsTest, OneDurationSyntaxAndTopLevelFlagsAfterTheSubcommand) {
  using poscache::test::run_cli;
  const std::string inspect = POSCACHE_INSPECT_BIN, feed = POSCACHE_FEED_BIN;
  // Parsed: what is reported is the missing segment (3), as JSON.
  const auto ok = run_cli(inspect + " health -s conventions_none --max-sync-lag 1.5s --json");
  EXPECT_EQ(ok.code, 3) << ok.out;
  EXPECT_NE(ok.out.find("{\"error\":"), std::string::npos) << ok.out;
  EXPECT_EQ(run_cli(inspect + " -s conventions_none health --max-sync-lag 5").code, 3);
  for (const std::string& bad : {inspect + " -s conventions_none health --max-sync-lag 5x",
                                 inspect + " -s conventions_none watch --interval 5parsecs",
                                 feed + " -s conventions_none replay - --timeout 2days",
                                 feed + " -s conventions_none simulate --seconds -1s"}) {
    const auto r = run_cli(bad);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.out;
    EXPECT_NE(r.out.find("duration"), std::string::npos) << bad << ": " << r.out;
  }
}

}  // namespace
