// The refresh broker's answers (broker.hpp, RULES): a refresher's line checked whole, then
// applied against the table, or refused with its reason and the try retried.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "shm/clock.hpp"
#include "writer/refresh/broker.hpp"
#include "writer/refresh/replies.hpp"

namespace poscache::refresh {

using namespace detail;

namespace {

constexpr const char* kKinds[] = {"upsert", "erase", "absent", "error", "positions"};

// The answer's one kind, every member known for it (throws Bad naming what is wrong).
std::string kind_of(const json& j) {
  std::string kind;
  for (const char* k : kKinds) {
    if (!j.contains(k)) continue;
    if (!kind.empty()) throw Bad{"give one of upsert, erase, absent, error, positions"};
    kind = k;
  }
  for (const auto& [k, v] : j.items()) {
    const bool known = k == "op" || k == "request" ||
                       std::find(std::begin(kKinds), std::end(kKinds), k) != std::end(kKinds) ||
                       ((k == "mode" || k == "seq") && kind == "upsert") ||
                       (k == "more" && kind == "positions");
    if (!known)
      throw Bad{"member \"" + k + "\" is not one an answer" +
                (kind.empty() ? "" : " with " + kind) + " takes"};
  }
  if (j.contains("more") && !j["more"].is_boolean())
    throw Bad{"member \"more\" must be true or false; found " + shown(j["more"])};
  if (kind.empty()) throw Bad{"give one of upsert, erase, absent, error, positions"};
  return kind;
}

// One position's update from an answer's members, checked by the writer's rules (throws Bad).
Update update_of(const Writer& w, const std::string& ns_name, std::string_view account,
                 std::string_view instrument, const json& fields, const json& seq,
                 const json& mode) {
  if (!fields.is_object() || fields.empty())
    throw Bad{"fields must be a non-empty object; found " + shown(fields)};
  std::vector<std::string> names, texts;
  names.reserve(fields.size());
  texts.reserve(fields.size());
  for (const auto& [name, v] : fields.items()) {
    names.push_back(name);
    texts.push_back(value_text(name, v));
  }
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  for (std::size_t i = 0; i < names.size(); ++i) pairs.emplace_back(names[i], texts[i]);
  std::uint64_t s = 0;
  if (!seq.is_null()) {
    if (!seq.is_number_unsigned())
      throw Bad{"seq must be a non-negative integer; found " + shown(seq)};
    s = seq.get<std::uint64_t>();
  }
  UpdateMode m = UpdateMode::merge;
  if (!mode.is_null()) {
    if (mode == "replace")
      m = UpdateMode::replace;
    else if (mode != "merge")
      throw Bad{"mode must be \"merge\" or \"replace\"; found " + shown(mode)};
  }
  auto u = w.make_update(ns_name, account, instrument, pairs, s, m);
  if (!u) throw Bad{u.error()};
  return *u;
}

}  // namespace

std::string RefreshBroker::refuse(std::optional<std::uint64_t> id, const std::string& why) {
  ++c_.refused;
  if (log_) log_(LogLevel::warn, "refresh: answer refused: " + why);
  return reply_error(id, "answer: " + why);
}

std::string RefreshBroker::failed_try(Request& r, std::int64_t now, const std::string& why) {
  ++c_.errors;
  std::string reply = refuse(r.id, why);
  retry(r, now);
  flush_sends();
  return reply;
}

std::string RefreshBroker::answer(std::uint64_t client, std::string_view line,
                                  ingest::CommandExecutor& exec) {
  const json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return refuse(std::nullopt, "not a JSON object");
  if (!j.contains("request") || !j["request"].is_number_unsigned())
    return refuse(std::nullopt, "member \"request\" must be the request's number (from its fetch)");
  const auto id = j["request"].get<std::uint64_t>();
  if (!is_refresher(client)) return refuse(id, "this connection is not a registered refresher");
  auto it = requests_.find(id);
  if (it == requests_.end() || it->second.refresher != client) {
    ++c_.late;
    return refuse(id, "request " + std::to_string(id) +
                          " is not in flight to this refresher (answered, timed out and asked of "
                          "another, or never sent)");
  }
  Request& r = it->second;
  const std::int64_t now = shm::monotonic_ns();
  const std::int64_t decided_at = shm::realtime_ns();  // before anything of it is applied
  refreshers_[client].consecutive_timeouts = 0;
  refreshers_[client].unresponsive = false;
  std::string kind;
  try {
    kind = kind_of(j);
  } catch (const Bad& b) {
    return failed_try(r, now, b.error);
  }
  if (kind == "error") return answer_error(r, j, now);
  if (kind == "absent" || kind == "erase") return answer_key(r, kind, j, exec, now, decided_at);
  return answer_positions(r, kind, j, exec, now, decided_at);
}

// The refresher could not fetch: counted as the try's error and retried, the line accepted.
std::string RefreshBroker::answer_error(Request& r, const json& j, std::int64_t now) {
  const std::uint64_t id = r.id;  // retry() may end the request (its last try): r goes with it
  const std::string text =
      j["error"].is_string() ? j["error"].get<std::string>() : shown(j["error"]);
  ++c_.errors;
  if (log_)
    log_(LogLevel::info, "refresh: request " + std::to_string(id) + ": refresher error: " + text);
  retry(r, now);
  flush_sends();
  return reply_ok(id, 0, 0);
}

// "absent" or "erase": the asked key is not at the source (remembered for negative_ttl), or is to
// be erased here (unless a producer wrote it since the request went out).
std::string RefreshBroker::answer_key(Request& r, const std::string& kind, const json& j,
                                      ingest::CommandExecutor& exec, std::int64_t now,
                                      std::int64_t decided_at) {
  const std::uint64_t id = r.id;
  if (r.reason == RefreshReason::rebuild)
    return failed_try(r, now, kind + " answers a key's request, not a rebuild");
  if (!j[kind].is_boolean() || !j[kind].get<bool>())
    return failed_try(r, now, "member \"" + kind + "\" must be true");
  if (kind == "absent") {
    finish(id, PendingState::absent, decided_at);
    flush_sends();
    return reply_ok(id, 0, 0);
  }
  if (superseded(r, r.ns, r.account, r.instrument)) {
    ++c_.positions_dropped;
    finish(id, PendingState::superseded, decided_at);
    flush_sends();
    return reply_ok(id, 0, 1);
  }
  applying_ = true;
  exec.execute(ingest::Command{Erase{KeyRef{r.ns, r.account, r.instrument}}});
  applying_ = false;
  finish(id, PendingState::erased, decided_at);
  flush_sends();
  return reply_ok(id, 1, 0);
}

// "upsert" (the asked key) or "positions" (several: an account, or a rebuild's page): every
// update is built and checked first, then each applied unless a producer wrote its key since.
std::string RefreshBroker::answer_positions(Request& r, const std::string& kind, const json& j,
                                            ingest::CommandExecutor& exec, std::int64_t now,
                                            std::int64_t decided_at) {
  const std::uint64_t id = r.id;
  const std::string& ns_name = writer_.namespaces()[r.ns].name;
  const bool key_request = r.reason != RefreshReason::rebuild;
  std::vector<Update> updates;
  std::vector<bool> is_asked;
  auto add = [&](const std::string& account, const std::string& instrument, const json& fields,
                 const json& seq, const json& mode) {
    updates.push_back(update_of(writer_, ns_name, account, instrument, fields, seq, mode));
    is_asked.push_back(key_request && account == r.account && instrument == r.instrument);
  };
  try {
    const json none;
    if (kind == "upsert") {
      if (!key_request) throw Bad{"upsert answers a key's request; a rebuild takes positions"};
      add(r.account, r.instrument, j["upsert"], j.value("seq", none), j.value("mode", none));
    } else {
      const json& list = j["positions"];
      if (!list.is_array())
        throw Bad{"member \"positions\" must be an array; found " + shown(list)};
      std::size_t i = 0;
      for (const json& p : list) {
        try {
          if (!p.is_object()) throw Bad{"must be an object; found " + shown(p)};
          for (const auto& [k, v] : p.items())
            if (k != "account" && k != "instrument" && k != "fields" && k != "seq" && k != "mode")
              throw Bad{"unknown member \"" + k + "\" (account, instrument, fields, seq, mode)"};
          if (!p.contains("account") || !p["account"].is_string() || !p.contains("instrument") ||
              !p["instrument"].is_string())
            throw Bad{"account and instrument must be strings"};
          const std::string acc = p["account"].get<std::string>();
          if (key_request && acc != r.account)
            throw Bad{"account '" + acc.substr(0, 64) + "' was not asked (request " +
                      std::to_string(id) + " is for account '" + r.account + "')"};
          add(acc, p["instrument"].get<std::string>(), p.value("fields", none),
              p.value("seq", none), p.value("mode", none));
        } catch (const Bad& b) {
          throw Bad{"position " + std::to_string(i) + ": " + b.error};
        }
        ++i;
      }
    }
  } catch (const Bad& b) {
    return failed_try(r, now, b.error);
  }
  std::size_t applied = 0, dropped = 0;
  applying_ = true;
  for (std::size_t i = 0; i < updates.size(); ++i) {
    const Update& u = updates[i];
    r.asked_seen = r.asked_seen || is_asked[i];
    if (superseded(r, u.ns, u.account_view(), u.instrument_view())) {
      ++dropped;
      continue;
    }
    const ingest::CommandResult res = exec.execute(ingest::Command{u});
    if (res.status == ingest::CommandStatus::applied)
      ++applied;
    else
      ++dropped;  // stale_source: the table holds a newer source sequence
  }
  applying_ = false;
  c_.positions_applied += applied;
  c_.positions_dropped += dropped;
  r.positions += updates.size();
  if (!key_request) c_.rebuild_positions += updates.size();
  if (j.contains("more") && j["more"].get<bool>()) {
    // Progress (a rebuild, or a large account): the try's clock starts again.
    r.deadline = now + policies_[r.ns].timeout.count();
    return reply_ok(id, applied, dropped);
  }
  PendingState state = PendingState::answered;
  if (key_request && !r.asked_seen)
    state = PendingState::absent;  // the account, without the key
  else if (key_request && dropped > 0 && applied == 0)
    state = PendingState::superseded;
  finish(id, state, decided_at);
  flush_sends();
  return reply_ok(id, applied, dropped);
}

}  // namespace poscache::refresh
