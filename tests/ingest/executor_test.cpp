// The command executor on a real writer: what a producer's commands do to the positions readers
// see. Fills and marks are checked against an independent reference (exact rationals,
// fill_reference.py) over 10^5 random fills in three namespaces of different scales;
// de-duplication across a writer kill -9.
#include "writer/ingest/executor.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "poscache/format.hpp"
#include "poscache/reader.hpp"
#include "test_util.hpp"
#include "writer/ingest/json_codec.hpp"

namespace poscache::ingest {
namespace {

using test::ScratchSegment;

struct Fixture {
  // test::small_config's namespaces, then `extra`; a de-duplication window of `window_capacity`.
  explicit Fixture(const std::string& tag, std::uint64_t capacity = 4096,
                   std::vector<NamespaceSpec> extra = {}, std::uint64_t window_capacity = 1 << 16)
      : seg(tag),
        writer(Writer::open(config(seg.name(), capacity, std::move(extra)))),
        window(std::make_unique<TradeWindow>(seg.name(), writer->stats().generation,
                                             window_capacity,
                                             [](const PositionKey&) { return 0; })),
        exec(*writer, window.get()),
        decoder(writer->namespaces()) {}
  static WriterConfig config(const std::string& segment, std::uint64_t capacity,
                             std::vector<NamespaceSpec> extra) {
    WriterConfig c = test::small_config(segment, capacity);
    for (auto& ns : extra) c.namespaces.push_back(std::move(ns));
    return c;
  }
  // Decodes a JSON line and executes it; the test fails on a decode error.
  CommandResult run(const std::string& line) {
    auto d = decoder.decode(line);
    if (auto* f = std::get_if<JsonDecoder::Failure>(&d)) {
      ADD_FAILURE() << line << ": " << f->error;
      return {};
    }
    return exec.execute(std::get<DecodedLine>(d).command);
  }
  std::string field(const std::string& ns, const std::string& account,
                    const std::string& instrument, const std::string& name) {
    const NamespaceId id = *writer->namespace_id(ns);
    auto p = writer->find(id, account, instrument);
    if (!p) return "absent";
    const auto& spec = writer->namespaces()[id];
    for (std::size_t f = 0; f < spec.fields.size(); ++f)
      if (spec.fields[f].name == name)
        return p->has(f) ? (spec.fields[f].type == FieldType::decimal
                                ? format_decimal(p->values[f], spec.fields[f].scale)
                                : std::to_string(p->int64(f)))
                         : "unset";
    return "no such field";
  }
  ScratchSegment seg;
  std::unique_ptr<Writer> writer;
  std::unique_ptr<TradeWindow> window;
  CommandExecutor exec;
  JsonDecoder decoder;
};

std::string fill_line(const char* side, const char* qty, const char* price,
                      const std::string& trade_id = "", const char* fee = nullptr) {
  std::string s = std::string(R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL",)") +
                  R"("side":")" + side + R"(","qty":")" + qty + R"(","price":")" + price + '"';
  if (fee != nullptr) s += std::string(R"(,"fee":")") + fee + '"';
  if (!trade_id.empty()) s += R"(,"trade_id":")" + trade_id + '"';
  return s + "}";
}

TEST(ExecutorTest, FillsKeepTheWorkedExampleAndReadersSeeIt) {
  Fixture t("exec_worked");
  EXPECT_EQ(t.run(fill_line("buy", "10", "100", "T1")).status, CommandStatus::applied);
  EXPECT_EQ(t.run(fill_line("buy", "10", "110", "T2")).status, CommandStatus::applied);
  EXPECT_EQ(t.run(fill_line("sell", "5", "120", "T3", "0.5")).status, CommandStatus::applied);
  Reader r = Reader::open(t.seg.name());
  Position p;
  ASSERT_EQ(r.get(*r.namespace_id("spot"), "w1", "SOL", p), ReadStatus::ok);
  const auto& ns = r.namespace_info(*r.namespace_id("spot"));
  EXPECT_EQ(format_field(ns, p, *ns.field_index("qty")), "15.000000000000000000");
  EXPECT_EQ(format_field(ns, p, *ns.field_index("avg_price")), "105.000000000000000000");
  EXPECT_EQ(format_field(ns, p, *ns.field_index("realized_pnl")), "75.000000000000000000");
  EXPECT_EQ(format_field(ns, p, *ns.field_index("fees")), "0.500000000000000000");
  EXPECT_EQ(t.run(fill_line("sell", "20", "100", "T4")).status, CommandStatus::applied);
  EXPECT_EQ(t.field("spot", "w1", "SOL", "qty"), "-5.000000000000000000");
  EXPECT_EQ(t.field("spot", "w1", "SOL", "avg_price"), "100.000000000000000000");
  EXPECT_EQ(t.field("spot", "w1", "SOL", "realized_pnl"), "0.000000000000000000");
  EXPECT_EQ(t.exec.counters().fills, 4u);
}

