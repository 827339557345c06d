#include "writer/refresh/broker.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "shm/clock.hpp"
#include "shm/hash.hpp"
#include "writer/refresh/replies.hpp"

namespace poscache::refresh {

using namespace detail;
using shm::load_relaxed;
using shm::store_relaxed;

namespace {

constexpr std::int64_t kScanEvery = 1'000'000;      // timeouts and retries: every 1 ms
constexpr std::int64_t kReapEvery = 1'000'000'000;  // rings of readers gone: every second
constexpr std::int64_t kBackoffFirst = 10'000'000;  // 10 ms, doubling
constexpr std::uint32_t kUnresponsiveAfter = 3;     // tries in a row timed out

}  // namespace

RefreshBroker::RefreshBroker(Writer& writer, std::vector<RefreshPolicy> policies,
                             mode_t segment_mode, LogSink log)
    : writer_(writer),
      policies_(std::move(policies)),
      log_(std::move(log)),
      board_(writer.segment_name(), writer.stats().generation, segment_mode,
             static_cast<std::uint32_t>(writer.namespaces().size())),
      ns_in_flight_(writer.namespaces().size(), 0) {
  policies_.resize(writer_.namespaces().size());
  for (NamespaceId ns = 0; ns < policies_.size(); ++ns) publish_policy(ns);
}

RefreshBroker::~RefreshBroker() = default;

std::string RefreshBroker::key_of(NamespaceId ns, std::string_view account,
                                  std::string_view instrument) {
  std::string k;
  k.reserve(4 + account.size() + instrument.size());
  k += static_cast<char>(ns);
  k += account;
  k += '\0';
  k += instrument;
  return k;
}

void RefreshBroker::publish_policy(NamespaceId ns) {
  const RefreshPolicy& p = policies_[ns];
  shm::RefreshPolicyWords& w = board_.header().policy[ns];
  const auto stale_after = writer_.namespaces()[ns].stale_after.count();
  std::uint32_t serving = 0;
  for (const auto& [id, r] : refreshers_) serving += (r.serves >> ns) & 1u;
  store_relaxed(&w.on, (p.on_stale ? shm::kOnStale : 0u) | (p.on_miss ? shm::kOnMiss : 0u));
  store_relaxed(&w.ahead_ns,
                p.ahead > 0 && stale_after > 0
                    ? static_cast<std::int64_t>(p.ahead * static_cast<double>(stale_after))
                    : 0);
  store_relaxed(&w.negative_ttl_ns, p.negative_ttl.count());
  store_relaxed(&w.timeout_ns, p.timeout.count());
  store_relaxed(&w.refreshers, serving);
}

std::optional<std::string> RefreshBroker::handle(std::uint64_t client, pid_t pid,
                                                 std::string_view line,
                                                 ingest::CommandExecutor& exec) {
  // Only the op decides (a quick look first: every socket line passes here).
  if (line.find("\"answer\"") == std::string_view::npos &&
      line.find("\"refresher\"") == std::string_view::npos &&
      line.find("\"rebuild\"") == std::string_view::npos)
    return std::nullopt;
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("op") || !j["op"].is_string())
    return std::nullopt;
  const std::string op = j["op"].get<std::string>();
  try {
    if (op == "answer") return answer(client, line, exec);
    if (op == "refresher") return register_refresher(client, pid, line);
    if (op == "rebuild") return rebuild(line);
  } catch (const json::exception& e) {  // a member of an unexpected type: refused, never fatal
    applying_ = false;
    ++c_.refused;
    return reply_error(std::nullopt, op + ": " + e.what());
  }
  return std::nullopt;
}

bool RefreshBroker::is_refresher(std::uint64_t client) const noexcept {
  return refreshers_.count(client) != 0;
}

