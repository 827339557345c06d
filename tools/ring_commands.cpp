#include "tools/ring_commands.hpp"

#include <type_traits>
#include <variant>

#include "poscache/decimal.hpp"

namespace poscache::feed {

RingCommands::RingCommands(const std::string& segment, Producer& producer)
    : producer_(producer), reader_(Reader::open(segment)) {
  for (const NamespaceInfo& info : reader_.namespaces())
    specs_.push_back(NamespaceSpec{info.name, info.fields, info.stale_after, info.expire_after});
  decoder_ = std::make_unique<ingest::JsonDecoder>(specs_);
}

RingCommands::~RingCommands() = default;

RingCommands::Pushed RingCommands::push(std::string_view line, Producer::Timeout timeout) {
  auto decoded = decoder_->decode(line);
  if (auto* bad = std::get_if<ingest::JsonDecoder::Failure>(&decoded))
    return {{PushStatus::bad_input, 0}, bad->error};
  const PushResult r = push_command(std::get<ingest::DecodedLine>(decoded).command, timeout);
  if (r.status == PushStatus::ok) return {r, {}};
  if (r.status == PushStatus::full)
    return {r, "the ring stayed full for " +
                   std::to_string(std::chrono::duration<double>(timeout).count()) +
                   " s: the writer applied nothing meanwhile"};
  return {r, producer_.error()};
}

namespace {
unsigned scale_of(const NamespaceSpec& spec, const char* field) {
  for (const FieldSpec& f : spec.fields)
    if (f.name == field) return f.scale;
  return 0;  // the decoder refused a fill or mark of a namespace without the field already
}
}  // namespace

PushResult RingCommands::push_command(const ingest::Command& c, Producer::Timeout t) {
  Producer& p = producer_;
  return std::visit(
      [&](const auto& cmd) -> PushResult {
        using T = std::decay_t<decltype(cmd)>;
        if constexpr (std::is_same_v<T, Update>) {
          return p.push(cmd, t);
        } else if constexpr (std::is_same_v<T, Erase>) {
          return p.erase(specs_[cmd.key.ns].name, cmd.key.account, cmd.key.instrument, t);
        } else if constexpr (std::is_same_v<T, InvalidateAccount>) {
          return p.invalidate_account(cmd.account, cmd.ns ? specs_[*cmd.ns].name : "", t);
        } else if constexpr (std::is_same_v<T, InvalidateNamespace>) {
          return p.invalidate_namespace(specs_[cmd.ns].name, t);
        } else if constexpr (std::is_same_v<T, InvalidateMatching>) {
          return p.invalidate_matching(cmd.glob, t);
        } else if constexpr (std::is_same_v<T, InvalidateAll>) {
          return p.invalidate_all(t);
        } else if constexpr (std::is_same_v<T, ingest::Add>) {
          const NamespaceSpec& s = specs_[cmd.key.ns];
          const std::string& field = s.fields[cmd.field].name;
          if (cmd.reset)
            return p.reset(s.name, cmd.key.account_view(), cmd.key.instrument_view(), field, t);
          return p.add(s.name, cmd.key.account_view(), cmd.key.instrument_view(), field, cmd.by, t);
        } else if constexpr (std::is_same_v<T, ingest::Fill>) {
          const NamespaceSpec& s = specs_[cmd.key.ns];
          return p.fill(s.name, cmd.key.account_view(), cmd.key.instrument_view(), cmd.fill.side,
                        format_decimal(cmd.fill.qty, scale_of(s, "qty")),
                        format_decimal(cmd.fill.price, scale_of(s, "avg_price")),
                        format_decimal(cmd.fill.fee, scale_of(s, "fees")), cmd.trade_id_view(), t);
        } else if constexpr (std::is_same_v<T, ingest::Group>) {
          // A batch: staged command by command, published whole (all or nothing).
          p.begin_batch();
          for (const ingest::Command& sub : cmd.commands) push_command(sub, t);
          return p.end_batch(t);
        } else {
          const NamespaceSpec& s = specs_[cmd.key.ns];
          return p.mark(s.name, cmd.key.instrument_view(),
                        format_decimal(cmd.price, scale_of(s, "mark_price")),
                        cmd.key.account_view(), t);
        }
      },
      c);
}

std::string_view reply_name(Outcome o) noexcept {
  switch (o) {
    case Outcome::stale:
      return "stale_source";
    default:
      return to_string(o);
  }
}

}  // namespace poscache::feed