TEST(ExecutorTest, ASeenTradeIdIsIgnoredAndCounted) {
  Fixture t("exec_dup");
  EXPECT_EQ(t.run(fill_line("buy", "10", "100", "T1")).status, CommandStatus::applied);
  const auto version = t.writer->find(0, "w1", "SOL")->version;
  EXPECT_EQ(t.run(fill_line("buy", "10", "100", "T1")).status, CommandStatus::duplicate);
  EXPECT_EQ(t.writer->find(0, "w1", "SOL")->version, version);  // nothing written
  EXPECT_EQ(t.field("spot", "w1", "SOL", "qty"), "10.000000000000000000");
  EXPECT_EQ(t.exec.counters().duplicates, 1u);
  // Without a trade id there is nothing to de-duplicate on: both apply.
  EXPECT_EQ(t.run(fill_line("buy", "1", "100")).status, CommandStatus::applied);
  EXPECT_EQ(t.run(fill_line("buy", "1", "100")).status, CommandStatus::applied);
  EXPECT_EQ(t.field("spot", "w1", "SOL", "qty"), "12.000000000000000000");
}

TEST(ExecutorTest, MarkSetsThePriceAndUnrealizedPnlForOneOrEveryAccount) {
  Fixture t("exec_mark");
  t.run(fill_line("buy", "2", "100"));
  t.run(
      R"({"op":"fill","ns":"spot","account":"w2","instrument":"SOL","side":"sell","qty":"3","price":"90"})");
  t.run(
      R"({"op":"fill","ns":"spot","account":"w2","instrument":"ETH","side":"buy","qty":"1","price":"3000"})");
  auto one = t.run(R"({"op":"mark","ns":"spot","account":"w1","instrument":"SOL","price":"110"})");
  EXPECT_EQ(one.status, CommandStatus::applied);
  EXPECT_EQ(one.count, 1u);
  EXPECT_EQ(t.field("spot", "w1", "SOL", "unrealized_pnl"), "20.000000000000000000");
  EXPECT_EQ(t.field("spot", "w2", "SOL", "mark_price"), "unset");
  auto all = t.run(R"({"op":"mark","ns":"spot","instrument":"SOL","price":"95.5"})");
  EXPECT_EQ(all.status, CommandStatus::applied);
  EXPECT_EQ(all.count, 2u);  // w1 and w2 hold SOL; w2's ETH is untouched
  EXPECT_EQ(t.field("spot", "w1", "SOL", "unrealized_pnl"), "-9.000000000000000000");
  EXPECT_EQ(t.field("spot", "w2", "SOL", "unrealized_pnl"), "-16.500000000000000000");
  EXPECT_EQ(t.field("spot", "w2", "ETH", "mark_price"), "unset");
  EXPECT_EQ(
      t.run(R"({"op":"mark","ns":"spot","account":"w9","instrument":"SOL","price":"1"})").status,
      CommandStatus::not_found);
}

TEST(ExecutorTest, AddIncrementsOrResetsAnInt64FieldAndRefusesOverflow) {
  Fixture t("exec_add");
  const std::string key = R"("ns":"moonwell","account":"0xabc","instrument":"USDC")";
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(t.run(R"({"op":"add",)" + key + R"(,"field":"blocks_unhealthy","by":1})").status,
              CommandStatus::applied);
  EXPECT_EQ(t.field("moonwell", "0xabc", "USDC", "blocks_unhealthy"), "3");
  EXPECT_EQ(t.run(R"({"op":"add",)" + key + R"(,"field":"blocks_unhealthy","reset":true})").status,
            CommandStatus::applied);
  EXPECT_EQ(t.field("moonwell", "0xabc", "USDC", "blocks_unhealthy"), "0");
  t.run(R"({"op":"add",)" + key + R"(,"field":"last_update_block","by":9223372036854775807})");
  auto over = t.run(R"({"op":"add",)" + key + R"(,"field":"last_update_block","by":1})");
  EXPECT_EQ(over.status, CommandStatus::rejected);
  EXPECT_NE(over.error.find("'last_update_block' would overflow"), std::string::npos) << over.error;
  auto dec = t.run(R"({"op":"add",)" + key + R"(,"field":"debt_amount","by":1})");
  EXPECT_EQ(dec.status, CommandStatus::rejected);
  EXPECT_NE(dec.error.find("'debt_amount'"), std::string::npos) << dec.error;
  EXPECT_NE(dec.error.find("int64"), std::string::npos) << dec.error;
}

