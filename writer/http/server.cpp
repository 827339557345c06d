#include "writer/http/server.hpp"

#include <netdb.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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

// A non-blocking listening socket on "host:port" (parse_listen's form; "[::1]:9108" for IPv6).
int listen_on(const std::string& listen, int& port) {
  const std::size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string service = listen.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
    throw Error("http: cannot listen on " + listen + ": " + ::gai_strerror(rc));
  std::string why = "no address";
  int fd = -1;
  for (const addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    const int one = 1;
    if (fd >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        ::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0)
      break;
    why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd < 0) throw Error("http: cannot listen on " + listen + ": " + why);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  port = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(ss).sin_port
                                       : reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
  return fd;
}

// Descriptors the rest of the daemon may hold beside the HTTP connections (segment, rings,
// Redis, sockets, logs): kept free when max_connections is fitted to RLIMIT_NOFILE.
constexpr std::size_t kOtherDescriptors = 256;

// Raises the soft RLIMIT_NOFILE to fit `max_connections` (never above the hard limit); returns
// how many connections fit.
std::size_t fit_descriptors(std::size_t max_connections, const Api::Log& log) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return max_connections;
  const rlim_t need = max_connections + kOtherDescriptors;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? need : std::min<rlim_t>(need, rl.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need) return max_connections;
  const std::size_t fit =
      rl.rlim_cur > kOtherDescriptors + 16 ? rl.rlim_cur - kOtherDescriptors : 16;
  if (log) {
    log(true, "http: RLIMIT_NOFILE is " + std::to_string(rl.rlim_cur) +
                  " (hard limit): max_connections " + std::to_string(max_connections) +
                  " lowered to " + std::to_string(fit) +
                  "; raise it (LimitNOFILE= under systemd, "
                  "ulimit -n) to " +
                  std::to_string(need));
  }
  return fit;
}

bool is_probe(const std::string& path) {
  return path == "/health" || path == "/health/live" || path == "/health/ready" ||
         path == "/metrics";
}

}  // namespace

Server::Server(const ServerConfig& config, std::unique_ptr<Api> api, Api::Log log)
    : api_(std::move(api)), log_(std::move(log)), limits_(config.limits) {
  limits_.max_connections = fit_descriptors(limits_.max_connections, log_);
  const int fd = listen_on(config.listen, port_);
  front_ = std::make_unique<Front>(
      fd, limits_, api_->counters(), [this](Job&& job) { push(std::move(job)); },
      [this] { api_->flush_logs(); }, log_);
  workers_.emplace_back([this] { work(true); });
  for (int i = 0; i < config.threads; ++i) workers_.emplace_back([this] { work(false); });
}

Server::~Server() {
  {
    std::lock_guard lock(m_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : workers_) t.join();
  front_.reset();  // closes what is left, queued jobs' connections too
  api_->flush_logs(AuthLimiter::Clock::now() + std::chrono::hours(1));
}

void Server::push(Job&& job) {
  {
    std::lock_guard lock(m_);
    (is_probe(job.request.path) ? probes_ : others_).push_back(std::move(job));
  }
  ready_.notify_all();
}

// A worker: the probes' own takes probes only; the others take probes first, then the rest.
// Queued jobs are answered before a worker stops.
void Server::work(bool probes_only) {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(m_);
      ready_.wait(lock, [&] {
        return stopping_ || !probes_.empty() || (!probes_only && !others_.empty());
      });
      std::deque<Job>& from = !probes_.empty() || probes_only ? probes_ : others_;
      if (from.empty()) return;  // stopping, nothing left
      job = std::move(from.front());
      from.pop_front();
    }
    HttpResponse r;
    try {
      r = api_->handle(job.request);
    } catch (const std::exception& e) {
      if (log_) log_(true, std::string("http: ") + e.what());
      r = error_response(500, std::string("internal error: ") + e.what());
    }
    front_->answer(job.fd, to_wire(r, job.head_only));
  }
}

}  // namespace poscache::http