std::string RefreshBroker::register_refresher(std::uint64_t client, pid_t pid,
                                              std::string_view line) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return reply_error(std::nullopt, "refresher: not a JSON object");
  for (const auto& [k, v] : j.items())
    if (k != "op" && k != "namespaces" && k != "name")
      return reply_error(std::nullopt, "refresher: unknown member \"" + k +
                                           "\" (refresher takes namespaces, name)");
  const json* list = j.contains("namespaces") ? &j["namespaces"] : nullptr;
  if (list == nullptr || !list->is_array() || list->empty())
    return reply_error(std::nullopt,
                       "refresher: member \"namespaces\" must be a non-empty array of names");
  Refresher r;
  r.client = client;
  r.pid = pid;
  if (j.contains("name") && j["name"].is_string())
    r.name = j["name"].get<std::string>().substr(0, 64);
  for (const json& n : *list) {
    if (!n.is_string())
      return reply_error(std::nullopt, "refresher: namespace " + shown(n) + " is not a name");
    auto id = writer_.namespace_id(n.get<std::string>());
    if (!id) return reply_error(std::nullopt, "refresher: " + id.error());
    r.serves |= 1u << *id;
  }
  const bool again = refreshers_.count(client) != 0;
  if (again) r.in_flight = refreshers_[client].in_flight;
  refreshers_[client] = r;
  c_.refreshers = refreshers_.size();
  for (NamespaceId ns = 0; ns < policies_.size(); ++ns) {
    if (((r.serves >> ns) & 1u) == 0) continue;
    publish_policy(ns);
    if ((rebuild_wanted_ >> ns) & 1u) {
      rebuild_wanted_ &= ~(1u << ns);
      ask(ns, RefreshReason::rebuild, {}, {}, 0, shm::monotonic_ns(), shm::realtime_ns());
    }
  }
  if (log_)
    log_(LogLevel::info, "refresh: refresher '" + r.name + "' (pid " + std::to_string(pid) +
                             ") serves " + list->dump());
  return "{\"status\":\"applied\",\"refresher\":\"registered\"}\n";
}

void RefreshBroker::client_gone(std::uint64_t client) {
  auto it = refreshers_.find(client);
  if (it == refreshers_.end()) return;
  const std::uint32_t serves = it->second.serves;
  if (log_)
    log_(LogLevel::warn, "refresh: refresher '" + it->second.name + "' (pid " +
                             std::to_string(it->second.pid) +
                             ") is gone; its requests are retried");
  refreshers_.erase(it);
  outbox_.erase(client);
  c_.refreshers = refreshers_.size();
  for (NamespaceId ns = 0; ns < policies_.size(); ++ns)
    if ((serves >> ns) & 1u) publish_policy(ns);
  const std::int64_t now = shm::monotonic_ns();
  std::vector<std::uint64_t> ids;
  for (auto& [id, r] : requests_)
    if (r.refresher == client) ids.push_back(id);
  for (std::uint64_t id : ids) {
    auto rit = requests_.find(id);
    if (rit != requests_.end()) retry(rit->second, now);
  }
  flush_sends();
}

void RefreshBroker::rebuild_when_served(NamespaceId ns) {
  rebuild_wanted_ |= 1u << ns;
}

std::string RefreshBroker::rebuild(std::string_view line) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("ns") || !j["ns"].is_string())
    return reply_error(std::nullopt, "rebuild: member \"ns\" must name a namespace");
  auto ns = writer_.namespace_id(j["ns"].get<std::string>());
  if (!ns) return reply_error(std::nullopt, "rebuild: " + ns.error());
  bool served = false;
  for (const auto& [id, r] : refreshers_) served |= ((r.serves >> *ns) & 1u) != 0;
  if (!served)
    return reply_error(std::nullopt, "rebuild: no refresher serves namespace '" +
                                         writer_.namespaces()[*ns].name + "'");
  const std::uint64_t id = next_id_;
  ask(*ns, RefreshReason::rebuild, {}, {}, 0, shm::monotonic_ns(), shm::realtime_ns());
  flush_sends();
  if (next_id_ == id) return reply_error(std::nullopt, "rebuild: one is running already");
  return "{\"status\":\"applied\",\"request\":" + std::to_string(id) + "}\n";
}

