#include "writer/ingest/executor.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace poscache::ingest {

std::string_view command_name(const Command& c) noexcept {
  static constexpr std::string_view kNames[] = {
      "upsert",     "erase", "invalidate", "invalidate", "invalidate",
      "invalidate", "add",   "fill",       "mark",       "batch"};
  return kNames[c.index()];
}

std::string_view to_string(CommandStatus s) noexcept {
  switch (s) {
    case CommandStatus::applied:
      return "applied";
    case CommandStatus::duplicate:
      return "duplicate";
    case CommandStatus::stale_source:
      return "stale_source";
    case CommandStatus::not_found:
      return "not_found";
    case CommandStatus::rejected:
      return "rejected";
  }
  return "?";
}

Book book_of(const TradingFields& f, const Position* p) {
  Book b;
  if (p == nullptr) return b;
  b.qty = p->values[f.qty];
  b.avg_price = p->values[f.avg_price];
  b.cost_basis = p->values[f.cost_basis];
  b.realized_pnl = p->values[f.realized_pnl];
  b.fees = p->values[f.fees];
  b.has_cost = f.has_cost_field && p->has(f.cost_basis);
  if (f.mark_price && f.unrealized_pnl) {
    b.has_mark = p->has(*f.mark_price);
    b.mark_price = p->values[*f.mark_price];
    b.unrealized_pnl = p->values[*f.unrealized_pnl];
  }
  return b;
}

CommandExecutor::CommandExecutor(Writer& writer, TradeWindow* window)
    : writer_(writer),
      window_(window),
      fill_fields_(writer.namespaces().size()),
      mark_fields_(writer.namespaces().size()) {}

const Expected<TradingFields>& CommandExecutor::fill_fields(NamespaceId ns) {
  auto& slot = fill_fields_[ns];
  if (!slot) slot.emplace(TradingFields::for_fill(writer_.namespaces()[ns]));
  return *slot;
}

const Expected<TradingFields>& CommandExecutor::mark_fields(NamespaceId ns) {
  auto& slot = mark_fields_[ns];
  if (!slot) slot.emplace(TradingFields::for_mark(writer_.namespaces()[ns]));
  return *slot;
}

CommandResult CommandExecutor::reject(std::string error) {
  ++counters_.rejected;
  writer_.count_reject();
  return {CommandStatus::rejected, 0, 0, std::move(error)};
}

CommandResult CommandExecutor::from_apply(const ApplyResult& r, const char* what) {
  switch (r.status) {
    case ApplyStatus::inserted:
    case ApplyStatus::updated:
    case ApplyStatus::erased:
      ++counters_.applied;
      return {CommandStatus::applied, r.version, r.status == ApplyStatus::erased ? 1u : 0u, {}};
    case ApplyStatus::not_found:
      ++counters_.not_found;
      return {CommandStatus::not_found, 0, 0, {}};
    case ApplyStatus::stale_source:
      ++counters_.stale;
      return {CommandStatus::stale_source, 0, 0, {}};
    case ApplyStatus::bad_input:
      break;
  }
  ++counters_.rejected;  // the writer counted it in the segment already
  return {CommandStatus::rejected, 0, 0, std::string(what) + ": refused by the writer"};
}

std::string CommandExecutor::key_problem(const PositionKey& k) const {
  if (k.ns >= writer_.namespaces().size())
    return "namespace id " + std::to_string(k.ns) + " is not one of the segment's";
  if (auto ok = validate_account(k.account_view()); !ok) return ok.error();
  if (auto ok = validate_instrument(k.instrument_view()); !ok) return ok.error();
  return {};
}

CommandResult CommandExecutor::execute(const Command& c) {
  CommandResult r = run(c);
  const std::size_t kind = c.index();
  // Erase, the four invalidations, a group: whether any removal was made is the observer's to see.
  if (removed_ && r.status == CommandStatus::applied &&
      (kind == 1 || (kind >= 2 && kind <= 5) || std::holds_alternative<Group>(c)))
    removed_(c);
  return r;
}

