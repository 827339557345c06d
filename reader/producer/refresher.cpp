#include "poscache/refresher.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "poscache/error.hpp"

namespace poscache {

using json = nlohmann::json;

namespace {
RefreshReason reason_of(const std::string& s) {
  if (s == "stale") return RefreshReason::stale;
  if (s == "forced") return RefreshReason::forced;
  if (s == "rebuild") return RefreshReason::rebuild;
  if (s == "ahead") return RefreshReason::ahead;
  return RefreshReason::miss;
}
}  // namespace

std::unique_ptr<Refresher> Refresher::open(const RefresherConfig& config) {
  if (config.namespaces.empty()) throw Error("refresher: give at least one namespace to serve");
  const std::string path =
      config.socket.empty() ? "/dev/shm/" + config.segment + ".sock" : config.socket;
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) throw Error("refresher: socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  std::unique_ptr<Refresher> r(new Refresher());
  const auto deadline = std::chrono::steady_clock::now() + config.connect_timeout;
  for (;;) {
    r->fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(r->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    const std::string why = std::strerror(errno);
    ::close(r->fd_);
    r->fd_ = -1;
    if (std::chrono::steady_clock::now() >= deadline)
      throw Error("refresher: cannot connect to the writer's socket " + path + ": " + why);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  json reg;
  reg["op"] = "refresher";
  reg["namespaces"] = config.namespaces;
  if (!config.name.empty()) reg["name"] = config.name;
  r->send(reg.dump() + "\n");
  // The registration's reply: the first line back (the writer answers a line before it sends
  // this connection anything else).
  while (r->in_.find('\n') == std::string::npos) {
    if (!r->read_some(static_cast<int>(config.connect_timeout.count())))
      throw Error("refresher: the writer did not answer the registration on " + path);
  }
  const std::size_t nl = r->in_.find('\n');
  json reply = json::parse(r->in_.substr(0, nl), nullptr, false);
  r->in_.erase(0, nl + 1);
  if (reply.is_discarded() || reply.value("status", "") != "applied")
    throw Error("refresher: registration refused: " + (reply.is_discarded()
                                                           ? std::string("no reply")
                                                           : reply.value("error", reply.dump())));
  return r;
}

Refresher::~Refresher() {
  if (fd_ >= 0) ::close(fd_);
}

void Refresher::send(const std::string& line) {
  std::size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw Error(std::string("refresher: the writer has gone (send: ") + std::strerror(errno) +
                  ")");
    off += static_cast<std::size_t>(n);
  }
}

bool Refresher::read_some(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  const int rc = ::poll(&p, 1, timeout_ms);
  if (rc <= 0) return false;
  char buf[65536];
  const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
  if (n == 0) throw Error("refresher: the writer closed the connection");
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return false;
    throw Error(std::string("refresher: recv: ") + std::strerror(errno));
  }
  in_.append(buf, static_cast<std::size_t>(n));
  return true;
}

std::vector<FetchRequest> Refresher::next(std::chrono::milliseconds timeout) {
  std::vector<FetchRequest> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::size_t nl;
    while ((nl = in_.find('\n')) != std::string::npos) {
      json j = json::parse(in_.substr(0, nl), nullptr, false);
      in_.erase(0, nl + 1);
      if (j.is_discarded() || !j.is_object()) continue;
      if (j.value("op", "") == "fetch" && j.contains("requests") && j["requests"].is_array()) {
        for (const json& q : j["requests"]) {
          FetchRequest r;
          r.id = q.value("request", std::uint64_t{0});
          r.reason = reason_of(q.value("reason", "miss"));
          r.ns = q.value("ns", "");
          r.account = q.value("account", "");
          r.instrument = q.value("instrument", "");
          r.attempt = q.value("attempt", 1u);
          out.push_back(std::move(r));
        }
      } else if (j.value("status", "") == "rejected") {
        ++refused_;
        last_refusal_ = j.value("error", "");
      }
    }
    if (!out.empty()) return out;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    read_some(static_cast<int>(left.count()));
  }
}

void Refresher::upsert(const FetchRequest& q,
                       std::span<const std::pair<std::string_view, std::string_view>> fields) {
  json j;
  j["op"] = "answer";
  j["request"] = q.id;
  json f = json::object();
  for (const auto& [k, v] : fields) f[std::string(k)] = std::string(v);
  j["upsert"] = f;
  send(j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

void Refresher::absent(const FetchRequest& q) {
  send("{\"op\":\"answer\",\"request\":" + std::to_string(q.id) + ",\"absent\":true}\n");
}
void Refresher::erase(const FetchRequest& q) {
  send("{\"op\":\"answer\",\"request\":" + std::to_string(q.id) + ",\"erase\":true}\n");
}
void Refresher::error(const FetchRequest& q, std::string_view why) {
  json j;
  j["op"] = "answer";
  j["request"] = q.id;
  j["error"] = std::string(why);
  send(j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

void Refresher::positions(const FetchRequest& q, std::span<const FetchedPosition> list, bool more) {
  json j;
  j["op"] = "answer";
  j["request"] = q.id;
  json arr = json::array();
  for (const FetchedPosition& p : list) {
    json f = json::object();
    for (const auto& [k, v] : p.fields) f[k] = v;
    arr.push_back({{"account", p.account}, {"instrument", p.instrument}, {"fields", f}});
  }
  j["positions"] = arr;
  if (more) j["more"] = true;
  send(j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

}  // namespace poscache