void RefreshBroker::ask(NamespaceId ns, RefreshReason reason, std::string account,
                        std::string instrument, std::uint64_t hash, std::int64_t now_mono,
                        std::int64_t asked_at) {
  ++c_.requests[static_cast<std::size_t>(reason)];
  std::string key = reason == RefreshReason::rebuild ? std::string(1, static_cast<char>(ns)) + "*"
                                                     : key_of(ns, account, instrument);
  if (auto in = by_key_.find(key); in != by_key_.end()) {
    // Joins the request in flight; its decision is published as of this ask at the earliest, so
    // that this asker (waiting for a decision made after it asked) takes it as its own.
    Request& joined = requests_[in->second];
    joined.last_ask_ns = std::max(joined.last_ask_ns, asked_at);
    ++c_.deduplicated;
    return;
  }
  Request r;
  r.id = next_id_++;
  r.ns = ns;
  r.reason = reason;
  r.account = std::move(account);
  r.instrument = std::move(instrument);
  r.hash = hash;
  r.key = key;
  r.last_ask_ns = asked_at;
  r.baseline = writer_.next_version();
  by_key_[key] = r.id;
  Request& req = requests_.emplace(r.id, std::move(r)).first->second;
  ++c_.in_flight;
  if (reason == RefreshReason::rebuild) ++c_.rebuilds_running;
  if (req.hash != 0) board_.publish(req.hash, PendingState::pending, reason, shm::realtime_ns());
  const RefreshPolicy& p = policies_[ns];
  if (reason != RefreshReason::rebuild && ns_in_flight_[ns] >= p.max_in_flight) {
    queued_.push_back(req.id);
    ++c_.queued;
    return;
  }
  dispatch(req, now_mono);
}

void RefreshBroker::dispatch(Request& r, std::int64_t now_mono) {
  Refresher* best = nullptr;
  auto rank = [&](const Refresher& f) {  // lower is better
    const bool tried = std::find(r.tried.begin(), r.tried.end(), f.client) != r.tried.end();
    return std::tuple(tried, f.unresponsive, f.in_flight);
  };
  for (auto& [id, f] : refreshers_) {
    if (((f.serves >> r.ns) & 1u) == 0) continue;
    if (best == nullptr || rank(f) < rank(*best)) best = &f;
  }
  if (best == nullptr) {
    finish(r.id, PendingState::no_refresher);
    return;
  }
  r.refresher = best->client;
  r.retry_at = 0;
  ++r.attempts;
  if (std::find(r.tried.begin(), r.tried.end(), best->client) == r.tried.end())
    r.tried.push_back(best->client);
  r.deadline = now_mono + policies_[r.ns].timeout.count();
  ++best->in_flight;
  if (r.attempts == 1 && r.reason != RefreshReason::rebuild) ++ns_in_flight_[r.ns];
  std::string& box = outbox_[best->client];
  box += box.empty() ? "" : ",";
  box += fetch_object(r);
}

std::string RefreshBroker::fetch_object(const Request& r) const {
  json j;
  j["request"] = r.id;
  j["reason"] = std::string(to_string(r.reason));
  j["ns"] = writer_.namespaces()[r.ns].name;
  if (r.reason != RefreshReason::rebuild) {
    j["account"] = r.account;
    j["instrument"] = r.instrument;
  }
  j["attempt"] = r.attempts;
  return j.dump();
}

void RefreshBroker::flush_sends() {
  for (auto& [client, box] : outbox_) {
    if (box.empty()) continue;
    const std::string line = "{\"op\":\"fetch\",\"requests\":[" + box + "]}\n";
    box.clear();
    if (send_) send_(client, line);  // a client gone is noticed by the socket: client_gone()
    last_sent_ = shm::monotonic_ns();
  }
}

void RefreshBroker::retry(Request& r, std::int64_t now_mono) {
  if (r.refresher != 0) {
    auto it = refreshers_.find(r.refresher);
    if (it != refreshers_.end() && it->second.in_flight > 0) --it->second.in_flight;
    r.refresher = 0;
  }
  if (r.attempts > policies_[r.ns].retries) {
    finish(r.id, PendingState::failed);
    return;
  }
  bool untried = false;
  for (const auto& [id, f] : refreshers_)
    untried |= ((f.serves >> r.ns) & 1u) != 0 &&
               std::find(r.tried.begin(), r.tried.end(), id) == r.tried.end();
  if (untried || refreshers_.empty()) {
    dispatch(r, now_mono);
    return;
  }
  const std::int64_t backoff =
      std::min<std::int64_t>(kBackoffFirst << std::min<std::uint32_t>(r.attempts - 1, 20),
                             policies_[r.ns].timeout.count());
  r.retry_at = now_mono + backoff;
}

