// libFuzzer target: one producer-ring message (512 bytes, any content: a hostile producer writes
// whatever it likes into its ring). The decoder must answer with something to apply or an
// error; what it passes on is applied to a real writer (upserts with their claimed key hash
// through Writer::upsert_batch, commands through the executor), which must refuse what is bad
// and never crash. Build and run: scripts/fuzz.sh.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz/fuzz_world.hpp"
#include "shm/hash.hpp"
#include "shm/ring.hpp"
#include "writer/ingest/ring_codec.hpp"

using namespace poscache;

namespace {
fuzz::World& world() {
  static fuzz::World w("ring");
  return w;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& w = world();
  shm::RingMessage m{};
  std::memcpy(&m, data, size < sizeof m ? size : sizeof m);
  // A hash the fuzzer cannot guess would keep every upsert on the refusal path: when the
  // reserved word's low bit is set, the key hash is made right (if the
  // lengths allow), so the writer's update and insert paths see fuzzed keys and values too.
  if ((m.reserved & 1u) != 0 && m.account_len <= kMaxAccountLen &&
      m.instrument_len <= kMaxInstrumentLen)
    m.key_hash = shm::key_hash(m.ns, {m.account, m.account_len}, {m.instrument, m.instrument_len});
  Update u;
  std::uint64_t hash = 0;
  ingest::Command cmd;
  std::string error;
  shm::RingMessage copy;  // as the writer copies out of the ring (PC2), then decodes the copy
  std::memset(&copy, 0xA5, sizeof copy);  // as a reused copy buffer: older bytes left over
  ingest::copy_message(copy, m);
  switch (ingest::decode_ring_message(copy, w.writer->namespaces().size(), u, hash, cmd, error)) {
    case ingest::RingDecoded::upsert: {
      ApplyResult r;
      w.writer->upsert_batch(std::span(&u, 1), std::span(&hash, 1), std::span(&r, 1));
      break;
    }
    case ingest::RingDecoded::command:
      w.exec->execute(cmd);
      break;
    case ingest::RingDecoded::bad:
      if (error.empty()) std::abort();
      break;
  }
  return 0;
}
