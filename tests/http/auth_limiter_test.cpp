// Wrong admin tokens per peer (writer/http/auth_limiter.hpp), on a clock the test moves: the
// limit, its window, and log lines coalesced into one per period.
#include "writer/http/auth_limiter.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace poscache::http;
using namespace std::chrono_literals;

namespace {

struct AuthLimiterTest : ::testing::Test {
  std::vector<std::string> lines;
  AuthLimiter limiter{AuthLimits{3, 60'000ms, 10'000ms},
                      [this](const std::string& l) { lines.push_back(l); }};
  AuthLimiter::Clock::time_point t0 = AuthLimiter::Clock::now();
};

}  // namespace

TEST_F(AuthLimiterTest, APeerPastItsFailuresWaitsForTheWindowAndOthersDoNot) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limiter.refuse_for("10.0.0.1", t0 + 1s), 0) << i;
    limiter.failed("10.0.0.1", "wrong token", t0 + 1s);
  }
  EXPECT_EQ(limiter.refuse_for("10.0.0.1", t0 + 2s), 59);  // Retry-After: the window's rest
  EXPECT_EQ(limiter.refuse_for("10.0.0.2", t0 + 2s), 0);   // per peer
  EXPECT_EQ(limiter.refuse_for("10.0.0.1", t0 + 61s), 0);  // the window has ended
  limiter.failed("10.0.0.1", "wrong token", t0 + 61s);     // a new window: one failure
  EXPECT_EQ(limiter.refuse_for("10.0.0.1", t0 + 62s), 0);
}

TEST_F(AuthLimiterTest, ARightTokenClearsThePeersFailures) {
  limiter.failed("10.0.0.1", "wrong token", t0);
  limiter.failed("10.0.0.1", "wrong token", t0);
  limiter.succeeded("10.0.0.1");
  limiter.failed("10.0.0.1", "wrong token", t0);
  limiter.failed("10.0.0.1", "wrong token", t0);
  EXPECT_EQ(limiter.refuse_for("10.0.0.1", t0), 0);
}

TEST_F(AuthLimiterTest, AttemptsAreLoggedOncePerPeriodWithTheirCount) {
  for (int i = 0; i < 50; ++i) {
    if (limiter.refuse_for("10.0.0.1", t0 + 1ms * i) == 0)
      limiter.failed("10.0.0.1", "wrong token", t0 + 1ms * i);
  }
  ASSERT_EQ(lines.size(), 1u) << "the first is told at once, the rest wait for the period's end";
  EXPECT_NE(lines[0].find("POST /v1/invalidate from 10.0.0.1: refused (401): wrong token"),
            std::string::npos)
      << lines[0];
  limiter.flush(t0 + 5s);  // the period has not ended
  EXPECT_EQ(lines.size(), 1u);
  limiter.flush(t0 + 11s);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("10.0.0.1: 2 more refused (401) and 47 rate-limited (429) in the last"),
            std::string::npos)
      << lines[1];
  limiter.flush(t0 + 30s);  // nothing new: nothing told
  EXPECT_EQ(lines.size(), 2u);
}