CommandResult CommandExecutor::run(const Command& c) {
  return std::visit(
      [this](const auto& cmd) -> CommandResult {
        using T = std::decay_t<decltype(cmd)>;
        if constexpr (std::is_same_v<T, Update>) {
          ApplyResult r = writer_.upsert(cmd);
          if (r.status == ApplyStatus::bad_input) {
            // The writer refused and counted it; say why (the slow path builds the text).
            auto why = writer_.make_update(cmd.ns, cmd.account_view(), cmd.instrument_view(),
                                           cmd.fields_mask, cmd.values, cmd.source_seq, cmd.mode);
            ++counters_.rejected;
            return {CommandStatus::rejected, 0, 0,
                    why ? std::string("upsert refused") : why.error()};
          }
          return from_apply(r, "upsert");
        } else if constexpr (std::is_same_v<T, Erase>) {
          return from_apply(writer_.erase(cmd.key), "erase");
        } else if constexpr (std::is_same_v<T, InvalidateAccount>) {
          if (auto ok = validate_account(cmd.account); !ok) return reject(ok.error());
          if (cmd.ns && *cmd.ns >= writer_.namespaces().size())
            return reject("namespace id " + std::to_string(*cmd.ns) + " is unknown");
          ++counters_.applied;
          return {CommandStatus::applied, 0, writer_.invalidate_account(cmd.account, cmd.ns), {}};
        } else if constexpr (std::is_same_v<T, InvalidateNamespace>) {
          if (cmd.ns >= writer_.namespaces().size())
            return reject("namespace id " + std::to_string(cmd.ns) + " is unknown");
          ++counters_.applied;
          return {CommandStatus::applied, 0, writer_.invalidate_namespace(cmd.ns), {}};
        } else if constexpr (std::is_same_v<T, InvalidateMatching>) {
          if (cmd.glob.empty() || cmd.glob.size() > 256)
            return reject("invalidate: glob of " + std::to_string(cmd.glob.size()) +
                          " characters; it must have 1 to 256");
          ++counters_.applied;
          return {CommandStatus::applied, 0, writer_.invalidate_matching(cmd.glob), {}};
        } else if constexpr (std::is_same_v<T, InvalidateAll>) {
          ++counters_.applied;
          return {CommandStatus::applied, 0, writer_.invalidate_all(), {}};
        } else if constexpr (std::is_same_v<T, Add>) {
          return add(cmd);
        } else if constexpr (std::is_same_v<T, Fill>) {
          return fill(cmd);
        } else if constexpr (std::is_same_v<T, Mark>) {
          return mark(cmd);
        } else {
          return group(cmd);
        }
      },
      c);
}

void CommandExecutor::upsert_batch(std::span<const Update> updates, std::span<CommandResult> out) {
  results_.resize(updates.size());
  writer_.upsert_batch(updates, results_);
  for (std::size_t i = 0; i < updates.size(); ++i) {
    if (results_[i].status == ApplyStatus::bad_input) {
      const Update& u = updates[i];
      auto why = writer_.make_update(u.ns, u.account_view(), u.instrument_view(), u.fields_mask,
                                     u.values, u.source_seq, u.mode);
      ++counters_.rejected;
      out[i] = {CommandStatus::rejected, 0, 0, why ? std::string("upsert refused") : why.error()};
    } else {
      out[i] = from_apply(results_[i], "upsert");
    }
  }
}

Expected<Update> CommandExecutor::add_update(const Add& a, const Position* cur) {
  if (auto e = key_problem(a.key); !e.empty()) return fail("add: " + e);
  const NamespaceSpec& spec = writer_.namespaces()[a.key.ns];
  if (a.field >= spec.fields.size())
    return fail("add: field index " + std::to_string(a.field) + " is beyond namespace '" +
                spec.name + "'");
  const FieldSpec& fs = spec.fields[a.field];
  if (fs.type != FieldType::int64) {
    return fail("add: field '" + fs.name + "' of namespace '" + spec.name + "' is a " +
                std::string(to_string(fs.type)) + "; add works on int64 fields");
  }
  const std::int64_t before = cur ? static_cast<std::int64_t>(cur->values[a.field]) : 0;
  std::int64_t after = 0;
  if (!a.reset && __builtin_add_overflow(before, a.by, &after)) {
    return fail("add: field '" + fs.name + "' would overflow int64: " + std::to_string(before) +
                " + " + std::to_string(a.by));
  }
  int128 values[kMaxFields] = {};
  values[a.field] = after;
  auto u = writer_.make_update(a.key.ns, a.key.account_view(), a.key.instrument_view(),
                               1u << a.field, values, a.source_seq);
  if (!u) return fail("add: " + u.error());
  return u;
}

CommandResult CommandExecutor::add(const Add& a) {
  if (auto e = key_problem(a.key); !e.empty()) return reject("add: " + e);
  const auto cur = writer_.find(a.key.ns, a.key.account_view(), a.key.instrument_view());
  auto u = add_update(a, cur ? &*cur : nullptr);
  if (!u) return reject(u.error());
  ++counters_.adds;
  return from_apply(writer_.upsert(*u), "add");
}

