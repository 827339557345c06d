// The refresh broker: the writer's one place of de-duplication between readers who ask for keys
// and refreshers who fetch them (docs/read-through.md; the files' protocols in shm/refresh.hpp).
//
//   readers' rings ──pop──▶ requests (one per key in flight) ──fetch──▶ refreshers (socket)
//                                 ▲                                        │
//   producers' writes ──removed───┘ (supersede)           answer ◀────────┘
//                                 └──apply (executor) ──publish (pending table) ──wake
//
// It runs on the apply thread as an ingest Source: poll() pops readers' requests, dispatches,
// times out and retries; the socket source hands it refresher registrations and answers. So an
// answer is checked against the table and applied in one step, with no producer write between.
//
// RULES
//   - One request per key in flight. A request for a key in flight is counted as de-duplicated
//     and joins it; so is one for a key decided less than a moment ago (an answer that arrived
//     while the ask was in a ring).
//   - A try goes to the refresher of the namespace with the fewest requests in flight, preferring
//     one not yet tried for this request and one that has answered lately. A try that is not
//     answered within the policy's timeout, or answered with an error, is retried on another
//     refresher (or the same after a backoff: 10 ms doubling, at most the timeout), up to the
//     policy's retries; then the key is `failed`. A refresher whose connection goes has its
//     requests retried at once; one that lets 3 tries in a row time out is `unresponsive` (logged,
//     tried last) until it answers again.
//   - An answer never overwrites a newer write: the version the table had reached when the
//     request went out is kept, and an answer for a key written since (a higher version), or
//     erased or invalidated since (the executor tells the broker), is dropped and counted
//     (`superseded`).
//   - Answers are checked whole before anything is applied: every position in the request's
//     namespace and, for a key's request, its account; values exact (decimal strings or
//     integers). A refused answer counts as the try's error.
//   - `absent` is remembered for the policy's negative_ttl (readers see it in the pending table
//     and do not ask again); `erase` also erases the key here.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "poscache/writer.hpp"
#include "writer/ingest/executor.hpp"
#include "writer/ingest/socket_source.hpp"
#include "writer/ingest/source.hpp"
#include "writer/refresh/board.hpp"

namespace poscache::refresh {

// A namespace's refresh policy ([[namespace]] refresh_* keys, --refresh).
struct RefreshPolicy {
  bool on_stale = false;  // a read that finds the entry stale asks
  bool on_miss = false;   // a read that finds no entry asks
  double ahead = 0;  // refresh-ahead: a fresh read older than this fraction of stale_after asks
  std::chrono::nanoseconds timeout = std::chrono::seconds(1);  // one try
  std::uint32_t retries = 2;                                   // tries after the first
  std::uint32_t max_in_flight = 256;  // requests of the namespace in flight; more wait their turn
  std::chrono::nanoseconds negative_ttl = std::chrono::seconds(5);  // `absent` remembered
  bool rebuild_on_empty = false;  // a writer starting on an empty segment asks for a rebuild
  [[nodiscard]] bool any() const noexcept { return on_stale || on_miss || ahead > 0; }
};

struct BrokerCounters {
  std::uint64_t requests[shm::kRefreshReasons] = {};  // by reason
  std::uint64_t deduplicated = 0, in_flight = 0, queued = 0;
  std::uint64_t answers[8] = {};  // by PendingState (answered, absent, erased, failed, ...)
  std::uint64_t errors = 0, timeouts = 0, refused = 0, late = 0, bad_requests = 0;
  std::uint64_t positions_applied = 0, positions_dropped = 0;  // of answers
  std::uint64_t ring_full = 0;                                 // readers' rings found full
  std::uint64_t refreshers = 0, unresponsive = 0;
  std::uint64_t rebuilds_running = 0, rebuild_positions = 0;
};

class RefreshBroker final : public ingest::Source, public ingest::LineHandler {
 public:
  // Sends a line to a socket client; false if it is gone.
  using Send = std::function<bool(std::uint64_t client, const std::string& line)>;

  // `policies` by namespace id (namespaces without refresh: a default RefreshPolicy).
  RefreshBroker(Writer& writer, std::vector<RefreshPolicy> policies, mode_t segment_mode,
                LogSink log);
  ~RefreshBroker() override;
  void set_send(Send send) { send_ = std::move(send); }

  // --- from the socket source (the apply thread) ---------------------------------------------
  // {"op":"refresher",...}: the reply line.
  std::string register_refresher(std::uint64_t client, pid_t pid, std::string_view line);
  // {"op":"answer",...}: the reply line.
  std::string answer(std::uint64_t client, std::string_view line, ingest::CommandExecutor& exec);
  // {"op":"rebuild","ns":...}: the reply line.
  std::string rebuild(std::string_view line);
  void client_gone(std::uint64_t client) override;
  // LineHandler: the three ops above, by "op".
  std::optional<std::string> handle(std::uint64_t client, pid_t pid, std::string_view line,
                                    ingest::CommandExecutor& exec) override;
  [[nodiscard]] bool is_refresher(std::uint64_t client) const noexcept;

  // --- from the executor: a producer's removal (erase, invalidate) ---------------------------
  void removed(const ingest::Command& c);

