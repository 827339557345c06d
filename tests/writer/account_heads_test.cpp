#include "writer/account_heads.hpp"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>

using poscache::detail::AccountHeads;

TEST(AccountHeadsTest, AgreesWithAReferenceMapUnderRandomSetsAndErases) {
  AccountHeads heads(64);  // 128 entries: crowded runs, wrap-around, backward shifts
  std::unordered_map<std::uint64_t, std::uint32_t> ref;
  std::mt19937_64 rng(3);
  for (int step = 0; step < 200'000; ++step) {
    // Few distinct hashes with clustered homes, so probe runs form and wrap.
    const std::uint64_t h = (rng() % 100) * 128 + (rng() % 3) + 120;
    if (rng() % 3 == 0 || ref.size() > 100) {
      heads.erase(h);
      ref.erase(h);
    } else {
      const auto v = static_cast<std::uint32_t>(rng() % 1000);
      heads.set(h, v);
      ref[h] = v;
    }
    if (step % 97 == 0) {
      for (std::uint64_t k = 0; k < 100; ++k) {
        for (std::uint64_t d = 120; d < 123; ++d) {
          const std::uint64_t key = k * 128 + d;
          const auto it = ref.find(key);
          ASSERT_EQ(heads.find(key), it == ref.end() ? AccountHeads::kNone : it->second)
              << "step " << step;
        }
      }
    }
  }
}

TEST(AccountHeadsTest, HashZeroIsAnOrdinaryKey) {
  AccountHeads heads(8);
  heads.set(0, 5);
  EXPECT_EQ(heads.find(0), 5u);
  heads.erase(0);
  EXPECT_EQ(heads.find(0), AccountHeads::kNone);
}
