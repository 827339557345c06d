// shm/segment: creating a segment, and readers refusing any that is not exactly this format,
// naming expected and found. No Writer: the format stands on its own.
#include "shm/segment.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "poscache/reader.hpp"
#include "shm/clock.hpp"
#include "shm/seqlock.hpp"
#include "test_util.hpp"

using namespace poscache;
using namespace poscache::shm;

namespace {

// A segment mapped read-write behind the writer's back, to hand-build bad states.
struct RawMap : test::RwMapping {
  using RwMapping::RwMapping;
  SegmentHeader& header() const { return *reinterpret_cast<SegmentHeader*>(base()); }
};

CreateSpec spec_for(const std::string& name, std::uint64_t capacity = 64) {
  CreateSpec spec;
  spec.name = name;
  spec.mode = 0640;
  spec.capacity = capacity;
  spec.namespaces = {preset_trading("spot"), preset_quote("marks")};
  spec.huge_pages = false;
  spec.now_ns = realtime_ns();
  return spec;
}

// A created segment, turned ready as a writer would once it is built.
void make_ready_segment(const std::string& name, std::uint64_t capacity = 64) {
  Mapping m = create_segment(spec_for(name, capacity));
  store_release(&static_cast<SegmentHeader*>(m.base())->state,
                static_cast<std::uint32_t>(SegmentState::ready));
}

std::string open_error(const std::string& name) {
  try {
    Reader::open(name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(SegmentTest, LayoutOffsetsAreWhatTheDiagramsSay) {
  const Geometry g = geometry_for(1'000'000);
  EXPECT_EQ(g.index_buckets, 2'097'152u);
  EXPECT_EQ(g.slots_offset, kHeaderSize);
  EXPECT_EQ(g.index_offset[0] % kPageSize, 0u);
  EXPECT_GE(g.index_offset[0], g.slots_offset + 1'000'000 * sizeof(Slot));
  // The account index (shm/accounts.hpp) between the index and the writer's area: readers map
  // it, the writer-only regions start after it.
  EXPECT_EQ(g.accounts_offset % kPageSize, 0u);
  EXPECT_GE(g.accounts_offset, g.index_offset[1] + g.index_buckets * sizeof(Bucket));
  EXPECT_GE(g.stripes_offset, g.accounts_offset + g.index_buckets * sizeof(AccountEntry));
  EXPECT_EQ(g.account_stripes, 16'384u);
  EXPECT_GE(g.links_offset, g.stripes_offset + g.account_stripes * sizeof(std::uint64_t));
  EXPECT_GE(g.writer_offset, g.links_offset + 1'000'000 * sizeof(std::uint32_t));
  // The journal closes the segment: after the SlotBooks, page-aligned, 1/16 of the capacity.
  EXPECT_EQ(g.journal_offset % kPageSize, 0u);
  EXPECT_GE(g.journal_offset, g.book_offset + 1'000'000 * sizeof(SlotBook));
  EXPECT_EQ(g.journal_entries, 62'500u);
  EXPECT_GE(g.segment_size,
            g.journal_offset + sizeof(JournalHeader) + 62'500 * sizeof(JournalEntry));
  EXPECT_EQ(geometry_for(100).journal_entries, 1024u);
  EXPECT_EQ(geometry_for(10'000'000).journal_entries, 65'536u);
  // The memory budget: at most 640 bytes per position at a million, all included.
  EXPECT_LE(g.segment_size / 1'000'000, 640u) << g.segment_size;
}

TEST(SegmentTest, CreationFormatsEveryRegionAndReadersWaitUntilTheStateIsReady) {
  test::ScratchSegment seg("create");
  const std::int64_t t0 = realtime_ns();
  Mapping m = create_segment(spec_for(seg.name(), 100));
  auto* base = static_cast<std::byte*>(m.base());
  const SegmentHeader& h = *reinterpret_cast<const SegmentHeader*>(base);
  const Geometry g = geometry_for(100);
  EXPECT_EQ(load_acquire(&h.magic), kMagic);
  EXPECT_EQ(h.layout_version, kLayoutVersion);
  EXPECT_EQ(h.layout_fingerprint, layout_fingerprint());
  EXPECT_EQ(h.capacity, 100u);
  EXPECT_EQ(h.segment_size, g.segment_size);
  EXPECT_EQ(m.size(), g.segment_size);
  EXPECT_EQ(h.generation & 1, 1u);
  EXPECT_EQ(h.namespace_count, 2u);
  EXPECT_EQ(spec_of(h.namespaces[1]).name, "marks");
  EXPECT_EQ(load_acquire(&h.state), static_cast<std::uint32_t>(SegmentState::initializing));
  // Every slot free and on the free list, in order; versions start at the clock.
  const auto* slots = reinterpret_cast<const Slot*>(base + g.slots_offset);
  const auto* book = reinterpret_cast<const SlotBook*>(base + g.book_offset);
  const auto& wa = *reinterpret_cast<const WriterArea*>(base + g.writer_offset);
  std::uint32_t next = wa.free_head;
  for (std::uint32_t s = 0; s < 100; ++s) {
    std::uint64_t words[kPayloadWords];
    ASSERT_TRUE(try_read(slots[s], words, kPayloadWords));
    SlotPayload p;
    std::memcpy(&p, words, sizeof p);
    const SlotPayload freed = free_slot_payload();
    EXPECT_EQ(std::memcmp(&p, &freed, sizeof p), 0) << s;
    EXPECT_EQ(next, s);
    next = book[s].next;
  }
  EXPECT_EQ(next, kNil);
  EXPECT_GE(wa.next_version, static_cast<std::uint64_t>(t0));
  struct stat st {};
  ASSERT_EQ(::stat(shm_path(seg.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);  // exactly, whatever the umask
  EXPECT_NE(open_error(seg.name()).find("initializing"), std::string::npos);
  // A second creation under the name is refused, naming it; the first is untouched.
  try {
    create_segment(spec_for(seg.name()));
    ADD_FAILURE() << "created over an existing segment";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create segment '" + seg.name() + "'"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(load_acquire(&h.magic), kMagic);
}

TEST(SegmentTest, ReaderRefusesAMissingSegmentNamingIt) {
  const std::string err = open_error("poscache_test_no_such_segment");
  EXPECT_NE(err.find("no segment named 'poscache_test_no_such_segment'"), std::string::npos) << err;
}

TEST(SegmentTest, ReaderRefusesForeignMagicVersionAndFingerprint) {
  test::ScratchSegment seg("foreign");
  make_ready_segment(seg.name());
  RawMap raw(seg.name());
  SegmentHeader& h = raw.header();

  const std::uint64_t magic = h.magic;
  h.magic = 0x1234;
  std::string err = open_error(seg.name());
  EXPECT_NE(err.find("expected magic 0x3156484341435350, found 0x0000000000001234"),
            std::string::npos)
      << err;
  h.magic = magic;

  h.layout_version = 99;
  err = open_error(seg.name());
  EXPECT_NE(err.find("layout version mismatch: expected " + std::to_string(shm::kLayoutVersion) +
                     ", found 99"),
            std::string::npos)
      << err;
  h.layout_version = kLayoutVersion;

  h.layout_fingerprint ^= 1;
  err = open_error(seg.name());
  EXPECT_NE(err.find("layout fingerprint mismatch: expected"), std::string::npos) << err;
  EXPECT_NE(err.find("found"), std::string::npos) << err;
  h.layout_fingerprint ^= 1;

  store_release(&h.state, static_cast<std::uint32_t>(SegmentState::initializing));
  err = open_error(seg.name());
  EXPECT_NE(err.find("expected state ready, found initializing"), std::string::npos) << err;
  store_release(&h.state, static_cast<std::uint32_t>(SegmentState::ready));

  h.capacity = 12345;
  err = open_error(seg.name());
  EXPECT_NE(err.find("corrupt header"), std::string::npos) << err;
  h.capacity = 64;

  EXPECT_EQ(open_error(seg.name()), "");  // all restored: accepted
}

TEST(SegmentTest, ReaderRefusesATruncatedSegment) {
  test::ScratchSegment seg("trunc");
  make_ready_segment(seg.name());
  const int fd = ::shm_open(("/" + seg.name()).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 40000), 0);
  ::close(fd);
  const std::string err = open_error(seg.name());
  EXPECT_NE(err.find("segment too small: expected"), std::string::npos) << err;
}

TEST(SegmentTest, ReaderRefusesAFileThatIsNotASegment) {
  test::ScratchSegment seg("junk");
  const int fd = ::shm_open(("/" + seg.name()).c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1 << 16), 0);
  void* p = ::mmap(nullptr, 1 << 16, PROT_WRITE, MAP_SHARED, fd, 0);
  std::memset(p, 0x5A, 1 << 16);
  ::munmap(p, 1 << 16);
  ::close(fd);
  EXPECT_NE(open_error(seg.name()).find("not a poscache segment"), std::string::npos);
}

TEST(SegmentTest, SegmentNamesAreValidated) {
  std::string msg;
  EXPECT_FALSE(valid_segment_name("a/b", msg));
  EXPECT_NE(msg.find("'/'"), std::string::npos);
  EXPECT_FALSE(valid_segment_name("", msg));
  EXPECT_TRUE(valid_segment_name("positions.v1", msg));
}

namespace {

// A /dev/shm file of `size` bytes, allocated and filled with a pattern of its offsets.
struct PatternFile {
  PatternFile(const std::string& name, std::size_t bytes) : size(bytes) {
    fd = ::shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    EXPECT_EQ(::posix_fallocate(fd, 0, static_cast<off_t>(size)), 0);
    std::vector<std::uint64_t> buf(4096 / 8);
    for (std::size_t off = 0; off < size; off += 4096) {
      for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = off + 8 * i;
      EXPECT_EQ(::pwrite(fd, buf.data(), 4096, static_cast<off_t>(off)), 4096);
    }
  }
  int dup() const { return ::dup(fd); }
  ~PatternFile() { ::close(fd); }
  int fd;
  std::size_t size;
};

bool holds_pattern(const void* base, std::size_t size) {
  const auto* w = static_cast<const std::uint64_t*>(base);
  for (std::size_t i = 0; i < size / 8; i += 509) {  // a prime stride: every page, many offsets
    if (w[i] != 8 * i) return false;
  }
  return true;
}

}  // namespace

TEST(SegmentTest, MappingsOfTwoMiBOrMoreStartOnATwoMiBBoundary) {
  test::ScratchSegment seg;
  PatternFile f(seg.name(), 5 * kHugePageSize + 4096);
  Mapping rw = Mapping::map(f.dup(), f.size, true, seg.name());
  Mapping ro = Mapping::map(f.dup(), f.size, false, seg.name());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(rw.base()) % kHugePageSize, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(ro.base()) % kHugePageSize, 0u);
  EXPECT_TRUE(holds_pattern(rw.base(), f.size));
  EXPECT_TRUE(holds_pattern(ro.base(), f.size));
}

// What a writer does at creation: MADV_COLLAPSE rebuilds the file's pages as 2 MiB pages in the
// page cache, keeping every byte, and any later 2 MiB-aligned mapping (a reader) maps them huge.
TEST(SegmentTest, CollapsedPagesKeepTheirContentAndEveryLaterMappingSharesThem) {
  test::ScratchSegment seg;
  PatternFile f(seg.name(), 5 * kHugePageSize + 4096);  // a 4 KiB tail that cannot be huge
  Mapping w = Mapping::map(f.dup(), f.size, true, seg.name(), HugePages::collapse);
  const std::uint64_t huge = huge_mapped_bytes(w.base(), w.size());
  if (const std::string why = test::tmpfs_collapse_unsupported(); !why.empty()) {
    // Linux < 6.1, or shmem_enabled=deny: the mapping works on 4 KiB pages and says why.
    EXPECT_FALSE(w.collapse_error().empty());
    EXPECT_TRUE(holds_pattern(w.base(), f.size));
    POSCACHE_SKIP_OR_FAIL("this kernel does not collapse tmpfs pages: " + why);
  }
  // Every whole 2 MiB, unless the kernel had no free huge page at that moment: then it says so.
  if (huge < 5 * kHugePageSize) {
    EXPECT_FALSE(w.collapse_error().empty()) << "partial collapse without an error";
    // The probe just collapsed 2 MiB of another file: the kernel can, so none at all is a failure.
    ASSERT_GT(huge, 0u) << "the probe collapsed a page but the mapping got none: "
                        << w.collapse_error();
  } else {
    EXPECT_TRUE(w.collapse_error().empty()) << w.collapse_error();
  }
  EXPECT_TRUE(holds_pattern(w.base(), f.size));
  Mapping r = Mapping::map(f.dup(), f.size, false, seg.name());
  EXPECT_EQ(huge_mapped_bytes(r.base(), r.size()), huge);
  EXPECT_TRUE(holds_pattern(r.base(), f.size));
  // A write through the writer's huge mapping is what the reader's mapping reads.
  static_cast<std::uint64_t*>(w.base())[3 * kHugePageSize / 8 + 7] = 0xFEED;
  EXPECT_EQ(static_cast<const std::uint64_t*>(r.base())[3 * kHugePageSize / 8 + 7], 0xFEEDu);
  // Nothing else of this process is counted.
  EXPECT_EQ(huge_mapped_bytes(&f, sizeof f), 0u);
}
