// Text fields (FieldType::text): an asset address or an order status in the value slots it
// spans, exact through the writer, readers and format_field; merge keeps it, replace unsets it,
// a shorter text leaves nothing of a longer one; bad text is refused naming the field and the
// cause, by make_update and by the apply path for Updates built by hand.
#include <gtest/gtest.h>

#include "poscache/format.hpp"
#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "test_util.hpp"

using namespace poscache;
using test::must;

namespace {

class TextFieldTest : public ::testing::Test {
 protected:
  test::ScratchSegment seg{"text"};
  std::unique_ptr<Writer> w = Writer::open(config(seg.name()));
  Reader r = Reader::open(seg.name());
  const NamespaceId lending = *r.namespace_id("moonwell");
  const NamespaceId orders = *r.namespace_id("orders");

  static WriterConfig config(const std::string& name) {
    WriterConfig c = test::small_config(name, 16);
    // An order cache: a quantity, then a status and a venue's order id as text.
    c.namespaces.push_back(NamespaceSpec{"orders",
                                         {{"qty", FieldType::decimal, 8, 0},
                                          {"status", FieldType::text, 0, 16},
                                          {"venue_id", FieldType::text, 0, 40}},
                                         {},
                                         {}});
    return c;
  }
  std::string read(NamespaceId ns, const char* account, const char* instrument, const char* f) {
    Position p;
    if (!has_value(r.get(ns, account, instrument, p))) return "absent";
    const NamespaceInfo& info = r.namespace_info(ns);
    const std::size_t i = *info.field_index(f);
    return p.has(i) ? format_field(info, p, i) : "unset";
  }
  std::string error_of(const char* ns, const char* field, std::string_view value) {
    auto u = w->make_update(ns, "a", "X", {{field, value}});
    return u ? std::string() : u.error();
  }
};

}  // namespace

TEST_F(TextFieldTest, AddressesAndStatusesRoundTripExactly) {
  const std::string weth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2";  // 42 bytes: 3 slots
  const std::string usdc = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
  ASSERT_EQ(w->upsert(must(w->make_update("moonwell", "0xab", "WETH",
                                          {{"collateral_amount", "5000000000000000000"},
                                           {"collateral_asset", weth},
                                           {"debt_asset", usdc},
                                           {"blocks_unhealthy", "0"}})))
                .status,
            ApplyStatus::inserted);
  EXPECT_EQ(read(lending, "0xab", "WETH", "collateral_asset"), weth);
  EXPECT_EQ(read(lending, "0xab", "WETH", "debt_asset"), usdc);
  EXPECT_EQ(read(lending, "0xab", "WETH", "collateral_amount"), "5000000000000000000");
  Position p;
  ASSERT_EQ(r.get(lending, "0xab", "WETH", p), ReadStatus::ok);
  EXPECT_EQ(p.text(6, 48), weth);  // the first slot: field_slot(fields, 6)
  EXPECT_EQ(p.text(9, 48), usdc);
  // A merge of other fields keeps the texts; a shorter text replaces a longer one whole.
  w->upsert(must(w->make_update("moonwell", "0xab", "WETH", {{"blocks_unhealthy", "3"}})));
  EXPECT_EQ(read(lending, "0xab", "WETH", "collateral_asset"), weth);
  w->upsert(must(w->make_update("moonwell", "0xab", "WETH", {{"collateral_asset", "WETH"}})));
  EXPECT_EQ(read(lending, "0xab", "WETH", "collateral_asset"), "WETH");
  EXPECT_EQ(read(lending, "0xab", "WETH", "debt_asset"), usdc);
  // Text after text, with multi-byte UTF-8 filling a slot to its last byte.
  w->upsert(must(w->make_update(
      "orders", "acc1", "ORD-1",
      {{"qty", "1.5"}, {"status", "PARTIALLY_FILLED"}, {"venue_id", "ордер-№42 €"}})));
  EXPECT_EQ(read(orders, "acc1", "ORD-1", "status"), "PARTIALLY_FILLED");
  EXPECT_EQ(read(orders, "acc1", "ORD-1", "venue_id"), "ордер-№42 €");
  EXPECT_EQ(read(orders, "acc1", "ORD-1", "qty"), "1.50000000");
  // Replace: what is not given is unset, texts too; an empty text is a value.
  w->upsert(
      must(w->make_update("orders", "acc1", "ORD-1", {{"status", ""}}, 0, UpdateMode::replace)));
  EXPECT_EQ(read(orders, "acc1", "ORD-1", "status"), "");
  EXPECT_EQ(read(orders, "acc1", "ORD-1", "venue_id"), "unset");
  EXPECT_EQ(read(orders, "acc1", "ORD-1", "qty"), "unset");
}

TEST_F(TextFieldTest, BadTextIsRefusedNamingTheFieldAndTheCause) {
  EXPECT_EQ(error_of("orders", "status", "PARTIALLY_FILLED!"),
            "text field 'status' holds at most 16 bytes, got 17");
  EXPECT_EQ(error_of("orders", "status", std::string_view("NE\0W", 4)),
            "text field 'status' may not contain NUL (byte 2)");
  EXPECT_EQ(error_of("orders", "status", "NEW\xFF"),
            "text field 'status' is not valid UTF-8 (byte 3)");
  EXPECT_EQ(error_of("orders", "status", "\xC0\xAF"),  // an overlong '/'
            "text field 'status' is not valid UTF-8 (byte 0)");
  // An Update built by hand (as a producer's ring message becomes one): the apply path checks
  // the slots' bytes, padding included, and applies nothing of a bad one.
  Update u = must(w->make_update("orders", "acc2", "ORD-2", {{"status", "NEW"}}));
  Update junk = u;
  reinterpret_cast<char*>(&junk.values[1])[5] = 'x';  // after the NUL that ends "NEW"
  EXPECT_EQ(w->upsert(junk).status, ApplyStatus::bad_input);
  Update bad_utf8 = u;
  reinterpret_cast<char*>(&bad_utf8.values[1])[1] = '\xFF';
  EXPECT_EQ(w->upsert(bad_utf8).status, ApplyStatus::bad_input);
  const BatchResult b = w->apply(std::vector<Op>{u, junk});
  EXPECT_FALSE(b.applied);
  EXPECT_NE(b.error.find("field 'status': the bytes after its 3-byte text are not zero"),
            std::string::npos)
      << b.error;
  EXPECT_EQ(read(orders, "acc2", "ORD-2", "status"), "absent");
  EXPECT_EQ(w->upsert(u).status, ApplyStatus::inserted);
  EXPECT_EQ(read(orders, "acc2", "ORD-2", "status"), "NEW");
}