TEST(ExecutorTest, AFillThatCannotBeHeldIsRefusedWholeAndWritesNothing) {
  Fixture t("exec_refuse");
  t.run(fill_line("buy", "10000000000000000000", "1", "T1"));
  const auto before = t.writer->find(0, "w1", "SOL")->version;
  auto r = t.run(fill_line("buy", "1", "99999999999999999999", "T2"));
  EXPECT_EQ(r.status, CommandStatus::rejected);
  EXPECT_NE(r.error.find("'cost_basis'"), std::string::npos) << r.error;
  EXPECT_EQ(t.writer->find(0, "w1", "SOL")->version, before);
  // Refused, so its trade id was not remembered: the same id with a sane price applies.
  EXPECT_EQ(t.run(fill_line("buy", "1", "1", "T2")).status, CommandStatus::applied);
}

// The property test's namespaces besides the preset "spot" (every field at scale 18): trading
// fields at scales of their own, listed in another order and after an int64 field, so the
// executor must find them by name and round each at its own scale. "book8" has R and C at one
// scale (FI4 is checked there too); "coarse" rounds nearly every value, R finer than C.
NamespaceSpec property_namespace(const std::string& name, unsigned qty, unsigned avg, unsigned cost,
                                 unsigned realized, unsigned fees, unsigned mark,
                                 unsigned unrealized) {
  auto dec = [](const char* n, unsigned scale) {
    return FieldSpec{n, FieldType::decimal, static_cast<std::uint8_t>(scale), 0};
  };
  return NamespaceSpec{
      name,
      {FieldSpec{"venue_seq", FieldType::int64, 0, 0}, dec("fees", fees),
       dec("unrealized_pnl", unrealized), dec("qty", qty), dec("mark_price", mark),
       dec("avg_price", avg), dec("realized_pnl", realized), dec("cost_basis", cost)},
      {},
      {}};
}

constexpr const char* kTradingFields[] = {"qty",  "avg_price",  "cost_basis",    "realized_pnl",
                                          "fees", "mark_price", "unrealized_pnl"};

int128 ten_to(int e) {
  int128 v = 1;
  for (int i = 0; i < e; ++i) v *= 10;
  return v;
}

// How one instrument trades: quantities from 10^q_min to 10^q_max (at least a unit of qty's last
// place), prices from 10^p_min to 10^p_max at avg_price's scale (likewise), or dust: 1 to 1000
// units of the last place. A position is kept below 100 x the largest quantity, so that no value
// comes near the decimal limit (spot, 10^20): the largest cost is WHALE's 10^15 x 10 and
// BIGP's 10^4 x 10^9, and realized P&L sums at most a few hundred such amounts.
struct Regime {
  const char* instrument;
  int q_min, q_max, p_min, p_max;
  bool dust_qty = false, dust_price = false;
  bool halves = false;  // q x p an exact half at cost_basis's or realized_pnl's scale
};
const Regime kRegimes[] = {
    {"DUSTQ", 0, 0, 0, 4, true, false},        // 1..1000 units of qty, ordinary prices
    {"DUSTP", 0, 12, 0, 0, false, true},       // ordinary to large quantities at 1..1000 units
    {"BIGP", -6, 2, 6, 9},                     // prices up to 10^9
    {"WHALE", 6, 13, -6, 1},                   // quantities up to 10^13 (10^15 held)
    {"MIX", -40, 6, -40, 6},                   // anything from a unit of the last place
    {"HALF", -3, 2, 0, 0, false, false, true}  // exact halves to round, average ties
};

