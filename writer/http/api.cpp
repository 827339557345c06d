#include "writer/http/api.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "reader/views/json_views.hpp"
#include "shm/values/duration.hpp"
#include "writer/http/metrics.hpp"

namespace poscache::http {

using nlohmann::ordered_json;

HttpResponse error_response(int status, std::string_view text) {
  HttpResponse r;
  r.status = status;
  // An error may quote what the caller sent: bytes that are not UTF-8 are shown as U+FFFD.
  r.body = ordered_json{{"error", std::string(text)}}.dump(-1, ' ', false,
                                                           ordered_json::error_handler_t::replace) +
           "\n";
  return r;
}

namespace {

HttpResponse json_response(int status, const ordered_json& j) {
  HttpResponse r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, ordered_json::error_handler_t::replace) + "\n";
  return r;
}

HttpResponse method_not_allowed(std::string_view method, const char* allowed) {
  HttpResponse r =
      error_response(405, "method " + std::string(method) + " is not allowed here; use " + allowed);
  r.headers.emplace_back("Allow", allowed);
  return r;
}

// Equal in time independent of where the first difference is (a token compare).
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Shown in errors: at most 80 characters of what the caller sent, control characters as '?'.
std::string shown(std::string_view v) {
  std::string out;
  for (const char c : v.substr(0, 80))
    out += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c;
  return v.size() > 80 ? out + "..." : out;
}

}  // namespace

Api::Api(const Reader& reader, std::vector<NamespaceSpec> namespaces, ApiConfig config,
         const LoopBoard* board, AdminQueue* admin, Log log)
    : reader_(reader),
      namespaces_(std::move(namespaces)),
      config_(std::move(config)),
      board_(board),
      admin_(admin),
      log_(std::move(log)),
      auth_(config_.auth, [this](const std::string& line) { log_(true, line); }),
      decoder_(namespaces_) {}

namespace {

enum class Route { metrics, health, health_live, stats, position, account, invalidate, none };

Route route_of(std::string_view path) {
  if (path == "/metrics") return Route::metrics;
  // /health/live: the writer applies (a liveness probe: restart only a dead one); /health/ready
  // and /health: the writer applies and Redis keeps up (a Redis outage is not a reason to kill a
  // cache that serves its readers, only to send traffic elsewhere).
  if (path == "/health" || path == "/health/ready") return Route::health;
  if (path == "/health/live") return Route::health_live;
  if (path == "/v1/stats") return Route::stats;
  if (path.starts_with("/v1/positions/")) return Route::position;
  if (path.starts_with("/v1/accounts/")) return Route::account;
  if (path == "/v1/invalidate") return Route::invalidate;
  return Route::none;
}

}  // namespace

HttpResponse Api::handle(const HttpRequest& req) const {
  const std::string_view path = req.path;
  // The server refuses %00 before a request gets here; a caller in process is held to it too.
  if (const std::size_t nul = path.find('\0'); nul != std::string_view::npos) {
    return error_response(400, "the path holds a NUL byte (%00) at byte " + std::to_string(nul) +
                                   ": no part of a path or key may hold NUL");
  }
  const Route route = route_of(path);
  const char* allowed = route == Route::invalidate ? "POST, OPTIONS" : "GET, HEAD, OPTIONS";
  if (req.method == "OPTIONS" && (route != Route::none || path == "*")) {
    HttpResponse r;
    r.status = 204;
    r.headers.emplace_back("Allow", path == "*" ? "GET, HEAD, POST, OPTIONS" : allowed);
    return r;
  }
  if (route == Route::none) {
    return error_response(404, "no such resource '" + shown(path) +
                                   "': GET /metrics, /health, /health/live, /health/ready, "
                                   "/v1/stats, /v1/positions/{ns}/{account}/{instrument}, "
                                   "/v1/accounts/{account}; POST /v1/invalidate");
  }
  const bool read = req.method == "GET" || req.method == "HEAD";  // HEAD: the server drops the body
  if (route == Route::invalidate ? req.method != "POST" : !read)
    return method_not_allowed(req.method, allowed);
  switch (route) {
    case Route::metrics: {
      HttpResponse r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = render_metrics(reader_, board_ ? board_->read() : LoopSnapshot{}, &counters_);
      return r;
    }
    case Route::health:
    case Route::health_live:
      return health(route == Route::health_live);
    case Route::stats:
      return stats();
    case Route::position:
      return position(path.substr(std::string_view("/v1/positions/").size()), req.query);
    case Route::account:
      return account(path.substr(std::string_view("/v1/accounts/").size()));
    case Route::invalidate:
    case Route::none:
      break;
  }
  return invalidate(req);
}

void Api::flush_logs(AuthLimiter::Clock::time_point now) const {
  auth_.flush(now);
}

