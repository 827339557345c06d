// values/key_text and values/quote: a key's text, the globs matched against it, and how messages
// show text that came from outside.
#include "shm/values/key_text.hpp"

#include <gtest/gtest.h>

#include "shm/values/quote.hpp"

using namespace poscache::detail;

TEST(KeyTextTest, TheTextIsNsAccountInstrumentAndGlobsMatchTheWholeOfIt) {
  std::string s;
  key_text(s, "spot", "alice", "SOL");
  EXPECT_EQ(s, "spot:alice:SOL");
  EXPECT_TRUE(key_matches("spot:*:SOL", s, "spot", "alice", "SOL"));
  EXPECT_TRUE(key_matches("*:a?ice:*", s, "spot", "alice", "SOL"));
  EXPECT_TRUE(key_matches("spot:[ab]*:S[!X]L", s, "spot", "alice", "SOL"));
  EXPECT_FALSE(key_matches("spot:alice", s, "spot", "alice", "SOL"));  // the whole text
  EXPECT_FALSE(key_matches("marks:*", s, "spot", "alice", "SOL"));
  // The scratch buffer is rebuilt for every key: no text of the previous one survives.
  EXPECT_FALSE(key_matches("spot:alice:SOL", s, "spot", "al", "SOL"));
  EXPECT_EQ(s, "spot:al:SOL");
}

TEST(QuoteTest, ShowsOutsideTextQuotedCutAndWithEveryUnprintableByteInHex) {
  EXPECT_EQ(quoted("alice"), "'alice'");
  EXPECT_EQ(quoted("a\x7f"
                   "b\xc3\xa9"),
            "'a\\x7fb\\xc3\\xa9'");
  EXPECT_EQ(quoted("back\\slash"), "'back\\\\slash'");
  EXPECT_EQ(quoted("\x1b[31mred"), "'\\x1b[31mred'");  // no terminal escape reaches a log
  EXPECT_EQ(quoted(std::string(70, 'x'), 64), "'" + std::string(64, 'x') + "...'");
}