void RefreshBroker::finish(std::uint64_t id, PendingState state, std::int64_t decided_at) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Request& r = it->second;
  if (decided_at == 0) decided_at = shm::realtime_ns();
  if (r.refresher != 0) {
    auto f = refreshers_.find(r.refresher);
    if (f != refreshers_.end() && f->second.in_flight > 0) --f->second.in_flight;
  }
  if (r.reason != RefreshReason::rebuild && r.attempts > 0 && ns_in_flight_[r.ns] > 0)
    --ns_in_flight_[r.ns];
  if (r.reason == RefreshReason::rebuild) {
    --c_.rebuilds_running;
    if (log_)
      log_(state == PendingState::answered ? LogLevel::info : LogLevel::warn,
           "refresh: rebuild of '" + writer_.namespaces()[r.ns].name + "': " +
               std::string(to_string(state)) + ", " + std::to_string(r.positions) + " positions");
  }
  ++c_.answers[static_cast<std::size_t>(state)];
  --c_.in_flight;
  publish_counters();
  // decided_: an ask made before the decision (it sat in a ring) is answered by it. The time
  // is taken before an answer is applied: an ask made once the answer is visible is a new one.
  if (r.hash != 0) decided_[r.key] = decided_at;
  if (r.hash != 0) {
    board_.publish(r.hash, state, r.reason, std::max(decided_at, r.last_ask_ns));
    board_.wake(r.hash);
  }
  const NamespaceId ns = r.ns;
  by_key_.erase(r.key);
  requests_.erase(it);
  if (requests_.empty()) removed_.clear();
  // A slot of the namespace is free: the oldest queued request of it goes.
  for (std::size_t i = 0; i < queued_.size(); ++i) {
    auto qr = requests_.find(queued_[i]);
    if (qr == requests_.end() || qr->second.ns != ns ||
        ns_in_flight_[ns] >= policies_[ns].max_in_flight)
      continue;
    queued_.erase(queued_.begin() + static_cast<std::ptrdiff_t>(i));
    dispatch(qr->second, shm::monotonic_ns());
    break;
  }
}

bool RefreshBroker::superseded(const Request& r, NamespaceId ns, std::string_view account,
                               std::string_view instrument) const {
  if (r.superseded) return true;
  if (auto cur = writer_.find(ns, account, instrument)) return cur->version >= r.baseline;
  auto it = removed_.find(key_of(ns, account, instrument));
  return it != removed_.end() && it->second >= r.baseline;
}

void RefreshBroker::removed(const ingest::Command& c) {
  if (applying_ || requests_.empty()) return;
  const std::uint64_t v = writer_.next_version();
  auto each = [&](auto&& pred) {
    for (auto& [id, r] : requests_)
      if (pred(r)) r.superseded = true;
  };
  if (const auto* e = std::get_if<Erase>(&c)) {
    const std::string k = key_of(e->key.ns, e->key.account, e->key.instrument);
    removed_[k] = v;
    if (auto it = by_key_.find(k); it != by_key_.end()) requests_[it->second].superseded = true;
  } else if (const auto* a = std::get_if<InvalidateAccount>(&c)) {
    each([&](const Request& r) {
      return (r.account == a->account || r.account.empty()) && (!a->ns || *a->ns == r.ns);
    });
  } else if (const auto* n = std::get_if<InvalidateNamespace>(&c)) {
    each([&](const Request& r) { return r.ns == n->ns; });
  } else if (const auto* m = std::get_if<InvalidateMatching>(&c)) {
    each([&](const Request& r) {
      const std::string text =
          writer_.namespaces()[r.ns].name + ":" + r.account + ":" + r.instrument;
      return r.account.empty() || ::fnmatch(m->glob.c_str(), text.c_str(), 0) == 0;
    });
  } else if (std::holds_alternative<InvalidateAll>(c)) {
    each([](const Request&) { return true; });
  } else if (const auto* g = std::get_if<ingest::Group>(&c)) {
    for (const auto& sub : g->commands) removed(sub);
  }
}