HttpResponse Api::position(std::string_view rest, std::string_view query) const {
  // ?timeout=D: read-through, waiting up to D for a refresher when the copy is missing or stale;
  // ?refresh=true: fetch even a fresh copy (forced) and wait up to the timeout (default 1s).
  bool refresh = false;
  std::optional<std::chrono::nanoseconds> wait;
  for (std::size_t start = 0; start < query.size();) {
    const std::size_t amp = std::min(query.find('&', start), query.size());
    const std::string_view param = query.substr(start, amp - start);
    start = amp + 1;
    const std::size_t eq = param.find('=');
    const std::string_view key = param.substr(0, eq),
                           value = eq == std::string_view::npos ? "" : param.substr(eq + 1);
    if (key == "refresh" && (value == "true" || value == "false")) {
      refresh = value == "true";
    } else if (key == "timeout") {
      auto d = detail::parse_duration(value);
      if (!d || d->count() <= 0 || *d > std::chrono::seconds(30))
        return error_response(400, "timeout '" + shown(value) +
                                       "' must be a duration from 1ns to 30s, such as 500ms");
      wait = *d;
    } else if (!param.empty()) {
      return error_response(400, "unknown query parameter '" + shown(param) +
                                     "': this resource takes refresh=true|false and timeout=D");
    }
  }
  // {ns}/{account}/{instrument}: an instrument may hold '/' ("SOL/USDC"); the others may not.
  const std::size_t a = rest.find('/');
  const std::size_t b = a == std::string_view::npos ? a : rest.find('/', a + 1);
  if (b == std::string_view::npos) {
    return error_response(400, "expected /v1/positions/{ns}/{account}/{instrument}, got '" +
                                   shown(rest) + "' after /v1/positions/");
  }
  const std::string_view ns = rest.substr(0, a), acc = rest.substr(a + 1, b - a - 1),
                         ins = rest.substr(b + 1);
  const auto id = reader_.namespace_id(ns);
  if (!id) {
    std::string known;
    for (const auto& n : reader_.namespaces()) known += (known.empty() ? "" : ", ") + n.name;
    return error_response(404, "unknown namespace '" + shown(ns) + "': this segment has " + known);
  }
  for (const auto& check : {validate_account(acc), validate_instrument(ins)})
    if (!check) return error_response(400, "bad key: " + check.error());
  Position p;
  FetchResult f;
  if (refresh || wait) {
    f = reader_.get_or_fetch(*id, acc, ins, p, wait.value_or(std::chrono::seconds(1)), refresh);
  } else {
    f.status = reader_.get(*id, acc, ins, p);  // asks in the background by the policy
  }
  const ReadStatus st = f.status;
  // cached: answered from the segment as it was (no fetch waited for); refresh: what the fetch
  // did, when one was waited for.
  auto fetch_fields = [&](ordered_json& j) {
    j["cached"] = f.reason == FetchReason::cached;
    if (refresh || wait) j["refresh"] = std::string(to_string(f.reason));
  };
  if (has_value(st)) {
    ordered_json j = {{"status", std::string(to_string(st))}};
    j.update(views::position_json(reader_, p));
    j["age_seconds"] = static_cast<double>(p.age_ns) / 1e9;
    fetch_fields(j);
    return json_response(200, j);
  }
  const int code = st == ReadStatus::not_found ? 404 : st == ReadStatus::bad_key ? 400 : 503;
  ordered_json j = {{"status", std::string(to_string(st))},
                    {"namespace", std::string(ns)},
                    {"account", std::string(acc)},
                    {"instrument", std::string(ins)}};
  fetch_fields(j);
  return json_response(code, j);
}

HttpResponse Api::account(std::string_view acc) const {
  if (auto ok = validate_account(acc); !ok) return error_response(400, "bad key: " + ok.error());
  // One moment of the account (Reader::snapshot); an account that stays mid-change is a 503
  // naming why, as a position mid-write is.
  std::vector<Position> ps;
  const ReadStatus st = reader_.snapshot(acc, ps);
  if (st == ReadStatus::writer_busy || st == ReadStatus::writer_dead || st == ReadStatus::retired) {
    return json_response(503,
                         {{"status", std::string(to_string(st))}, {"account", std::string(acc)}});
  }
  std::sort(ps.begin(), ps.end(), [](const Position& x, const Position& y) {
    return std::make_tuple(x.ns, x.instrument_view()) < std::make_tuple(y.ns, y.instrument_view());
  });
  ordered_json list = ordered_json::array();
  for (const Position& p : ps) list.push_back(views::position_json(reader_, p));
  return json_response(200, {{"account", std::string(acc)}, {"positions", list}});
}

