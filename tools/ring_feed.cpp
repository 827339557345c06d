#include "tools/ring_feed.hpp"

#include <cstdio>
#include <deque>
#include <map>

#include "tools/ring_commands.hpp"

namespace poscache::feed {
namespace {

using nlohmann::json;

// What a ring replay tells, per outcome, in the socket replies' words.
struct Tally {
  std::map<std::string, std::size_t> by_status;
  std::size_t refused = 0;
  void count(std::string_view status) {
    ++by_status[std::string(status)];
    if (status == "rejected") ++refused;
  }
  std::string summary() const {
    std::string s;
    for (const auto& [k, v] : by_status) s += " " + k + " " + std::to_string(v);
    return s;
  }
};

// The outcome of ring message `seq` (applied by now), counted; a refusal printed with its line.
void collect(const Producer& p, std::uint64_t seq, std::size_t line, Tally& tally) {
  std::string why;
  const Outcome o = p.outcome(seq, &why);
  tally.count(reply_name(o));
  if (o == Outcome::rejected)
    std::fprintf(stderr, "poscache-feed: line %zu refused: %s\n", line, why.c_str());
}

}  // namespace

// Pushes one command, waits until the writer applied it, and reports like the socket path.
int ring_one(const std::string& segment, Producer& p, const json& cmd) {
  RingCommands ring(segment, p);
  const auto pushed = ring.push(cmd.dump(), std::chrono::seconds(10));
  if (pushed.result.status != PushStatus::ok) {
    std::fprintf(stderr, "poscache-feed: refused: %s\n", pushed.error.c_str());
    return pushed.result.status == PushStatus::bad_input ? kRefused : kUnreachable;
  }
  const std::uint64_t seq = pushed.result.seq;
  const auto w = p.wait_applied(seq, std::chrono::seconds(10));
  if (w != WaitStatus::done) {
    std::fprintf(stderr, "poscache-feed: %s\n",
                 w == WaitStatus::dropped ? p.stats().last_error.c_str()
                                          : "the writer did not apply the command within 10 s");
    return kUnreachable;
  }
  std::string why;
  const Outcome o = p.outcome(seq, &why);
  if (o == Outcome::rejected) {
    std::fprintf(stderr, "poscache-feed: refused: %s\n", why.c_str());
    return kRefused;
  }
  std::printf("%s (ring message %llu)\n", std::string(reply_name(o)).c_str(),
              static_cast<unsigned long long>(seq));
  return kOk;
}

// A batch through the ring: its outcome, and each command's.
int ring_batch(const std::string& segment, Producer& p, const std::string& line, std::size_t n) {
  RingCommands ring(segment, p);
  const auto pushed = ring.push(line, std::chrono::seconds(10));
  if (pushed.result.status != PushStatus::ok) {
    std::fprintf(stderr, "poscache-feed: refused: %s\n", pushed.error.c_str());
    return pushed.result.status == PushStatus::bad_input ? kRefused : kUnreachable;
  }
  const std::uint64_t seq = pushed.result.seq;
  if (p.wait_applied(seq, std::chrono::seconds(10)) != WaitStatus::done) {
    std::fprintf(stderr, "poscache-feed: the writer did not apply the batch within 10 s\n");
    return kUnreachable;
  }
  std::string why;
  if (p.outcome(seq, &why) == Outcome::rejected) {
    std::fprintf(stderr, "poscache-feed: refused: %s\n", why.c_str());
    return kRefused;
  }
  std::string out = "batch of " + std::to_string(n) + ":";  // each command's outcome
  for (std::size_t i = 0; i < n; ++i) {
    out += ' ';
    out += reply_name(p.outcome(seq + 1 + i));
  }
  std::printf("%s (ring message %llu)\n", out.c_str(), static_cast<unsigned long long>(seq));
  return kOk;
}

// A JSON-lines file through the ring: every line decoded as the socket decodes it, pushed in
// order, waiting for room as long as `timeout` whatever the command; every line's outcome read
// back before its slot is reused.
int ring_replay(const std::string& segment, Producer& p, std::istream& in,
                std::chrono::nanoseconds timeout, std::uint64_t capacity) {
  RingCommands ring(segment, p);
  std::deque<std::pair<std::uint64_t, std::size_t>> pending;  // (ring sequence, file line)
  Tally tally;
  std::size_t line_no = 0, replayed = 0;
  std::uint64_t last = 0;
  // Reads the outcomes of every message up to `upto` (waiting until they are applied).
  auto settle = [&](std::uint64_t upto) -> bool {
    if (pending.empty() || pending.front().first > upto) return true;
    const auto w = p.wait_applied(upto, timeout);
    if (w != WaitStatus::done) {
      // Say exactly what is where: lines before the first unapplied one are applied; from it to
      // the last pushed they sit in the ring and the writer applies them when it resumes (a
      // restarted writer too: the ring is re-attached), so resending them would apply commands
      // without a trade id twice; after the last pushed, nothing was sent.
      std::size_t first = pending.back().second;
      for (const auto& [message, line] : pending) {
        if (message > p.applied()) {
          first = line;
          break;
        }
      }
      if (w == WaitStatus::dropped) {
        std::fprintf(stderr, "poscache-feed: %s\n", p.stats().last_error.c_str());
      } else {
        std::fprintf(stderr,
                     "poscache-feed: the writer applied nothing for the whole timeout; lines "
                     "%zu to %zu are in the ring and will be applied when it resumes (do not "
                     "resend them); later lines were not sent\n",
                     first, pending.back().second);
      }
      return false;
    }
    while (!pending.empty() && pending.front().first <= upto) {
      collect(p, pending.front().first, pending.front().second, tally);
      pending.pop_front();
    }
    return true;
  };
  std::string l;
  while (std::getline(in, l)) {
    ++line_no;
    if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++replayed;
    // Message last + 1 reuses the slot of last + 1 - capacity: read that one's outcome first.
    if (last + 1 > capacity && !settle(last + 1 - capacity)) return kUnreachable;
    const auto pushed = ring.push(l, timeout);
    if (pushed.result.status == PushStatus::bad_input) {
      tally.count("rejected");
      std::fprintf(stderr, "poscache-feed: line %zu refused: %s\n", line_no, pushed.error.c_str());
      continue;
    }
    if (pushed.result.status != PushStatus::ok) {  // full for the timeout, or dropped
      std::fprintf(stderr, "poscache-feed: line %zu: %s; lines from it on were not sent\n", line_no,
                   pushed.error.c_str());
      settle(last);
      std::printf("replayed %zu of the commands via ring:%s\n", replayed - 1,
                  tally.summary().c_str());
      return kUnreachable;
    }
    last = pushed.result.seq;
    pending.emplace_back(last, line_no);
  }
  if (!settle(last)) return kUnreachable;
  std::printf("replayed %zu commands via ring:%s\n", replayed, tally.summary().c_str());
  return tally.refused == 0 ? kOk : kRefused;
}

}  // namespace poscache::feed