std::size_t RefreshBroker::poll(ingest::CommandExecutor&, std::int64_t now_ns, std::size_t budget) {
  board_.drain_wakes();
  const std::int64_t now = shm::monotonic_ns();
  const bool all = now >= next_reap_;  // once a second, every ring (a lost doorbell)
  popped_.clear();
  std::uint64_t bad = 0;
  const std::size_t n = board_.pop(popped_, budget, all, bad);
  c_.bad_requests += bad;
  for (PoppedRequest& p : popped_) {
    // Asked before the key's last decision (the answer came while the ask sat in a ring): that
    // answer is this ask's too.
    if (auto d = decided_.find(key_of(p.ns, p.account, p.instrument));
        d != decided_.end() && p.asked_at_ns <= d->second) {
      ++c_.requests[static_cast<std::size_t>(p.reason)];
      ++c_.deduplicated;
      continue;
    }
    ask(p.ns, p.reason, std::move(p.account), std::move(p.instrument), p.hash, now, p.asked_at_ns);
  }
  if (now >= next_scan_ && !requests_.empty()) {
    next_scan_ = now + kScanEvery;
    std::vector<std::uint64_t> due;
    for (auto& [id, r] : requests_) {
      if (r.refresher != 0 && now >= r.deadline)
        due.push_back(id);
      else if (r.refresher == 0 && r.retry_at != 0 && now >= r.retry_at)
        due.push_back(id);
    }
    for (std::uint64_t id : due) {
      auto it = requests_.find(id);
      if (it == requests_.end()) continue;
      Request& r = it->second;
      if (r.refresher != 0) {  // timed out
        ++c_.timeouts;
        auto f = refreshers_.find(r.refresher);
        if (f != refreshers_.end() && ++f->second.consecutive_timeouts >= kUnresponsiveAfter &&
            !f->second.unresponsive) {
          f->second.unresponsive = true;
          if (log_)
            log_(LogLevel::warn, "refresh: refresher '" + f->second.name + "' (pid " +
                                     std::to_string(f->second.pid) +
                                     ") is unresponsive: " + std::to_string(kUnresponsiveAfter) +
                                     " tries in a row timed out");
        }
        retry(r, now);
      } else {
        dispatch(r, now);
      }
    }
  }
  if (all) {
    next_reap_ = now + kReapEvery;
    board_.reap();
    std::erase_if(decided_, [&](const auto& d) { return now_ns - d.second > 2 * kReapEvery; });
    c_.ring_full = board_.full_counts();
    c_.unresponsive = 0;
    for (const auto& [id, f] : refreshers_) c_.unresponsive += f.unresponsive;
  }
  flush_sends();
  publish_counters();
  return n;
}

void RefreshBroker::publish_counters() {
  // What readers' tools see in the file (relaxed: statistics, but stored before the pending
  // word a decision publishes, so a reader that sees the decision sees it counted).
  shm::RefreshCounters& fc = board_.header().counters;
  for (std::size_t i = 0; i < shm::kRefreshReasons; ++i)
    store_relaxed(&fc.requests[i], c_.requests[i]);
  store_relaxed(&fc.deduplicated, c_.deduplicated);
  store_relaxed(&fc.in_flight, c_.in_flight);
  for (std::size_t i = 0; i < 8; ++i) store_relaxed(&fc.answers[i], c_.answers[i]);
  store_relaxed(&fc.errors, c_.errors);
  store_relaxed(&fc.timeouts, c_.timeouts);
  store_relaxed(&fc.refused, c_.refused);
  store_relaxed(&fc.bad_requests, c_.bad_requests);
  store_relaxed(&fc.refreshers, c_.refreshers);
  store_relaxed(&fc.rebuilds_running, c_.rebuilds_running);
  store_relaxed(&fc.rebuild_positions, c_.rebuild_positions);
}

ingest::SourceCounters RefreshBroker::counters() const {
  ingest::SourceCounters s;
  for (std::uint64_t r : c_.requests) s.received += r;
  s.applied = c_.positions_applied;
  s.rejected = c_.refused + c_.bad_requests;
  return s;
}

BrokerCounters RefreshBroker::stats() const {
  return c_;
}

}  // namespace poscache::refresh
