// poscache — a refresher: a process that knows a source (a broker API, a chain, a database) and
// answers the writer's requests for keys (docs/read-through.md). Link poscache::producer.
//
//   auto r = poscache::Refresher::open({.segment = "positions", .name = "alpaca",
//                                       .namespaces = {"alpaca"}});
//   for (;;) {
//     for (const poscache::FetchRequest& q : r->next(std::chrono::seconds(1))) {
//       auto pos = broker_api.position(q.account, q.instrument);   // your source
//       if (!pos) r->absent(q);
//       else r->upsert(q, {{"qty", pos->qty}, {"avg_price", pos->avg_price}});
//     }
//   }
//
// The writer sends each request to one refresher of its namespace (several may serve one) and
// retries another if this one errs, times out or goes away; answers are checked whole and an
// answer older than a producer's write of the key is dropped. Decimals are strings, exactly.
// One thread uses a Refresher.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "poscache/refresh.hpp"

namespace poscache {

struct RefresherConfig {
  std::string segment = "poscache";
  std::string name;                     // shown in the writer's log
  std::vector<std::string> namespaces;  // served: at least one
  std::string socket;                   // "" = /dev/shm/<segment>.sock
  std::chrono::milliseconds connect_timeout{2000};
};

struct FetchRequest {
  std::uint64_t id = 0;
  RefreshReason reason = RefreshReason::miss;
  std::string ns;
  std::string account, instrument;  // empty for a rebuild (the whole namespace)
  std::uint32_t attempt = 1;
  [[nodiscard]] bool rebuild() const noexcept { return reason == RefreshReason::rebuild; }
};

using Fields = std::vector<std::pair<std::string, std::string>>;  // name -> decimal text

struct FetchedPosition {
  std::string account, instrument;
  Fields fields;
};

class Refresher {
 public:
  // Connects to the writer's socket and registers; throws poscache::Error naming what failed.
  static std::unique_ptr<Refresher> open(const RefresherConfig& config);
  ~Refresher();
  Refresher(const Refresher&) = delete;
  Refresher& operator=(const Refresher&) = delete;

  // The next requests (the writer sends several at once when it has them), waiting up to
  // `timeout`; empty on timeout. Throws Error when the writer has gone.
  std::vector<FetchRequest> next(std::chrono::milliseconds timeout);

  // Answers (each sends one line; the writer's reply is read by the next next()).
  void upsert(const FetchRequest& q,
              std::span<const std::pair<std::string_view, std::string_view>> fields);
  void upsert(const FetchRequest& q,
              std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
    upsert(q, std::span(fields.begin(), fields.size()));
  }
  void absent(const FetchRequest& q);                       // the source has no such position
  void erase(const FetchRequest& q);                        // the source says it is gone: erase it
  void error(const FetchRequest& q, std::string_view why);  // retried, maybe elsewhere
  // Many positions: an account (same namespace and account as asked) or, for a rebuild, any of
  // the namespace. `more`: others follow for the same request (a rebuild's progress).
  void positions(const FetchRequest& q, std::span<const FetchedPosition> list, bool more = false);

  // Replies the writer refused (an answer it could not use), and the last one's reason.
  [[nodiscard]] std::uint64_t refused() const noexcept { return refused_; }
  [[nodiscard]] const std::string& last_refusal() const noexcept { return last_refusal_; }
  [[nodiscard]] int fd() const noexcept { return fd_; }  // readable: next() has something

 private:
  Refresher() = default;
  void send(const std::string& line);
  bool read_some(int timeout_ms);
  int fd_ = -1;
  std::string in_;
  std::uint64_t refused_ = 0;
  std::string last_refusal_;
};

}  // namespace poscache
