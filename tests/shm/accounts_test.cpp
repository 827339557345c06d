// The account index's table and its writer-side rules (shm/accounts.hpp): what a reader probes
// agrees with a reference map through inserts, head moves and backward-shift erases; the epoch
// is odd exactly while entries move; stripes open once per change and close even.
#include "shm/accounts.hpp"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

using namespace poscache::shm;

namespace {

struct Index {
  explicit Index(std::uint64_t entries, std::uint64_t stripes = 64)
      : e(entries), s(stripes), w(e.data(), entries, s.data(), stripes, &epoch) {}
  std::vector<AccountEntry> e;
  std::vector<std::uint64_t> s;
  std::uint64_t epoch = 0;
  AccountIndexWriter w;
};

}  // namespace

TEST(AccountIndexTest, AgreesWithAReferenceMapUnderRandomSetsAndErases) {
  Index ix(128);  // crowded runs, wrap-around, backward shifts
  std::unordered_map<std::uint64_t, std::pair<std::uint32_t, std::uint32_t>> ref;
  std::mt19937_64 rng(3);
  std::uint64_t epoch_moves = 0;
  for (int step = 0; step < 200'000; ++step) {
    // Few distinct hashes with clustered homes, so probe runs form and wrap.
    const std::uint64_t h = (rng() % 100) * 128 + (rng() % 3) + 120;
    const std::uint64_t before = ix.epoch;
    if (rng() % 3 == 0 || ref.size() > 100) {
      ix.w.set(h, kNil, 0);
      if (ref.erase(h)) ++epoch_moves;
    } else {
      const auto head = static_cast<std::uint32_t>(rng() % 1000);
      const auto count = static_cast<std::uint32_t>(1 + rng() % 50);
      ix.w.set(h, head, count);
      ref[h] = {head, count};
    }
    ASSERT_EQ(ix.epoch % 2, 0u) << "the epoch is even between changes";
    ASSERT_EQ(ix.epoch, before + (ix.epoch == before ? 0 : 2));
    if (step % 97 == 0) {
      for (std::uint64_t k = 0; k < 100; ++k) {
        for (std::uint64_t d = 120; d < 123; ++d) {
          const std::uint64_t key = k * 128 + d;
          const auto it = ref.find(key);
          const AccountRef got = find_account(ix.e.data(), 127, key);
          ASSERT_EQ(got.found, it != ref.end()) << "step " << step << " key " << key;
          if (got.found) {
            ASSERT_EQ(got.head, it->second.first);
            ASSERT_EQ(got.count, it->second.second);
          }
        }
      }
    }
  }
  // Every erase of a present account moved entries under the epoch (AE1-AE2), and only those.
  EXPECT_EQ(ix.epoch, 2 * epoch_moves);
}

TEST(AccountIndexTest, HashZeroIsAnOrdinaryKey) {
  Index ix(16);
  ix.w.set(0, 5, 1);
  EXPECT_EQ(find_account(ix.e.data(), 15, 0).head, 5u);
  ix.w.set(0, kNil, 0);
  EXPECT_FALSE(find_account(ix.e.data(), 15, 0).found);
}

TEST(AccountIndexTest, StripesOpenOnceAndCloseEvenAndReattachOpensAll) {
  Index ix(16, 64);
  std::uint64_t* st = ix.w.stripe_of(7);
  EXPECT_TRUE(AccountIndexWriter::open(st));
  EXPECT_FALSE(AccountIndexWriter::open(st)) << "a change opens its stripe once";
  EXPECT_EQ(*st, 1u);
  AccountIndexWriter::close(st);
  EXPECT_EQ(*st, 2u);
  // A killed writer left one stripe odd: re-attach leaves it odd, opens the rest, and closes
  // every one to a new even value; the epoch likewise.
  AccountIndexWriter::open(ix.w.stripe_of(9));
  ix.epoch = 5;
  ix.w.open_all();
  for (std::uint64_t v : ix.s) EXPECT_EQ(v % 2, 1u);
  ix.w.set(3, 1, 1);
  ix.w.set(3, kNil, 0);  // an erase inside open_all() leaves the epoch odd
  EXPECT_EQ(ix.epoch, 5u);
  ix.w.close_all();
  for (std::uint64_t v : ix.s) EXPECT_EQ(v % 2, 0u);
  EXPECT_EQ(ix.s[9], 2u);
  EXPECT_EQ(ix.s[7], 4u);
  EXPECT_EQ(ix.epoch, 6u);
}
