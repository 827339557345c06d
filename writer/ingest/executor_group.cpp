// CommandExecutor::group: a batch of commands applied all or nothing (executor.hpp).
#include <algorithm>
#include <cstring>
#include <optional>

#include "writer/ingest/executor.hpp"

namespace poscache::ingest {

// ---- groups -------------------------------------------------------------------------------------
//
// A group is computed whole before anything is written: each command in order against the
// position as the group's earlier commands leave it (a staged copy per key), then written as one
// op per position (the staged final state: a merge of the fields the group set, a replace if the
// group replaced or erased and re-created it, or an erase) through Writer::apply, which checks
// every op before writing any and holds the accounts' snapshot stripes across the whole batch.
// So a refused command refuses the group whole, and a snapshot() reader sees all of it or none.
// Fills keep their trade-id de-duplication (a seen id, or one repeated inside the group, is that
// command's `duplicate`; the rest applies); an upsert or add whose source_seq is not newer than
// the staged one is that command's `stale_source`.

namespace {

struct Staged {
  PositionKey key;
  std::optional<Position> pos;    // as the group leaves it so far (nullopt: absent)
  std::uint64_t old_version = 0;  // in the table before the group (0: absent)
  std::uint64_t old_seq = 0;      // its source_seq before the group: what a command must pass
  std::uint32_t set_mask = 0;     // fields the group wrote
  bool replace = false;           // the group replaced or erased the position: write it whole
  bool touched = false;           // some command wrote or erased it
};

bool same_key(const PositionKey& a, const PositionKey& b) {
  return a.ns == b.ns && a.account_view() == b.account_view() &&
         a.instrument_view() == b.instrument_view();
}

// An Update's numeric values merged into (or replacing) a staged position.
void stage_update(Staged& s, const Update& u, const NamespaceSpec& spec) {
  Position p;
  if (s.pos && u.mode == UpdateMode::merge) p = *s.pos;
  if (!s.pos || u.mode == UpdateMode::replace) {
    p = Position{};
    p.ns = s.key.ns;
    p.account_len = s.key.account_len;
    p.instrument_len = s.key.instrument_len;
    std::memcpy(p.account, s.key.account, s.key.account_len);
    std::memcpy(p.instrument, s.key.instrument, s.key.instrument_len);
    p.version = s.pos ? s.pos->version : 0;
  }
  if (u.mode == UpdateMode::replace) {
    s.replace = true;
    s.set_mask = 0;
  }
  for (std::size_t f = 0; f < spec.fields.size(); ++f) {
    if (((u.fields_mask >> f) & 1u) == 0) continue;
    if (spec.fields[f].type != FieldType::text) p.values[f] = u.values[f];
  }
  // Text fields travel in their slots: keep the update's slots (numeric slots are indices).
  for (std::size_t f = 0; f < spec.fields.size(); ++f) {
    if (((u.fields_mask >> f) & 1u) == 0 || spec.fields[f].type != FieldType::text) continue;
    const std::size_t first = field_slot(spec.fields, f);
    for (std::size_t k = 0; k < slots_of(spec.fields[f]); ++k)
      p.values[first + k] = u.values[first + k];
  }
  p.fields_set = (u.mode == UpdateMode::replace ? 0u : p.fields_set) | u.fields_mask;
  if (u.source_seq != 0) p.source_seq = u.source_seq;
  s.set_mask |= u.fields_mask;
  s.pos = p;
  s.touched = true;
}

}  // namespace

CommandResult CommandExecutor::group(const Group& g) {
  const std::size_t n = g.commands.size();
  if (n == 0 || n > kMaxGroupCommands)
    return reject("batch: " + std::to_string(n) + " commands; a batch has 1 to " +
                  std::to_string(kMaxGroupCommands));
  std::vector<Staged> staged;  // a few keys: a linear search beats a map
  staged.reserve(n);
  std::vector<std::size_t> slot_of(n, SIZE_MAX);  // command -> its staged position
  std::vector<CommandResult> results(n);
  std::vector<std::uint64_t> trade_hashes;
  std::vector<TradeWindow::Fill> trades;
  std::vector<std::size_t> trade_slot;  // trade -> its staged position
  trade_hashes.reserve(n);
  trades.reserve(n);
  trade_slot.reserve(n);
  auto stage = [&](const PositionKey& k) -> Staged& {
    for (auto& s : staged)
      if (same_key(s.key, k)) return s;
    Staged s;
    s.key = k;
    s.pos = writer_.find(k.ns, k.account_view(), k.instrument_view());
    s.old_version = s.pos ? s.pos->version : 0;
    s.old_seq = s.pos ? s.pos->source_seq : 0;
    staged.push_back(s);
    return staged.back();
  };
  auto refuse = [&](std::size_t i, const Command& c, const std::string& why) {
    return reject("batch: command " + std::to_string(i) + " (" + std::string(command_name(c)) +
                  "): " + why + "; nothing of the batch was applied");
  };
  for (std::size_t i = 0; i < n; ++i) {
    const Command& c = g.commands[i];
    std::string why;
    std::visit(
        [&](const auto& cmd) {
          using T = std::decay_t<decltype(cmd)>;
          if constexpr (std::is_same_v<T, Update>) {
            auto ok = writer_.make_update(cmd.ns, cmd.account_view(), cmd.instrument_view(),
                                          cmd.fields_mask, cmd.values, cmd.source_seq, cmd.mode);
            if (!ok) {
              why = ok.error();
              return;
            }
            PositionKey k;
            k.set(cmd.ns, cmd.account_view(), cmd.instrument_view());
            Staged& s = stage(k);
            slot_of[i] = static_cast<std::size_t>(&s - staged.data());
            if (cmd.source_seq != 0 && cmd.source_seq <= s.old_seq) {
              results[i] = {CommandStatus::stale_source, 0, 0, {}};
              return;
            }
            stage_update(s, cmd, writer_.namespaces()[cmd.ns]);
            results[i].status = CommandStatus::applied;
          } else if constexpr (std::is_same_v<T, Erase>) {
            if (cmd.key.ns >= writer_.namespaces().size()) {
              why = "namespace id " + std::to_string(cmd.key.ns) + " is unknown";
              return;
            }
            PositionKey k;
            if (auto ok = validate_account(cmd.key.account); !ok) {
              why = ok.error();
              return;
            }
            if (auto ok = validate_instrument(cmd.key.instrument); !ok) {
              why = ok.error();
              return;
            }
            k.set(cmd.key.ns, cmd.key.account, cmd.key.instrument);
            Staged& s = stage(k);
            slot_of[i] = static_cast<std::size_t>(&s - staged.data());
            if (!s.pos) {
              results[i] = {CommandStatus::not_found, 0, 0, {}};
              return;
            }
            s.pos.reset();
            s.replace = true;
            s.set_mask = 0;
            s.touched = true;
            results[i] = {CommandStatus::applied, 0, 1, {}};
          } else if constexpr (std::is_same_v<T, Add> || std::is_same_v<T, Fill>) {
            if (auto e = key_problem(cmd.key); !e.empty()) {
              why = e;
              return;
            }
            Staged& s = stage(cmd.key);
            slot_of[i] = static_cast<std::size_t>(&s - staged.data());
            if constexpr (std::is_same_v<T, Add>) {
              if (cmd.source_seq != 0 && cmd.source_seq <= s.old_seq) {
                results[i] = {CommandStatus::stale_source, 0, 0, {}};
                return;
              }
            }
            Expected<Update> u = fail("");
            if constexpr (std::is_same_v<T, Add>) {
              u = add_update(cmd, s.pos ? &*s.pos : nullptr);
            } else {
              const bool traded = window_ != nullptr && cmd.trade_id_len > 0;
              TradeWindow::Id id{};
              if (traded) {
                id = TradeWindow::id(cmd.key.ns, cmd.trade_id_view());
                if (std::find(trade_hashes.begin(), trade_hashes.end(), id.hash) !=
                    trade_hashes.end()) {
                  // Two legs under one id: the second would be taken for a redelivery and the
                  // trade would land one-legged.
                  why = "trade id '" + std::string(cmd.trade_id_view()) +
                        "' is given to two fills of the batch (give each leg its own id)";
                  return;
                }
                trade_hashes.push_back(id.hash);  // a resent batch too: one id, one leg
                if (window_->contains(id)) {
                  results[i] = {CommandStatus::duplicate, 0, 0, {}};
                  return;
                }
              }
              u = fill_update(cmd, s.pos ? &*s.pos : nullptr);
              if (u && traded) {
                trades.push_back({id, &s.key, s.old_version});
                trade_slot.push_back(static_cast<std::size_t>(&s - staged.data()));
              }
            }
            if (!u) {
              why = u.error();
              return;
            }
            stage_update(s, *u, writer_.namespaces()[cmd.key.ns]);
            results[i].status = CommandStatus::applied;
          } else if constexpr (std::is_same_v<T, Mark>) {
            if (cmd.all_accounts()) {
              why =
                  "a mark of every account holding an instrument cannot be part of a batch "
                  "(give the account)";
              return;
            }
            if (auto e = key_problem(cmd.key); !e.empty()) {
              why = e;
              return;
            }
            const auto& tf = mark_fields(cmd.key.ns);
            if (!tf) {
              why = tf.error();
              return;
            }
            Staged& s = stage(cmd.key);
            slot_of[i] = static_cast<std::size_t>(&s - staged.data());
            if (!s.pos) {
              results[i] = {CommandStatus::not_found, 0, 0, {}};
              return;
            }
            const auto next = apply_mark(*tf, book_of(*tf, &*s.pos), cmd.price);
            if (!next) {
              why = next.error();
              return;
            }
            int128 values[kMaxFields] = {};
            values[*tf->mark_price] = next->mark_price;
            values[*tf->unrealized_pnl] = next->unrealized_pnl;
            auto u =
                writer_.make_update(cmd.key.ns, cmd.key.account_view(), cmd.key.instrument_view(),
                                    (1u << *tf->mark_price) | (1u << *tf->unrealized_pnl), values);
            if (!u) {
              why = u.error();
              return;
            }
            stage_update(s, *u, writer_.namespaces()[cmd.key.ns]);
            results[i] = {CommandStatus::applied, 0, 1, {}};
          } else if constexpr (std::is_same_v<T, Group>) {
            why = "a batch cannot hold a batch";
          } else {
            why = "an invalidation cannot be part of a batch (it removes many positions)";
          }
        },
        c);
    if (!why.empty()) return refuse(i, c, why);
  }
  // One op per position the group wrote, in the order first touched.
  std::vector<Op> ops;
  std::vector<std::size_t> op_slot;
  for (std::size_t k = 0; k < staged.size(); ++k) {
    Staged& s = staged[k];
    if (!s.touched) continue;
    if (!s.pos) {
      if (s.old_version == 0) continue;  // created and erased inside the group: nothing to do
      ops.push_back(Erase{KeyRef{s.key.ns, std::string(s.key.account_view()),
                                 std::string(s.key.instrument_view())}});
    } else {
      const Position& p = *s.pos;
      const std::uint32_t mask = s.replace || s.old_version == 0 ? p.fields_set : s.set_mask;
      auto u = writer_.make_update(s.key.ns, s.key.account_view(), s.key.instrument_view(), mask,
                                   p.values, p.source_seq,
                                   s.replace ? UpdateMode::replace : UpdateMode::merge);
      if (!u) return reject("batch: " + u.error() + "; nothing of the batch was applied");
      if (s.replace && s.old_version != 0) {
        // Replacing an existing position: its fields not in the final state go.
        u->mode = UpdateMode::replace;
      }
      ops.push_back(std::move(*u));
    }
    op_slot.push_back(k);
  }
  if (!trades.empty()) window_->begin(trades);  // TW1
  const BatchResult br = writer_.apply(ops);    // TW2
  if (!br.applied) {
    if (!trades.empty()) window_->abort();
    return reject("batch: " + br.error);
  }
  std::vector<std::uint64_t> version_of_slot(staged.size(), 0);
  for (std::size_t k = 0; k < ops.size(); ++k) version_of_slot[op_slot[k]] = br.results[k].version;
  if (!trades.empty()) {  // TW3, each trade with the version its position took
    std::vector<std::uint64_t> versions(trades.size());
    for (std::size_t t = 0; t < trades.size(); ++t) versions[t] = version_of_slot[trade_slot[t]];
    window_->commit(versions);
  }
  std::size_t fills = 0;
  for (std::size_t i = 0; i < n; ++i) {
    CommandResult& r = results[i];
    if (r.status == CommandStatus::applied) {
      ++counters_.applied;
      if (slot_of[i] != SIZE_MAX) r.version = version_of_slot[slot_of[i]];
      if (std::holds_alternative<Fill>(g.commands[i])) ++fills;
      if (std::holds_alternative<Mark>(g.commands[i])) ++counters_.marks;
      if (std::holds_alternative<Add>(g.commands[i])) ++counters_.adds;
    } else if (r.status == CommandStatus::duplicate) {
      ++counters_.duplicates;
    } else if (r.status == CommandStatus::stale_source) {
      ++counters_.stale;
    } else if (r.status == CommandStatus::not_found) {
      ++counters_.not_found;
    }
  }
  counters_.fills += fills;
  ++counters_.groups;
  CommandResult out{CommandStatus::applied, 0, n, {}, std::move(results)};
  return out;
}

}  // namespace poscache::ingest
