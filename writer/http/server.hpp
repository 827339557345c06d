// The daemon's HTTP listener: civetweb (Debian's libcivetweb-dev) serving the Api (api.hpp).
//
// Why civetweb: a small C library with its own worker threads, request parsing, limits and
// timeouts, packaged by Debian; the daemon's handlers are a few short functions. Boost.Beast
// (also in Debian, with the Boost already used) would need an accept loop, timeouts, body limits
// and a thread pool written here: more code of ours on a path that is not the product's.
//
// The apply loop never waits for it: handlers read the segment like any reader, the loop's
// counters come from a LoopBoard copy, and invalidations go through the AdminQueue.
#pragma once

#include <memory>
#include <string>

#include "writer/http/api.hpp"

struct mg_context;
struct mg_connection;

namespace poscache::http {

struct ServerConfig {
  std::string listen = "127.0.0.1:9108";  // host:port; port 0 picks a free one
  int threads = 2;
  int request_timeout_ms = 10'000;
};

class Server {
 public:
  // Starts listening; throws poscache::Error naming the address if it cannot.
  Server(const ServerConfig& config, std::unique_ptr<Api> api, Api::Log log);
  ~Server();  // stops: in-flight requests finish first
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] int port() const noexcept { return port_; }  // the bound port

 private:
  static int on_request(::mg_connection* conn, void* self);
  std::unique_ptr<Api> api_;
  Api::Log log_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
};

// The admin token from `path`: its first line, without surrounding whitespace. Throws
// poscache::Error if the file cannot be read, is empty, or is readable or writable by group or
// others (mode 0600 or 0400, as for an SSH key: the token is a password).
std::string read_admin_token(const std::string& path);

// "127.0.0.1:9108", "[::1]:9108", "9108" (→ 127.0.0.1:9108) or "0.0.0.0:9108"; an error names
// what is wrong.
Expected<std::string> parse_listen(std::string_view text);

}  // namespace poscache::http
