// shm/namespace_desc: a namespace's spec into its descriptor in the header and back, once for
// the creator, readers and re-attaching writers.
#include <gtest/gtest.h>

#include "shm/segment.hpp"

using namespace poscache;
using namespace poscache::shm;
using namespace std::chrono_literals;

TEST(NamespaceDescTest, ASpecRoundTripsThroughItsDescriptor) {
  for (const NamespaceSpec& n :
       {preset_trading("spot"), preset_lending("moonwell"), preset_quote("marks")}) {
    NamespaceDesc d{};
    write_namespace(d, n);
    const NamespaceSpec back = spec_of(d);
    EXPECT_EQ(back.name, n.name);
    ASSERT_EQ(back.fields.size(), n.fields.size());
    for (std::size_t f = 0; f < n.fields.size(); ++f) {
      EXPECT_EQ(back.fields[f].name, n.fields[f].name);
      EXPECT_EQ(back.fields[f].type, n.fields[f].type);
      EXPECT_EQ(back.fields[f].scale, n.fields[f].scale);
    }
    EXPECT_EQ(back.stale_after, n.stale_after);
    EXPECT_EQ(back.expire_after, n.expire_after);
    EXPECT_TRUE(same_schema(d, n));
  }
}

TEST(NamespaceDescTest, SameSchemaSeesEachDifference) {
  const NamespaceSpec n = preset_quote("marks");
  NamespaceDesc d{};
  write_namespace(d, n);
  auto differs = [&](auto&& edit) {
    NamespaceSpec m = n;
    edit(m);
    return !same_schema(d, m);
  };
  EXPECT_TRUE(differs([](NamespaceSpec& m) { m.name = "mark"; }));
  EXPECT_TRUE(differs([](NamespaceSpec& m) { m.fields[1].name = "offer"; }));
  EXPECT_TRUE(differs([](NamespaceSpec& m) { m.fields[1].scale = 8; }));
  EXPECT_TRUE(differs([](NamespaceSpec& m) { m.fields[1].type = FieldType::int64; }));
  EXPECT_TRUE(differs([](NamespaceSpec& m) { m.fields.pop_back(); }));
  EXPECT_TRUE(differs([](NamespaceSpec& m) { m.stale_after = 2s; }));
  EXPECT_TRUE(differs([](NamespaceSpec& m) { m.expire_after = 0s; }));
  EXPECT_FALSE(differs([](NamespaceSpec&) {}));
  EXPECT_EQ(schema_text(n),
            "marks{bid:decimal(18),ask:decimal(18),last:decimal(18),stale_after=1000000000ns,"
            "expire_after=60000000000ns}");
}