  // --- Source --------------------------------------------------------------------------------
  std::size_t poll(ingest::CommandExecutor& exec, std::int64_t now_ns, std::size_t budget) override;
  [[nodiscard]] std::string name() const override { return "refresh"; }
  [[nodiscard]] ingest::SourceCounters counters() const override;

  [[nodiscard]] BrokerCounters stats() const;
  [[nodiscard]] int wake_fd() const noexcept { return board_.wake_fd(); }
  // Requests are in flight and one went out within the last kAnswerWindowNs: the apply loop
  // keeps polling instead of sleeping, so a quick refresher's answer is taken at once (an
  // idle loop would add a wake-up to every read-through).
  static constexpr std::int64_t kAnswerWindowNs = 200'000;
  [[nodiscard]] bool expecting_answers(std::int64_t now_mono) const noexcept {
    return !requests_.empty() && now_mono - last_sent_ < kAnswerWindowNs;
  }
  // Rebuilds asked at start (an empty segment): sent when a refresher of the namespace comes.
  void rebuild_when_served(NamespaceId ns);

 private:
  struct Refresher {
    std::uint64_t client = 0;
    pid_t pid = 0;
    std::string name;
    std::uint32_t serves = 0;  // bit per namespace id
    std::uint32_t in_flight = 0;
    std::uint32_t consecutive_timeouts = 0;
    bool unresponsive = false;
  };
  struct Request {
    std::uint64_t id = 0;
    NamespaceId ns = 0;
    RefreshReason reason = RefreshReason::miss;
    std::string account, instrument;  // empty for a rebuild
    std::uint64_t hash = 0;
    std::string key;              // by_key_'s key
    std::uint64_t refresher = 0;  // the client asked now (0: none yet, or between tries)
    std::vector<std::uint64_t> tried;
    std::uint32_t attempts = 0;
    std::int64_t deadline = 0;   // monotonic: the try's timeout
    std::int64_t retry_at = 0;   // monotonic: when to try again (0: not waiting)
    std::uint64_t baseline = 0;  // the table's next version when the first try went out
    bool superseded = false;
    bool asked_seen = false;       // the asked key was among the positions answered so far
    std::int64_t last_ask_ns = 0;  // the latest ask joined to it (CLOCK_REALTIME)
    std::uint64_t positions = 0;   // a rebuild's, so far
  };
  void ask(NamespaceId ns, RefreshReason reason, std::string account, std::string instrument,
           std::uint64_t hash, std::int64_t now_mono, std::int64_t asked_at);
  void dispatch(Request& r, std::int64_t now_mono);
  void retry(Request& r, std::int64_t now_mono);
  // decided_at: CLOCK_REALTIME of the decision (0: now); an answer's is taken before it is applied.
  void finish(std::uint64_t id, PendingState state, std::int64_t decided_at = 0);
  bool superseded(const Request& r, NamespaceId ns, std::string_view account,
                  std::string_view instrument) const;
  // answer.cpp: an answer refused with its reason (counted), and one that is the try's error
  // (refused, then retried, maybe on another refresher); then one function per kind of answer.
  std::string refuse(std::optional<std::uint64_t> id, const std::string& why);
  std::string failed_try(Request& r, std::int64_t now, const std::string& why);
  std::string answer_error(Request& r, const nlohmann::json& j, std::int64_t now);
  std::string answer_key(Request& r, const std::string& kind, const nlohmann::json& j,
                         ingest::CommandExecutor& exec, std::int64_t now, std::int64_t decided_at);
  std::string answer_positions(Request& r, const std::string& kind, const nlohmann::json& j,
                               ingest::CommandExecutor& exec, std::int64_t now,
                               std::int64_t decided_at);
  void publish_policy(NamespaceId ns);
  void publish_counters();
  void flush_sends();
  [[nodiscard]] std::string fetch_object(const Request& r) const;
  static std::string key_of(NamespaceId ns, std::string_view account, std::string_view instrument);

  Writer& writer_;
  std::vector<RefreshPolicy> policies_;
  LogSink log_;
  RequestBoard board_;
  Send send_;
  std::map<std::uint64_t, Request> requests_;  // by id: oldest first
  std::unordered_map<std::string, std::uint64_t> by_key_;
  std::unordered_map<std::string, std::uint64_t> removed_;   // key -> the version at its removal
  std::unordered_map<std::string, std::int64_t> decided_;    // key -> when (realtime), 2 s
  std::unordered_map<std::uint64_t, Refresher> refreshers_;  // by client id
  std::unordered_map<std::uint64_t, std::string> outbox_;    // client -> requests (JSON objects)
  std::vector<std::uint32_t> ns_in_flight_;
  std::vector<std::uint64_t> queued_;  // ids waiting for a max_in_flight slot, oldest first
  std::uint32_t rebuild_wanted_ = 0;   // bit per namespace: rebuild when a refresher comes
  std::vector<PoppedRequest> popped_;
  std::uint64_t next_id_ = 1;
  std::int64_t next_scan_ = 0, next_reap_ = 0;
  std::int64_t last_sent_ = 0;  // monotonic: the last fetch line sent
  bool applying_ = false;       // an answer is being applied: its own removals are not producers'
  BrokerCounters c_;
};

}  // namespace poscache::refresh