// Random trade sequences through the JSON decoder, the executor and the writer, every touched
// position checked by tests/ingest/fill_reference.py, which recomputes them in exact rationals
// from the specification (fill_math.hpp), checks invariants FI1-FI5 on its own state and bounds
// its error against an exact model that never rounds. Over 10^5 fills in three namespaces
// (scales 18; 8/6/4/4/2/6/4; 3/2/1/2/0/3/0) and six regimes (above): dust quantities and prices,
// prices to 10^9, quantities to 10^13, positions closed, crossed, halved and doubled (average
// ties), exact halves, zero prices, rebates; marks of one account, of every account and of a
// position that does not exist; trade ids redelivered, in their namespace and in another.
TEST(ExecutorTest, FillsAndMarksMatchAnIndependentDecimalReference) {
  const std::string reference = "python3 " POSCACHE_SOURCE_DIR "/tests/ingest/fill_reference.py ";
  const auto self_test = test::run_cli(reference + "--self-test");  // its hand-checked cases
  ASSERT_EQ(self_test.code, 0) << self_test.out;
  Fixture t("exec_ref", 8192,
            {property_namespace("book8", 8, 6, 4, 4, 2, 6, 4),
             property_namespace("coarse", 3, 2, 1, 2, 0, 3, 0)},
            1 << 18);
  std::mt19937_64 rng(20261207);
  const std::string path = ::testing::TempDir() + "fill_reference_" + std::to_string(::getpid());
  std::ofstream out(path);
  const std::vector<std::string> ns_names = {"spot", "book8", "coarse"};
  struct Ns {
    NamespaceId id;
    const NamespaceSpec* spec;
    std::map<std::string, unsigned> scale;
  };
  std::vector<Ns> nss;
  nlohmann::json header;
  for (const auto& name : ns_names) {
    Ns n{*t.writer->namespace_id(name), nullptr, {}};
    n.spec = &t.writer->namespaces()[n.id];
    for (const auto& f : n.spec->fields)
      if (f.type == FieldType::decimal) n.scale[f.name] = f.scale;
    for (const char* f : kTradingFields) {
      ASSERT_TRUE(n.scale.count(f)) << name << " " << f;
      header["namespaces"][name][f] = n.scale[f];
    }
    nss.push_back(std::move(n));
  }
  out << header.dump() << '\n';

  auto uniform = [&](int128 lo, int128 hi) {  // lo..hi, 0 <= lo <= hi < 2^127
    const auto r = (static_cast<unsigned __int128>(rng()) << 64) | rng();
    return lo + static_cast<int128>(r % static_cast<unsigned __int128>(hi - lo + 1));
  };
  // A mantissa from lo to hi, its number of digits uniform (so 1 and 10^13 are both common);
  // one in five keeps only one to three significant digits (round numbers, exact products).
  auto mantissa = [&](int128 lo, int128 hi) {
    int dlo = 1, dhi = 1;
    while (ten_to(dlo) <= lo) ++dlo;
    while (ten_to(dhi) <= hi) ++dhi;
    const int digits = dlo + static_cast<int>(rng() % static_cast<unsigned>(dhi - dlo + 1));
    int128 v = uniform(std::max(lo, ten_to(digits - 1)), std::min(hi, ten_to(digits) - 1));
    if (rng() % 5 == 0 && digits > 3) {
      const int128 keep = ten_to(digits - 1 - static_cast<int>(rng() % 3));
      v = std::max(lo, v / keep * keep);
    }
    return v;
  };
  // 10^e as a mantissa at `scale`, at least one unit.
  auto at_scale = [](int e, unsigned scale) {
    return e + static_cast<int>(scale) <= 0 ? int128{1} : ten_to(e + static_cast<int>(scale));
  };
  auto odd = [&](unsigned hi) { return static_cast<int128>(2 * (rng() % ((hi + 1) / 2)) + 1); };

  struct Key {
    std::size_t ns;
    std::string account;
    const Regime* regime;
  };
  std::map<std::string, int128> held;  // "ns|account|instrument" -> qty mantissa, as filled
  std::vector<std::pair<std::size_t, std::string>> trade_ids;  // (namespace, id) sent
  std::size_t fills = 0;
  const int kAccounts = 40;
  while (fills < 100'000) {
    const Key key{rng() % nss.size(), "acct" + std::to_string(rng() % kAccounts),
                  &kRegimes[rng() % std::size(kRegimes)]};
    const Ns& ns = nss[key.ns];
    const Regime& g = *key.regime;
    const unsigned sq = ns.scale.at("qty"), sa = ns.scale.at("avg_price"), sf = ns.scale.at("fees"),
                   sm = ns.scale.at("mark_price");
    const std::string name = ns_names[key.ns] + "|" + key.account + "|" + g.instrument;
    const int128 q_lo = g.dust_qty ? 1 : at_scale(g.q_min, sq);
    const int128 q_hi = g.dust_qty ? 1000 : at_scale(g.q_max, sq);
    const int128 cap = 100 * q_hi;
    // A price mantissa at `scale` (avg_price's for a fill, mark_price's for a mark).
    auto price = [&](unsigned scale) -> int128 {
      if (rng() % 100 == 0) return 0;
      if (g.halves) return 5 * odd(199) * ten_to(static_cast<int>(rng() % (scale + 1)));
      if (g.dust_price) return mantissa(1, 1000);
      return mantissa(at_scale(g.p_min, scale), at_scale(g.p_max, scale));
    };
    const int burst = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < burst; ++i) {
      nlohmann::json cmd;
      const auto roll = rng() % 100;
      int128& q_held = held[name];
      int side = 0;
      int128 q = 0;
      if (roll < 8) {  // a mark: one in ten of every account, one in twenty of nobody's position
        cmd = {{"op", "mark"},
               {"ns", ns_names[key.ns]},
               {"instrument", g.instrument},
               {"price", format_decimal(price(sm), sm)}};
        if (rng() % 10 != 0) cmd["account"] = rng() % 20 == 0 ? "nobody" : key.account;
      } else {
        side = rng() % 2 ? 1 : -1;
        const int128 abs_q = q_held < 0 ? -q_held : q_held;
        const int against = q_held > 0 ? -1 : 1;  // the side that reduces
        q = g.dust_qty ? mantissa(1, 1000) : mantissa(q_lo, q_hi);
        int128 p = price(sa);
        switch (abs_q == 0 ? 0 : rng() % 10) {
          case 1:  // close exactly
            side = against, q = abs_q;
            break;
          case 2:  // cross: close and open the other side
            side = against, q = abs_q + q;
            break;
          case 3:  // part of it
            if (abs_q > 1) side = against, q = uniform(1, abs_q - 1);
            break;
          case 4:  // halve: an odd cost halved is an exact half
            if (abs_q > 1) side = against, q = abs_q / 2;
            break;
          case 5:  // double at another price: (A + p) / 2, a tie when A + p is odd in units
            if (2 * abs_q <= cap) side = -against, q = abs_q;
            break;
          case 6:  // dust
            q = mantissa(1, 1000);
            break;
          default:
            break;
        }
        if (g.halves && rng() % 2 == 0) {
          // q x p = odd x 5 x 10^k: an exact half at the scale c with k = sq + sa - c - 1.
          const unsigned c = ns.scale.at(rng() % 2 ? "cost_basis" : "realized_pnl");
          const int k = static_cast<int>(sq + sa) - static_cast<int>(c) - 1;
          if (k >= 0) {
            const int a = static_cast<int>(rng() % static_cast<unsigned>(std::min(k, 4) + 1));
            q = odd(999) * ten_to(a);
            p = 5 * odd(199) * ten_to(k - a);
          }
        }
        if (q_held + side * q > cap || q_held + side * q < -cap) {  // keep it in its bounds
          side = against;
          if (q > abs_q + cap) q = abs_q;
        }
        cmd = {{"op", "fill"},
               {"ns", ns_names[key.ns]},
               {"account", key.account},
               {"instrument", g.instrument},
               {"side", side > 0 ? "buy" : "sell"},
               {"qty", format_decimal(q, sq)},
               {"price", format_decimal(p, sa)}};
        const auto fee_roll = rng() % 10;
        if (fee_roll < 6)
          cmd["fee"] = format_decimal(mantissa(0, ten_to(static_cast<int>(sf) + 1)), sf);
        else if (fee_roll < 8)  // a rebate
          cmd["fee"] = format_decimal(-mantissa(1, ten_to(static_cast<int>(sf))), sf);
        const auto id_roll = rng() % 100;
        if (!trade_ids.empty() && id_roll < 6) {
          // A redelivered trade: mostly one sent in this namespace (a duplicate), sometimes
          // one sent in another (a duplicate only if this namespace has seen it as well).
          const auto& [where, id] = trade_ids[rng() % trade_ids.size()];
          if (where == key.ns || rng() % 4 == 0) cmd["trade_id"] = id;
        } else if (id_roll < 92) {
          trade_ids.emplace_back(key.ns, "T" + std::to_string(trade_ids.size() + 1));
          cmd["trade_id"] = trade_ids.back().second;
        }
      }
      const CommandResult r = t.run(cmd.dump());
      ASSERT_NE(r.status, CommandStatus::rejected) << cmd.dump() << ": " << r.error;
      if (side != 0 && r.status == CommandStatus::applied) {
        q_held += side * q;
        ++fills;
      }
      nlohmann::json got = {{"status", std::string(to_string(r.status))}, {"count", r.count}};
      got["positions"] = nlohmann::json::object();
      std::vector<std::string> accounts;
      if (cmd.contains("account"))
        accounts.push_back(cmd["account"]);
      else
        accounts = t.writer->accounts_holding(ns.id, g.instrument);
      for (const auto& a : accounts) {
        nlohmann::json fields = nlohmann::json::object();
        if (const auto pos = t.writer->find(ns.id, a, g.instrument)) {
          for (std::size_t f = 0; f < ns.spec->fields.size(); ++f) {
            const FieldSpec& fs = ns.spec->fields[f];
            if (fs.type == FieldType::decimal && pos->has(f))
              fields[fs.name] = format_decimal(pos->values[f], fs.scale);
          }
        }
        got["positions"][ns_names[key.ns] + "|" + a + "|" + g.instrument] = fields;
      }
      out << nlohmann::json{{"cmd", cmd}, {"got", got}}.dump() << '\n';
    }
  }
  out.close();
  EXPECT_EQ(t.writer->stats().evictions, 0u);  // the reference keeps every position too
  EXPECT_GE(t.exec.counters().fills, 100'000u);
  EXPECT_GT(t.exec.counters().duplicates, 1000u);
  EXPECT_GT(t.exec.counters().marks, 5000u);
  const auto py = test::run_cli(reference + path);
  EXPECT_EQ(py.code, 0) << py.out << "(the records: " << path << ")";
  if (py.code == 0) {
    std::printf("%s", py.out.c_str());
    std::remove(path.c_str());  // kept for a look when they disagree
  }
}

