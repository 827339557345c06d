// Applies ingest commands (writer/ingest/command.hpp) to a Writer: the one place where every
// source's commands become table writes. Upserts, erases and invalidations go to the Writer as
// they are; add, fill and mark are read-modify-writes on the writer's own copy of the position
// (Writer::find), computed exactly (fill_math.hpp), then written as one merge upsert, so a
// refused command writes nothing and an accepted one is a single version.
//
// Fills that carry a trade_id are de-duplicated by a TradeWindow (trade_window.hpp) when one is
// given: a trade id seen among the last `capacity` such fills is ignored and counted, also after
// the writer was killed and restarted.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "poscache/writer.hpp"
#include "writer/ingest/command.hpp"
#include "writer/ingest/trade_window.hpp"

namespace poscache::ingest {

struct ExecutorCounters {
  std::uint64_t applied = 0, duplicates = 0, stale = 0, not_found = 0, rejected = 0;
  std::uint64_t fills = 0, marks = 0, adds = 0, groups = 0;
};

class CommandExecutor {
 public:
  // `window` may be null: fills are then not de-duplicated.
  CommandExecutor(Writer& writer, TradeWindow* window);

  CommandResult execute(const Command& c);
  // Told of every applied removal (erase, invalidate, a group holding an erase) after it is
  // made: the refresh broker drops answers older than them (writer/refresh/broker.hpp).
  void set_removal_observer(std::function<void(const Command&)> f) { removed_ = std::move(f); }
  // Many upserts at once through Writer::upsert_batch (the ring and socket paths' fast lane).
  // `out[i]` answers `updates[i]`.
  void upsert_batch(std::span<const Update> updates, std::span<CommandResult> out);

  [[nodiscard]] const ExecutorCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] Writer& writer() noexcept { return writer_; }

 private:
  CommandResult fill(const Fill& f);
  CommandResult mark(const Mark& m);
  CommandResult mark_one(const Mark& m, const TradingFields& tf, const Position& p);
  CommandResult add(const Add& a);
  CommandResult group(const Group& g);
  // The merge upsert an add or a fill makes of the position `cur` (null: absent), or why not.
  Expected<Update> add_update(const Add& a, const Position* cur);
  Expected<Update> fill_update(const Fill& f, const Position* cur);
  CommandResult from_apply(const ApplyResult& r, const char* what);
  CommandResult reject(std::string error);
  const Expected<TradingFields>& fill_fields(NamespaceId ns);
  const Expected<TradingFields>& mark_fields(NamespaceId ns);
  std::string key_problem(const PositionKey& k) const;

  CommandResult run(const Command& c);
  Writer& writer_;
  TradeWindow* window_;
  std::function<void(const Command&)> removed_;
  ExecutorCounters counters_;
  std::vector<std::optional<Expected<TradingFields>>> fill_fields_, mark_fields_;
  std::vector<ApplyResult> results_;  // upsert_batch scratch
};

// The Book (fill_math.hpp) of a position as the writer holds it (absent fields are 0).
Book book_of(const TradingFields& f, const Position* p);

}  // namespace poscache::ingest
