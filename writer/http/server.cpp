#include "writer/http/server.hpp"

#define MG_EXPERIMENTAL_INTERFACES 1  // mg_start2: the reason a start failed
#include <civetweb.h>
#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

#include "poscache/error.hpp"

namespace poscache::http {

Expected<std::string> parse_listen(std::string_view text) {
  std::string_view host, port = text;
  if (const std::size_t c = text.rfind(':'); c != std::string_view::npos) {
    host = text.substr(0, c);
    port = text.substr(c + 1);
  }
  int p = -1;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p < 0 || p > 65535) {
    return Failure{"http listen address '" + std::string(text) +
                   "': expected host:port such as 127.0.0.1:9108 (port 0 to 65535)"};
  }
  if (host.empty()) host = "127.0.0.1";  // localhost unless asked otherwise
  if (host == "localhost") host = "127.0.0.1";
  return std::string(host) + ":" + std::to_string(p);
}

std::string read_admin_token(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw Error("admin_token_file " + path + ": " + std::strerror(errno));
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw Error("admin_token_file " + path + " has mode " + mode +
                ": group and others must have no access (chmod 600)");
  }
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token))
    throw Error("admin_token_file " + path + ": cannot read a line from it");
  const auto first = token.find_first_not_of(" \t\r");
  const auto last = token.find_last_not_of(" \t\r");
  token = first == std::string::npos ? std::string() : token.substr(first, last - first + 1);
  if (token.size() < 16)
    throw Error("admin_token_file " + path + ": the token on its first line has " +
                std::to_string(token.size()) + " characters; at least 16 are needed");
  return token;
}

namespace {

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "";
  }
}

void send(struct mg_connection* conn, const HttpResponse& r) {
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) +
                     "\r\nContent-Type: " + r.content_type +
                     "\r\nContent-Length: " + std::to_string(r.body.size()) +
                     "\r\nCache-Control: no-store\r\nConnection: close\r\n";
  for (const auto& [k, v] : r.headers) head += k + ": " + v + "\r\n";
  head += "\r\n";
  mg_write(conn, head.data(), head.size());
  mg_write(conn, r.body.data(), r.body.size());
}

}  // namespace

Server::Server(const ServerConfig& config, std::unique_ptr<Api> api, Api::Log log)
    : api_(std::move(api)), log_(std::move(log)) {
  mg_init_library(0);
  const std::string threads = std::to_string(config.threads);
  const std::string timeout = std::to_string(config.request_timeout_ms);
  // No document_root: civetweb serves no files; every URI goes to on_request.
  const char* options[] = {"listening_ports", config.listen.c_str(), "num_threads", threads.c_str(),
                           "request_timeout_ms", timeout.c_str(), "enable_keep_alive", "no",
                           // After a reply to a request whose body was not read (413), drain
                           // the socket for at most this long before closing, not a request
                           // timeout or two: a worker is back at once.
                           "linger_timeout_ms", "500", "max_request_size",
                           "16384",  // request line and headers
                           nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = [](const struct mg_connection* conn, const char* message) {
    auto* self = static_cast<Server*>(mg_get_user_data(mg_get_context(conn)));
    if (self && self->log_) self->log_(true, std::string("http: ") + message);
    return 1;  // logged here, not on stderr
  };
  mg_error_data err{};
  char err_text[256] = {};
  err.text = err_text;
  err.text_buffer_size = sizeof err_text;
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = this;
  init.configuration_options = options;
  ctx_ = mg_start2(&init, &err);
  if (ctx_ == nullptr) {
    throw Error("http: cannot listen on " + config.listen + ": " +
                (err_text[0] ? std::string(err_text) : std::string("civetweb failed to start")));
  }
  mg_set_request_handler(ctx_, "/", &Server::on_request, this);
  mg_server_port ports[4] = {};
  if (mg_get_server_ports(ctx_, 4, ports) > 0) port_ = ports[0].port;
}

Server::~Server() {
  if (ctx_ != nullptr) mg_stop(ctx_);
}

int Server::on_request(struct mg_connection* conn, void* self_ptr) {
  auto* self = static_cast<Server*>(self_ptr);
  const mg_request_info* ri = mg_get_request_info(conn);
  try {
    HttpRequest req;
    req.method = ri->request_method ? ri->request_method : "";
    req.path = ri->local_uri_raw ? ri->local_uri_raw : (ri->local_uri ? ri->local_uri : "");
    if (ri->query_string != nullptr) req.query = ri->query_string;
    req.remote = std::string(ri->remote_addr) + ":" + std::to_string(ri->remote_port);
    if (const char* a = mg_get_header(conn, "Authorization")) req.authorization = a;
    if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      if (ri->content_length < 0) {
        send(conn, error_response(411, "a request body needs a Content-Length"));
        return 411;
      }
      if (ri->content_length > static_cast<long long>(kMaxBody)) {
        send(conn, error_response(413, "the body is " + std::to_string(ri->content_length) +
                                           " bytes; at most " + std::to_string(kMaxBody)));
        return 413;
      }
      req.body.resize(static_cast<std::size_t>(ri->content_length));
      std::size_t got = 0;
      while (got < req.body.size()) {
        const int n = mg_read(conn, req.body.data() + got, req.body.size() - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
      }
      if (got < req.body.size()) {
        send(conn, error_response(400, "the body ended after " + std::to_string(got) + " of " +
                                           std::to_string(req.body.size()) + " bytes"));
        return 400;
      }
    }
    const HttpResponse r = self->api_->handle(req);
    send(conn, r);
    return r.status;
  } catch (const std::exception& e) {
    if (self->log_) self->log_(true, std::string("http: ") + e.what());
    send(conn, error_response(500, std::string("internal error: ") + e.what()));
    return 500;
  }
}

}  // namespace poscache::http