// A batch: a buy of 10 SOL at 100 and its cash leg, applied whole; each command against the
// position as the batch's earlier commands leave it; one refused command refuses the batch.
TEST(ExecutorTest, ABatchIsAppliedWholeOrNotAtAll) {
  Fixture t("exec_batch");
  const std::string buy =
      R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL","side":"buy","qty":"10",)"
      R"("price":"100","fee":"0.1","trade_id":"B-1"})";
  const std::string cash =
      R"({"op":"fill","ns":"spot","account":"w1","instrument":"USDC","side":"sell",)"
      R"("qty":"1000.1","price":"1","trade_id":"B-1-cash"})";
  t.run(R"({"op":"fill","ns":"spot","account":"w1","instrument":"USDC","side":"buy",)"
        R"("qty":"5000","price":"1","trade_id":"deposit"})");
  CommandResult r = t.run(R"({"op":"batch","commands":[)" + buy + "," + cash + "]}");
  ASSERT_EQ(r.status, CommandStatus::applied) << r.error;
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_EQ(r.results[0].status, CommandStatus::applied);
  EXPECT_NE(r.results[0].version, 0u);
  EXPECT_EQ(t.field("spot", "w1", "SOL", "qty"), "10.000000000000000000");
  EXPECT_EQ(t.field("spot", "w1", "USDC", "qty"), "3999.900000000000000000");
  // Sent again (a producer that never saw the reply): both legs are duplicates, nothing moves.
  r = t.run(R"({"op":"batch","commands":[)" + buy + "," + cash + "]}");
  ASSERT_EQ(r.status, CommandStatus::applied) << r.error;
  EXPECT_EQ(r.results[0].status, CommandStatus::duplicate);
  EXPECT_EQ(r.results[1].status, CommandStatus::duplicate);
  EXPECT_EQ(t.field("spot", "w1", "USDC", "qty"), "3999.900000000000000000");
  // Two fills on one position and an add, in order; the second fill sees the first.
  r = t.run(
      R"({"op":"batch","commands":[)"
      R"({"op":"fill","ns":"spot","account":"w2","instrument":"ETH","side":"buy","qty":"2","price":"10"},)"
      R"({"op":"fill","ns":"spot","account":"w2","instrument":"ETH","side":"sell","qty":"1","price":"13"},)"
      R"({"op":"add","ns":"moonwell","account":"0xab","instrument":"USDC","field":"blocks_unhealthy","by":2},)"
      R"({"op":"add","ns":"moonwell","account":"0xab","instrument":"USDC","field":"blocks_unhealthy","by":3}]})");
  ASSERT_EQ(r.status, CommandStatus::applied) << r.error;
  EXPECT_EQ(t.field("spot", "w2", "ETH", "qty"), "1.000000000000000000");
  EXPECT_EQ(t.field("spot", "w2", "ETH", "realized_pnl"), "3.000000000000000000");
  EXPECT_EQ(t.field("moonwell", "0xab", "USDC", "blocks_unhealthy"), "5");
  EXPECT_EQ(r.results[0].version, r.results[1].version);  // one write per position
  // One command refused (the add would overflow int64): nothing of the batch is applied, and
  // the reply names the command.
  const auto sol_version = t.writer->find(0, "w1", "SOL")->version;
  r = t.run(
      R"({"op":"batch","commands":[)"
      R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL","side":"buy","qty":"1","price":"99","trade_id":"B-2"},)"
      R"({"op":"add","ns":"moonwell","account":"0xab","instrument":"USDC","field":"blocks_unhealthy","by":9223372036854775807}]})");
  ASSERT_EQ(r.status, CommandStatus::rejected);
  EXPECT_NE(r.error.find("command 1 (add)"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("would overflow int64"), std::string::npos) << r.error;
  EXPECT_EQ(t.writer->find(0, "w1", "SOL")->version, sol_version);
  EXPECT_EQ(t.field("moonwell", "0xab", "USDC", "blocks_unhealthy"), "5");
  // ... and its trade id was not remembered: the same fill alone is applied.
  EXPECT_EQ(t.run(R"({"op":"fill","ns":"spot","account":"w1","instrument":"SOL","side":"buy",)"
                  R"("qty":"1","price":"99","trade_id":"B-2"})")
                .status,
            CommandStatus::applied);
  // One trade id on two legs: refused (the second would pass for a redelivery: one-legged).
  r = t.run(
      R"({"op":"batch","commands":[)"
      R"({"op":"fill","ns":"spot","account":"w5","instrument":"SOL","side":"buy","qty":"1","price":"99","trade_id":"SAME"},)"
      R"({"op":"fill","ns":"spot","account":"w5","instrument":"USDC","side":"sell","qty":"99","price":"1","trade_id":"SAME"}]})");
  ASSERT_EQ(r.status, CommandStatus::rejected);
  EXPECT_NE(r.error.find("command 1 (fill): trade id 'SAME' is given to two fills"),
            std::string::npos)
      << r.error;
  EXPECT_EQ(t.field("spot", "w5", "SOL", "qty"), "absent");
  // ... also when the id is one the window knows (a new user's batch, resent with its id on both
  // legs, was answered duplicate twice).
  r = t.run(
      R"({"op":"batch","commands":[)"
      R"({"op":"fill","ns":"spot","account":"w5","instrument":"SOL","side":"buy","qty":"1","price":"99","trade_id":"B-2"},)"
      R"({"op":"fill","ns":"spot","account":"w5","instrument":"USDC","side":"sell","qty":"99","price":"1","trade_id":"B-2"}]})");
  ASSERT_EQ(r.status, CommandStatus::rejected);
  EXPECT_NE(r.error.find("trade id 'B-2' is given to two fills"), std::string::npos) << r.error;
  // Erase and re-create in one batch: the position is replaced whole.
  r = t.run(
      R"({"op":"batch","commands":[{"op":"erase","ns":"spot","account":"w2","instrument":"ETH"},)"
      R"({"op":"upsert","ns":"spot","account":"w2","instrument":"ETH","fields":{"qty":"7"}}]})");
  ASSERT_EQ(r.status, CommandStatus::applied) << r.error;
  EXPECT_EQ(t.field("spot", "w2", "ETH", "qty"), "7.000000000000000000");
  EXPECT_EQ(t.field("spot", "w2", "ETH", "realized_pnl"), "unset");
  // What a batch cannot hold, and its size limit: refused by the decoder, naming the command.
  auto refused = [&](const std::string& line) {
    auto d = t.decoder.decode(line);
    if (auto* f = std::get_if<JsonDecoder::Failure>(&d)) return f->error;
    const CommandResult res = t.exec.execute(std::get<DecodedLine>(d).command);
    return res.status == CommandStatus::rejected ? res.error : std::string("applied");
  };
  EXPECT_NE(refused(R"({"op":"batch","commands":[{"op":"invalidate","all":true}]})")
                .find("command 0 (invalidate): an invalidation cannot be part of a batch"),
            std::string::npos);
  EXPECT_NE(
      refused(
          R"({"op":"batch","commands":[{"op":"mark","ns":"spot","instrument":"SOL","price":"1"}]})")
          .find("a mark of every account"),
      std::string::npos);
  EXPECT_NE(refused(R"({"op":"batch","commands":[{"op":"batch","commands":[]}]})")
                .find("command 0 (batch): a batch cannot hold a batch"),
            std::string::npos);
  EXPECT_NE(refused(R"({"op":"batch","commands":[]})").find("non-empty array"), std::string::npos);
  std::string big = R"({"op":"batch","commands":[)";
  for (int i = 0; i < 65; ++i)
    big += std::string(i ? "," : "") +
           R"({"op":"upsert","ns":"spot","account":"w9","instrument":"SOL","fields":{"qty":"1"}})";
  big += "]}";
  EXPECT_NE(refused(big).find("has 65 commands; a batch has at most 64"), std::string::npos)
      << refused(big);
  EXPECT_NE(refused(R"({"op":"batch","commands":[{"op":"fill","ns":"spot","account":"w1",)"
                    R"("instrument":"SOL","side":"hold","qty":"1","price":"1"}]})")
                .find("batch: command 0 (fill): member \"side\""),
            std::string::npos);
  // The reply line lists every command's result.
  r = t.run(R"({"op":"batch","commands":[)" + buy +
            R"(,{"op":"erase","ns":"spot","account":"nobody","instrument":"SOL"}]})");
  EXPECT_EQ(encode_reply(r, "7"),
            "{\"id\":7,\"status\":\"applied\",\"count\":2,\"results\":[{\"status\":\"duplicate\"},"
            "{\"status\":\"not_found\"}]}\n");
}

// The window lives beside the segment: a writer killed with -9 after applying fills, restarted on
// the same segment, still ignores those trade ids.
TEST(ExecutorTest, TradeIdsAreStillRecognisedAfterTheWriterIsKilled) {
  ScratchSegment seg("exec_kill");
  const pid_t child = test::fork_child([&] {
    auto w = Writer::open(test::small_config(seg.name(), 256));
    TradeWindow window(seg.name(), w->stats().generation, 1024,
                       [](const PositionKey&) { return 0; });
    CommandExecutor exec(*w, &window);
    JsonDecoder dec(w->namespaces());
    for (int i = 1; i <= 50; ++i) {
      const auto line = fill_line("buy", "1", "100", "K" + std::to_string(i));
      exec.execute(std::get<DecodedLine>(dec.decode(line)).command);
    }
    ::raise(SIGKILL);  // no destructor, no close: as kill -9
    return 0;
  });
  int st = 0;
  ::waitpid(child, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st));
  auto w = Writer::open(test::small_config(seg.name(), 256));
  ASSERT_TRUE(w->stats().reattached);
  TradeWindow window(seg.name(), w->stats().generation, 1024, [&](const PositionKey& k) {
    auto p = w->find(k.ns, k.account_view(), k.instrument_view());
    return p ? p->version : 0;
  });
  EXPECT_TRUE(window.restored());
  EXPECT_EQ(window.recorded(), 50u);
  CommandExecutor exec(*w, &window);
  JsonDecoder dec(w->namespaces());
  for (int i = 1; i <= 50; ++i) {
    const auto line = fill_line("buy", "1", "100", "K" + std::to_string(i));
    EXPECT_EQ(exec.execute(std::get<DecodedLine>(dec.decode(line)).command).status,
              CommandStatus::duplicate);
  }
  EXPECT_EQ(format_decimal(w->find(0, "w1", "SOL")->values[0], 18), "50.000000000000000000");
}

}  // namespace
}  // namespace poscache::ingest
