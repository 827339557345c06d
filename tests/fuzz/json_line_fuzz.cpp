// libFuzzer target: one JSON line, as the ingest socket (and poscache-feed replay) receives it.
// The decoder must answer every input with a command or an error, never crash; a decoded command
// is then applied to a real writer (a small private segment), so the executor's checks and the
// fill arithmetic see fuzzed values too. Build and run: scripts/fuzz.sh.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "fuzz/fuzz_world.hpp"
#include "writer/ingest/json_codec.hpp"

using namespace poscache;

namespace {
struct World : fuzz::World {
  std::unique_ptr<ingest::JsonDecoder> decoder;
  World()
      : fuzz::World("json"), decoder(std::make_unique<ingest::JsonDecoder>(writer->namespaces())) {}
};
World& world() {
  static World w;
  return w;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& w = world();
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  auto decoded = w.decoder->decode(line);
  if (auto* d = std::get_if<ingest::DecodedLine>(&decoded)) {
    const ingest::CommandResult r = w.exec->execute(d->command);
    const std::string reply = ingest::encode_reply(r, d->id);
    if (reply.empty() || reply.back() != '\n') std::abort();
  } else {
    const auto& f = std::get<ingest::JsonDecoder::Failure>(decoded);
    if (f.error.empty()) std::abort();  // every refusal says why
    (void)ingest::encode_error(f.error, f.id);
  }
  return 0;
}
