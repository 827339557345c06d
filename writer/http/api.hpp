// The daemon's HTTP API, independent of the server library: a request in, a response out. The
// server (server.hpp) reads the request off the connection (bounded) and writes the response;
// a fuzzer calls handle() directly.
//
//   GET  /metrics                                 Prometheus text (metrics.hpp)
//   (HEAD wherever GET is: the same status and headers; OPTIONS anywhere: 204 with Allow)
//   GET  /health, /health/ready                   200 or 503, JSON: the inspector's health rule
//   GET  /health/live                             200 while a live writer applies (Redis aside)
//   GET  /v1/positions/{ns}/{account}/{instrument}  one position, exact decimal strings
//   GET  /v1/accounts/{account}                   every position of an account
//   GET  /v1/stats                                header, counters, namespaces, producers, sources
//   POST /v1/invalidate                           admin: {"account":..[,"ns":..]} | {"ns":..} |
//                                                 {"glob":..} | {"all":true}; needs
//                                                 "Authorization: Bearer <token>" and a token file;
//                                                 wrong tokens are rate-limited per peer (429)
//
// Every error is a 4xx or 5xx with {"error": "..."} naming what was wrong. Handlers only read
// the segment through a read-only Reader (what any reader process does: they never wait for the
// writer, nor it for them); an invalidation is handed to the apply loop (admin_queue.hpp).
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "poscache/reader.hpp"
#include "writer/http/admin_queue.hpp"
#include "writer/http/auth_limiter.hpp"
#include "writer/http/http_counters.hpp"
#include "writer/http/loop_board.hpp"
#include "writer/ingest/json_codec.hpp"

namespace poscache::http {

inline constexpr std::size_t kMaxBody = 16 * 1024;  // larger bodies: 413

struct HttpRequest {
  std::string method;         // HEAD is answered as GET (the server sends no body)
  std::string path;           // URL-decoded, as received (not normalized)
  std::string query;          // after '?', as received ("" if none)
  std::string body;           // at most kMaxBody bytes
  std::string authorization;  // the Authorization header, "" if none
  std::string remote;         // the caller's address and port, for the log
  std::string peer;           // the caller's address alone (the token limit's key); "": remote
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Allow, ...)
};

struct ApiConfig {
  std::chrono::nanoseconds max_sync_lag = std::chrono::seconds(5);  // /health, as inspect's
  std::string admin_token;                        // empty: the admin endpoints answer 403
  std::chrono::milliseconds admin_timeout{5000};  // for the apply loop to take an invalidation
  AuthLimits auth;  // wrong-token attempts per peer, and how often their log lines are told
};

class Api {
 public:
  using Log = std::function<void(bool warn, const std::string&)>;
  // `board` and `admin` may be null (tests, the fuzzer): then the loop's series are empty and
  // invalidations answer 503.
  Api(const Reader& reader, std::vector<NamespaceSpec> namespaces, ApiConfig config,
      const LoopBoard* board, AdminQueue* admin, Log log);

  // Thread-safe: the server's workers call it from several threads.
  HttpResponse handle(const HttpRequest& req) const;

  // The server counts here too: /metrics shows it (poscache_http_*).
  [[nodiscard]] HttpCounters& counters() const noexcept { return counters_; }
  // Logs the wrong-token attempts counted in log periods that have ended (the server calls it
  // about once a second).
  void flush_logs(AuthLimiter::Clock::time_point now = AuthLimiter::Clock::now()) const;

 private:
  // GET /v1/positions/{ns}/{account}/{instrument}[?timeout=D][&refresh=true] (read-through:
  // docs/read-through.md).
  HttpResponse position(std::string_view rest, std::string_view query) const;
  HttpResponse account(std::string_view rest) const;
  HttpResponse stats() const;
  HttpResponse health(bool live_only) const;  // /health/live: the writer only
  HttpResponse invalidate(const HttpRequest& req) const;

  const Reader& reader_;
  std::vector<NamespaceSpec> namespaces_;
  ApiConfig config_;
  const LoopBoard* board_;
  AdminQueue* admin_;
  Log log_;
  mutable HttpCounters counters_;
  mutable AuthLimiter auth_;
  mutable std::mutex decoder_m_;  // the admin path's decoder (one thread at a time)
  mutable ingest::JsonDecoder decoder_;
};

// {"error": text} with `status`.
HttpResponse error_response(int status, std::string_view text);

}  // namespace poscache::http