Expected<Update> CommandExecutor::fill_update(const Fill& f, const Position* cur) {
  if (auto e = key_problem(f.key); !e.empty()) return fail("fill: " + e);
  const auto& tf = fill_fields(f.key.ns);
  if (!tf) return fail("fill: " + tf.error());
  const auto next = apply_fill(*tf, book_of(*tf, cur), f.fill);
  if (!next) return fail(next.error());
  int128 values[kMaxFields] = {};
  std::uint32_t mask = 0;
  auto put = [&](std::uint8_t field, int128 v) {
    values[field] = v;
    mask |= 1u << field;
  };
  put(tf->qty, next->qty);
  put(tf->avg_price, next->avg_price);
  put(tf->cost_basis, next->cost_basis);
  put(tf->realized_pnl, next->realized_pnl);
  put(tf->fees, next->fees);
  if (next->has_mark && tf->unrealized_pnl) put(*tf->unrealized_pnl, next->unrealized_pnl);
  auto u = writer_.make_update(f.key.ns, f.key.account_view(), f.key.instrument_view(), mask,
                               values, f.source_seq);
  if (!u) return fail("fill: " + u.error());
  return u;
}

CommandResult CommandExecutor::fill(const Fill& f) {
  if (auto e = key_problem(f.key); !e.empty()) return reject("fill: " + e);
  const auto& tf = fill_fields(f.key.ns);
  if (!tf) return reject("fill: " + tf.error());
  const bool traded = window_ != nullptr && f.trade_id_len > 0;
  TradeWindow::Id id{};
  if (traded) {
    id = TradeWindow::id(f.key.ns, f.trade_id_view());
    if (window_->contains(id)) {
      ++counters_.duplicates;
      return {CommandStatus::duplicate, 0, 0, {}};
    }
  }
  const auto cur = writer_.find(f.key.ns, f.key.account_view(), f.key.instrument_view());
  auto u = fill_update(f, cur ? &*cur : nullptr);
  if (!u) return reject(u.error());
  if (traded) window_->begin(id, f.key, cur ? cur->version : 0);  // TW1
  const ApplyResult r = writer_.upsert(*u);                       // TW2
  if (traded) {
    if (r.status == ApplyStatus::inserted || r.status == ApplyStatus::updated)
      window_->commit(r.version);  // TW3
    else
      window_->abort();
  }
  if (r.status == ApplyStatus::inserted || r.status == ApplyStatus::updated) ++counters_.fills;
  return from_apply(r, "fill");
}

CommandResult CommandExecutor::mark_one(const Mark& m, const TradingFields& tf, const Position& p) {
  const auto next = apply_mark(tf, book_of(tf, &p), m.price);
  if (!next) return reject(next.error());
  int128 values[kMaxFields] = {};
  values[*tf.mark_price] = next->mark_price;
  values[*tf.unrealized_pnl] = next->unrealized_pnl;
  const std::uint32_t mask = (1u << *tf.mark_price) | (1u << *tf.unrealized_pnl);
  auto u = writer_.make_update(m.key.ns, p.account_view(), p.instrument_view(), mask, values);
  if (!u) return reject("mark: " + u.error());
  return from_apply(writer_.upsert(*u), "mark");
}

CommandResult CommandExecutor::mark(const Mark& m) {
  if (m.key.ns >= writer_.namespaces().size())
    return reject("mark: namespace id " + std::to_string(m.key.ns) + " is unknown");
  if (auto ok = validate_instrument(m.key.instrument_view()); !ok)
    return reject("mark: " + ok.error());
  const auto& tf = mark_fields(m.key.ns);
  if (!tf) return reject("mark: " + tf.error());
  if (m.price < 0) return reject("mark: price must not be negative");
  if (!m.all_accounts()) {
    if (auto ok = validate_account(m.key.account_view()); !ok) return reject("mark: " + ok.error());
    const auto cur = writer_.find(m.key.ns, m.key.account_view(), m.key.instrument_view());
    if (!cur) {
      ++counters_.not_found;
      return {CommandStatus::not_found, 0, 0, {}};
    }
    CommandResult r = mark_one(m, *tf, *cur);
    if (r.status == CommandStatus::applied) {
      ++counters_.marks;
      r.count = 1;
    }
    return r;
  }
  // Every account holding the instrument. Each position's new values are computed before any is
  // written; one that cannot be marked (a result beyond the decimal limit) refuses the whole mark.
  const auto accounts = writer_.accounts_holding(m.key.ns, m.key.instrument_view());
  std::vector<Position> positions;
  positions.reserve(accounts.size());
  for (const auto& a : accounts) {
    auto p = writer_.find(m.key.ns, a, m.key.instrument_view());
    if (!p) continue;
    if (auto next = apply_mark(*tf, book_of(*tf, &*p), m.price); !next)
      return reject(next.error() + " (account '" + a + "')");
    positions.push_back(*p);
  }
  std::uint64_t marked = 0, version = 0;
  for (const auto& p : positions) {
    const CommandResult r = mark_one(m, *tf, p);
    if (r.status == CommandStatus::applied) {
      ++marked;
      version = r.version;
    }
  }
  counters_.marks += marked;
  return {CommandStatus::applied, version, marked, {}};
}

}  // namespace poscache::ingest
