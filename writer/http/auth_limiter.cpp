#include "writer/http/auth_limiter.hpp"

namespace poscache::http {

namespace {
constexpr const char* kOthers = "other peers";
constexpr const char* kWhat = "POST /v1/invalidate from ";
}  // namespace

AuthLimiter::Peer& AuthLimiter::entry(const std::string& peer) {
  if (auto it = peers_.find(peer); it != peers_.end()) return it->second;
  return peers_.size() < kMaxPeers ? peers_[peer] : peers_[kOthers];
}

std::int64_t AuthLimiter::refuse_for(const std::string& peer, Clock::time_point now) {
  if (limits_.max_failures <= 0) return 0;
  std::lock_guard lock(m_);
  const auto it = peers_.find(peers_.contains(peer) || peers_.size() < kMaxPeers ? peer : kOthers);
  if (it == peers_.end()) return 0;
  Peer& p = it->second;
  const auto left = p.window_start + limits_.window - now;
  if (p.failures < limits_.max_failures || left <= Clock::duration::zero()) return 0;
  ++p.unlogged_limited;
  if (!p.ever_logged || now - p.logged_at >= limits_.log_every) tell(it->first, p, now);
  return std::chrono::ceil<std::chrono::seconds>(left).count();
}

void AuthLimiter::failed(const std::string& peer, const std::string& why, Clock::time_point now) {
  std::lock_guard lock(m_);
  Peer& p = entry(peer);
  if (p.failures == 0 || now - p.window_start >= limits_.window) {
    p.window_start = now;
    p.failures = 0;
  }
  ++p.failures;
  if (p.ever_logged && now - p.logged_at < limits_.log_every) {
    ++p.unlogged_failures;  // told by flush() at the period's end
    return;
  }
  const bool others = peers_.size() >= kMaxPeers && !peers_.contains(peer);
  log_(kWhat + (others ? std::string(kOthers) : peer) + ": refused (401): " + why +
       (limits_.max_failures > 0 ? " (failure " + std::to_string(p.failures) + " of " +
                                       std::to_string(limits_.max_failures) + " allowed per " +
                                       std::to_string(limits_.window.count() / 1000) + " s)"
                                 : std::string()) +
       "; more attempts are told once per " + std::to_string(limits_.log_every.count()) + " ms");
  p.ever_logged = true;
  p.logged_at = now;
}

void AuthLimiter::succeeded(const std::string& peer) {
  std::lock_guard lock(m_);
  if (auto it = peers_.find(peer); it != peers_.end()) it->second.failures = 0;
}

void AuthLimiter::tell(const std::string& peer, Peer& p, Clock::time_point now) {
  if (p.unlogged_failures + p.unlogged_limited > 0) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - p.logged_at);
    log_(kWhat + peer + ": " + std::to_string(p.unlogged_failures) + " more refused (401) and " +
         std::to_string(p.unlogged_limited) + " rate-limited (429) in the last " +
         std::to_string(p.ever_logged ? ms.count() : 0) + " ms");
  }
  p.unlogged_failures = p.unlogged_limited = 0;
  p.ever_logged = true;
  p.logged_at = now;
}

void AuthLimiter::flush(Clock::time_point now) {
  std::lock_guard lock(m_);
  for (auto it = peers_.begin(); it != peers_.end();) {
    Peer& p = it->second;
    if (p.unlogged_failures + p.unlogged_limited > 0 && now - p.logged_at >= limits_.log_every)
      tell(it->first, p, now);
    const bool quiet = p.unlogged_failures + p.unlogged_limited == 0 &&
                       now - p.window_start >= limits_.window &&
                       now - p.logged_at >= limits_.log_every;
    it = quiet ? peers_.erase(it) : std::next(it);
  }
}

}  // namespace poscache::http
