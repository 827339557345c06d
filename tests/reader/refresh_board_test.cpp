// The writer's side of the request rings (writer/refresh/board.hpp, shm/refresh.hpp RQ4-RQ5):
// a reader can damage nothing but its own ring, every cell is checked before it is used, and a
// writer killed between popping a request and storing its head loses nothing and repeats nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "poscache/reader.hpp"
#include "poscache/writer.hpp"
#include "shm/refresh.hpp"
#include "test_util.hpp"
#include "writer/refresh/board.hpp"

using namespace poscache;

namespace refresh_board {  // named: the test files share one unity translation unit

// The .requests file mapped read-write, as a (misbehaving) reader maps it.
struct RingsMapping {
  explicit RingsMapping(const std::string& segment) {
    const int fd = ::open(shm::requests_path(segment).c_str(), O_RDWR);
    base = ::mmap(nullptr, shm::kRequestsBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
  }
  ~RingsMapping() { ::munmap(base, shm::kRequestsBytes); }
  shm::RequestRing& ring(std::uint32_t i) const { return shm::request_rings(base)[i]; }
  void* base = nullptr;
};

struct BoardWorld {
  test::ScratchSegment seg{"rboard"};
  std::unique_ptr<Writer> w = Writer::open(test::small_config(seg.name(), 64));
  std::unique_ptr<refresh::RequestBoard> board = open_board();
  NamespaceId spot = *w->namespace_id("spot");
  std::unique_ptr<refresh::RequestBoard> open_board() {
    auto b =
        std::make_unique<refresh::RequestBoard>(seg.name(), w->stats().generation, 0640,
                                                static_cast<std::uint32_t>(w->namespaces().size()));
    shm::RefreshPolicyWords& pol = b->header().policy[0];
    pol.refreshers = 1;
    pol.timeout_ns = 1'000'000'000;
    return b;
  }
};

TEST(RequestBoardTest, CellsAReaderCorruptedAreRefusedAndTheGoodOnesTaken) {
  BoardWorld s;
  Reader r = Reader::open(s.seg.name());
  ASSERT_TRUE(r.refresh_available()) << r.refresh_unavailable_because();
  for (const char* acc : {"a1", "a2", "a3", "a4", "a5", "a6"})
    ASSERT_EQ(r.request(s.spot, acc, "SOL", RefreshReason::miss), RequestStatus::asked);
  // The reader's own ring (the only one claimed), scribbled on after the pushes: a wrong hash, a
  // namespace beyond the segment's, an overlong account, a rebuild, a reason out of range.
  RingsMapping m(s.seg.name());
  shm::RequestCell* c = m.ring(0).cells;
  c[0].hash ^= 1;
  c[1].ns = 31;
  c[2].account_len = 200;
  c[3].reason = static_cast<std::uint8_t>(RefreshReason::rebuild);
  c[4].reason = 17;
  std::vector<refresh::PoppedRequest> got;
  std::uint64_t bad = 0;
  EXPECT_EQ(s.board->pop(got, 100, true, bad), 1u);
  EXPECT_EQ(bad, 5u);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].account, "a6");  // the untouched one, whole
  EXPECT_EQ(got[0].instrument, "SOL");
  // A cell whose sequence is garbage stops that ring's reading there, and nothing else.
  ASSERT_EQ(r.request(s.spot, "a7", "SOL", RefreshReason::miss), RequestStatus::asked);
  m.ring(0).cells[6].seq = 12345;
  got.clear();
  EXPECT_EQ(s.board->pop(got, 100, true, bad), 0u);
}

TEST(RequestBoardTest, AWriterKilledBeforeStoringItsHeadRestartsWhereItReallyWas) {
  BoardWorld s;
  Reader r = Reader::open(s.seg.name());
  for (const char* acc : {"k1", "k2", "k3"})
    ASSERT_EQ(r.request(s.spot, acc, "SOL", RefreshReason::stale), RequestStatus::asked);
  std::vector<refresh::PoppedRequest> got;
  std::uint64_t bad = 0;
  ASSERT_EQ(s.board->pop(got, 2, true, bad), 2u);  // k1, k2 taken (their cells freed)
  RingsMapping m(s.seg.name());
  shm::store_relaxed(&m.ring(0).head, 0);  // as if killed before storing the head
  s.board.reset();
  s.board = s.open_board();  // the restart: same generation, the files kept
  got.clear();
  EXPECT_EQ(s.board->pop(got, 100, true, bad), 1u);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].account, "k3");  // neither k1 nor k2 again, and k3 not lost
  EXPECT_EQ(bad, 0u);
  ASSERT_EQ(r.request(s.spot, "k4", "SOL", RefreshReason::stale), RequestStatus::asked);
  got.clear();
  EXPECT_EQ(s.board->pop(got, 100, true, bad), 1u);  // and the ring goes on
  EXPECT_EQ(got.at(0).account, "k4");
}

}  // namespace refresh_board
