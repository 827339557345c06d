// shm/hash: the key hash readers and the writer must agree on bit for bit (and any other
// implementation reading a segment): XXH3-64, seed 0, over ns (2 bytes little-endian), the
// account, one 0x00 and the instrument.
#include "shm/hash.hpp"

#include <gtest/gtest.h>

#include <cstring>

using namespace poscache::shm;

TEST(HashTest, IsXxh3OverTheDocumentedBytes) {
  const unsigned char bytes[] = {0x01, 0x00, 'a', 'l', 'i', 'c', 'e', 0x00, 'S', 'O', 'L'};
  EXPECT_EQ(key_hash(1, "alice", "SOL"), XXH3_64bits(bytes, sizeof bytes));
  // Pinned: a change of algorithm, seed or byte order changes this (and must bump
  // kHashAlgorithm, which is part of the layout fingerprint).
  EXPECT_EQ(key_hash(1, "alice", "SOL"), 0xc66dec227df41116ULL);
  EXPECT_EQ(key_hash(0, "", ""), 0xeb5d658bb22f286bULL);
}

TEST(HashTest, TheSeparatorAndTheNamespaceKeepKeysApart) {
  EXPECT_NE(key_hash(0, "ab", "c"), key_hash(0, "a", "bc"));
  EXPECT_NE(key_hash(1, "a", "b"), key_hash(256, "a", "b"));  // both bytes of ns count
  EXPECT_NE(key_hash(0, "a", "b"), key_hash(1, "a", "b"));
}
