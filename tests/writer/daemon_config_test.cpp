#include "writer/daemon_config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

using namespace poscache;
using namespace poscache::daemon;
using namespace std::chrono_literals;

namespace {
std::string load_error(std::string_view toml) {
  DaemonConfig c;
  try {
    load_toml(toml, "test.toml", c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(DaemonConfigTest, LoadsSegmentNamespacesAndGenerator) {
  DaemonConfig c;
  load_toml(R"(
[segment]
name = "positions"
capacity = 5000
mode = "0660"

[[namespace]]
name = "spot"
preset = "trading"
stale_after = "5s"

[[namespace]]
name = "perp"
fields = [ { name = "qty", type = "decimal", scale = 8 }, { name = "block", type = "int64" } ]
expire_after = "10m"

[generator]
enabled = true
rate = 2000
accounts = 10
)", "test.toml", c);
  EXPECT_EQ(c.writer.segment, "positions");
  EXPECT_EQ(c.writer.capacity, 5000u);
  EXPECT_EQ(c.writer.mode, 0660u);
  ASSERT_EQ(c.writer.namespaces.size(), 2u);
  EXPECT_EQ(c.writer.namespaces[0].stale_after, 5s);
  EXPECT_EQ(c.writer.namespaces[1].fields[0].scale, 8);
  EXPECT_EQ(c.writer.namespaces[1].fields[1].type, FieldType::int64);
  EXPECT_EQ(c.writer.namespaces[1].expire_after, 10min);
  EXPECT_TRUE(c.generator.enabled);
  EXPECT_EQ(c.generator.accounts, 10u);
}

TEST(DaemonConfigTest, ErrorsNameTheFileLineAndKey) {
  EXPECT_NE(load_error("[segment]\ncapasity = 3\n").find("test.toml:2:12: unknown key 'capasity' in [segment]"), std::string::npos)
      << load_error("[segment]\ncapasity = 3\n");
  EXPECT_NE(load_error("[segment]\ncapacity = -3\n").find("'capacity' must be an integer from 1"), std::string::npos);
  EXPECT_NE(load_error("[segment\n").find("test.toml:1:"), std::string::npos);
  EXPECT_NE(load_error("[[namespace]]\nname = \"x\"\npreset = \"futures\"\n").find("unknown preset 'futures'"), std::string::npos);
  EXPECT_NE(load_error("[[namespace]]\nname = \"x\"\npreset = \"quote\"\nstale_after = \"5 parsecs\"\n").find("stale_after"), std::string::npos);
  EXPECT_NE(load_error("[[namespace]]\nname = \"x\"\nfields = [ { name = \"a\", type = \"float\" } ]\n").find("type 'float'"), std::string::npos);
  EXPECT_NE(load_error("[[namespace]]\nname = \"x\"\npreset = \"quote\"\n[[namespace]]\nname = \"x\"\npreset = \"quote\"\n").find("declared twice"), std::string::npos);
}

TEST(DaemonConfigTest, DurationsNeedAUnit) {
  EXPECT_EQ(*parse_duration("250ms"), 250ms);
  EXPECT_EQ(*parse_duration("0"), 0ns);
  EXPECT_EQ(*parse_duration("2h"), 2h);
  EXPECT_FALSE(parse_duration("5"));
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_FALSE(parse_duration("1d"));
}

TEST(DaemonConfigTest, NamespaceFlagsAndEnvironment) {
  auto n = parse_namespace_flag("marks:quote:500ms:5s");
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(n->stale_after, 500ms);
  EXPECT_EQ(n->expire_after, 5s);
  EXPECT_FALSE(parse_namespace_flag("marks"));
  EXPECT_FALSE(parse_namespace_flag("marks:quote:5s:1s"));  // stale after expiry
  DaemonConfig c;
  ::setenv("POSCACHE_SEGMENT", "from_env", 1);
  ::setenv("POSCACHE_CAPACITY", "77", 1);
  load_env(c);
  EXPECT_EQ(c.writer.segment, "from_env");
  EXPECT_EQ(c.writer.capacity, 77u);
  ::setenv("POSCACHE_CAPACITY", "lots", 1);
  EXPECT_THROW(load_env(c), Error);
  ::unsetenv("POSCACHE_SEGMENT");
  ::unsetenv("POSCACHE_CAPACITY");
}