HttpResponse Api::stats() const {
  const SegmentStats s = reader_.stats();
  ordered_json j = views::stats_json(s, mirror_status(reader_));
  j["namespaces"] = views::namespaces_json(reader_, s);
  j["producers"] = views::producers_json(producers(reader_));
  j["refresh"] = views::refresh_json(reader_);
  ordered_json sources = ordered_json::array();
  if (board_) {
    for (const SourceReport& src : board_->read().sources) {
      sources.push_back({{"name", src.name},
                         {"received", src.counters.received},
                         {"applied", src.counters.applied},
                         {"ignored", src.counters.ignored},
                         {"rejected", src.counters.rejected}});
    }
  }
  j["sources"] = sources;
  return json_response(200, j);
}

HttpResponse Api::health(bool live_only) const {
  const views::Health h = views::health(reader_, config_.max_sync_lag);
  ordered_json j = {{"status", h.status()}};
  j.update(views::health_json(h));
  j["max_sync_lag_ns"] = config_.max_sync_lag.count();
  const bool ok = live_only ? h.writer.alive : h.ok();
  return json_response(ok ? 200 : 503, j);
}

HttpResponse Api::invalidate(const HttpRequest& req) const {
  const std::string who = "POST /v1/invalidate from " + req.remote;
  if (config_.admin_token.empty()) {
    log_(true, who + ": refused (403): no admin token file is configured");
    return error_response(403,
                          "admin endpoints are off: the writer has no [http] admin_token_file");
  }
  // Before the token is looked at: a peer over its limit learns nothing from its next guess.
  const std::string& peer = req.peer.empty() ? req.remote : req.peer;
  const auto now = AuthLimiter::Clock::now();
  if (const std::int64_t wait = auth_.refuse_for(peer, now); wait > 0) {
    HttpCounters::add(counters_.admin_rate_limited);
    HttpResponse r =
        error_response(429, "too many admin requests with a wrong or missing token from " + peer +
                                " (" + std::to_string(config_.auth.max_failures) + " per " +
                                std::to_string(config_.auth.window.count() / 1000) +
                                " s): try again in " + std::to_string(wait) + " s");
    r.headers.emplace_back("Retry-After", std::to_string(wait));
    return r;
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (!req.authorization.starts_with(kBearer) ||
      !same_secret(std::string_view(req.authorization).substr(kBearer.size()),
                   config_.admin_token)) {
    HttpCounters::add(counters_.admin_auth_failures);
    auth_.failed(peer, req.authorization.empty() ? "no Authorization header" : "wrong token", now);
    HttpResponse r = error_response(401,
                                    "an admin request needs 'Authorization: Bearer <token>' "
                                    "with the token in the writer's admin_token_file");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  auth_.succeeded(peer);
  // The body is an invalidate command of the JSON-lines format without "op": the same decoder,
  // the same rules and errors.
  ordered_json body;
  try {
    body = ordered_json::parse(req.body);
  } catch (const ordered_json::exception& e) {
    return error_response(400, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) {
    return error_response(400,
                          "the body must be a JSON object such as {\"account\":\"w1\"}, "
                          "{\"ns\":\"quotes\"}, {\"glob\":\"spot:w*:SOL\"} or {\"all\":true}");
  }
  if (body.contains("op")) return error_response(400, "the body must not name an \"op\"");
  ordered_json line = {{"op", "invalidate"}};
  line.update(body);
  std::string line_text, body_text;
  try {
    line_text = line.dump();
    body_text = body.dump();
  } catch (const ordered_json::exception&) {
    return error_response(400, "the body holds a string that is not valid UTF-8");
  }
  std::variant<ingest::DecodedLine, ingest::JsonDecoder::Failure> decoded;
  {
    std::lock_guard lock(decoder_m_);
    decoded = decoder_.decode(line_text);
  }
  if (auto* f = std::get_if<ingest::JsonDecoder::Failure>(&decoded)) {
    log_(true, who + ": refused (400): " + f->error);
    return error_response(400, f->error);
  }
  if (admin_ == nullptr) return error_response(503, "this server has no apply loop to run it");
  ingest::Command cmd = std::get<ingest::DecodedLine>(decoded).command;
  const AdminQueue::Outcome outcome = admin_->run(std::move(cmd), config_.admin_timeout);
  const std::optional<ingest::CommandResult>& r = outcome.result;
  if (!r && outcome.stopping) {
    log_(true, who + ": the writer is stopping; nothing was done");
    return error_response(503, "the writer is stopping; nothing was done");
  }
  if (!r) {
    log_(true, who + ": the apply loop did not take it in time; nothing was done");
    return error_response(503, "the writer's apply loop did not take the request within " +
                                   std::to_string(config_.admin_timeout.count()) +
                                   " ms; nothing was done");
  }
  if (r->status == ingest::CommandStatus::rejected) {
    log_(true, who + ": refused (400): " + r->error);
    return error_response(400, r->error);
  }
  log_(false, who + ": " + body_text + ": " + std::to_string(r->count) + " position(s) removed");
  return json_response(
      200, {{"status", std::string(ingest::to_string(r->status))}, {"removed", r->count}});
}

}  // namespace poscache::http
