// The command executor on a real writer: what a producer's commands do to the positions readers
// see. Fills are checked against an independent reference (Python's decimal, fill_reference.py)
// over thousands of random trade sequences; de-duplication across a writer kill -9.
#include "writer/ingest/executor.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
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
  explicit Fixture(const std::string& tag, std::uint64_t capacity = 4096)
      : seg(tag),
        writer(Writer::open(test::small_config(seg.name(), capacity))),
        window(std::make_unique<TradeWindow>(seg.name(), writer->stats().generation, 1 << 16,
                                             [](const PositionKey&) { return 0; })),
        exec(*writer, window.get()),
        decoder(writer->namespaces()) {}
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

// Random trade sequences (flips, partial closes, fees, repeated trade ids, marks for one and
// every account) through the JSON decoder and the executor; every resulting position checked by
// tests/ingest/fill_reference.py with Python's decimal.
TEST(ExecutorTest, FillsAndMarksMatchAnIndependentDecimalReference) {
  Fixture t("exec_ref", 8192);
  std::mt19937_64 rng(20261130);
  const std::string path = ::testing::TempDir() + "fill_reference_" + std::to_string(::getpid());
  std::ofstream out(path);
  const char* instruments[] = {"SOL", "ETH", "BTC-USD", "JUP"};
  std::vector<std::string> trade_ids;
  auto decimal_text = [&](std::uint64_t lo, std::uint64_t hi, unsigned scale) {
    const auto m = static_cast<int128>(lo + rng() % (hi - lo + 1));
    return format_decimal(m, scale);
  };
  std::size_t commands = 0;
  for (int seq = 0; seq < 2000; ++seq) {  // a sequence: one account's trading in one instrument
    const std::string account = "acct" + std::to_string(seq % 300);
    const char* instrument = instruments[rng() % 4];
    const int n = 5 + static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) {
      nlohmann::json cmd;
      const auto roll = rng() % 100;
      if (roll < 7) {
        cmd = {{"op", "mark"},
               {"ns", "spot"},
               {"instrument", instrument},
               {"price", decimal_text(10'000, 2'000'000, 4)}};
        if (roll >= 1) cmd["account"] = account;  // 1 in 7 marks every account
      } else {
        cmd = {{"op", "fill"},
               {"ns", "spot"},
               {"account", account},
               {"instrument", instrument},
               {"side", rng() % 2 ? "buy" : "sell"},
               // mostly small, sometimes large enough to flip the position
               {"qty", decimal_text(1, rng() % 5 == 0 ? 50'000'000 : 5'000'000, 6)},
               {"price", decimal_text(10'000, 2'000'000, 4)},
               {"fee", decimal_text(0, 20'000, 6)}};
        if (rng() % 4 == 0) {  // 18-decimal quantities at prices like 101.5: exact halves to round
          cmd["qty"] = decimal_text(1, 5'000'000'000'000'000'000ull, 18);
          cmd["price"] = decimal_text(100, 20'000, 1);
        }
        if (!trade_ids.empty() && rng() % 20 == 0) {
          cmd["trade_id"] = trade_ids[rng() % trade_ids.size()];  // a redelivered trade
        } else if (rng() % 10 != 0) {
          trade_ids.push_back("T" + std::to_string(trade_ids.size() + 1));
          cmd["trade_id"] = trade_ids.back();
        }
      }
      const CommandResult r = t.run(cmd.dump());
      ASSERT_NE(r.status, CommandStatus::rejected) << cmd.dump() << ": " << r.error;
      nlohmann::json got = {{"status", std::string(to_string(r.status))}, {"count", r.count}};
      const std::string ins = cmd["instrument"];
      std::vector<std::string> accounts;
      if (cmd.contains("account"))
        accounts.push_back(cmd["account"]);
      else
        accounts = t.writer->accounts_holding(0, ins);
      for (const auto& a : accounts) {
        nlohmann::json fields = nlohmann::json::object();
        for (const char* f : {"qty", "avg_price", "cost_basis", "realized_pnl", "fees",
                              "mark_price", "unrealized_pnl"}) {
          const std::string v = t.field("spot", a, ins, f);
          if (v != "unset" && v != "absent") fields[f] = v;
        }
        got["positions"]["spot|" + a + "|" + ins] = fields;
      }
      out << nlohmann::json{{"cmd", cmd}, {"got", got}}.dump() << '\n';
      ++commands;
    }
  }
  out.close();
  EXPECT_EQ(t.writer->stats().evictions, 0u);  // the reference keeps every position too
  const auto py =
      test::run_cli("python3 " POSCACHE_SOURCE_DIR "/tests/ingest/fill_reference.py " + path);
  EXPECT_EQ(py.code, 0) << py.out;
  std::printf("%s", py.out.c_str());
  EXPECT_GT(t.exec.counters().duplicates, 50u);
  std::remove(path.c_str());
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
