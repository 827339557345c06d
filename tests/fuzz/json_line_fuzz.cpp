// libFuzzer target: one JSON line, as the ingest socket (and poscache-feed replay) receives it.
// The decoder must answer every input with a command or an error, never crash; a decoded command
// is then applied to a real writer (a small private segment), so the executor's checks and the
// fill arithmetic see fuzzed values too. Build and run: scripts/fuzz.sh.
#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "writer/ingest/executor.hpp"
#include "writer/ingest/json_codec.hpp"

using namespace poscache;

namespace {
struct World {
  std::string seg = "poscache_fuzz_json_" + std::to_string(::getpid());
  std::unique_ptr<Writer> writer;
  std::unique_ptr<ingest::CommandExecutor> exec;
  std::unique_ptr<ingest::JsonDecoder> decoder;
  World() {
    WriterConfig c;
    c.segment = seg;
    c.capacity = 256;  // small: evictions happen
    c.fresh = true;
    c.huge_pages = false;
    c.namespaces = {preset_trading("spot"), preset_lending("lending"), preset_quote("quotes")};
    c.log = [](LogLevel, std::string_view) {};
    writer = Writer::open(c);
    exec = std::make_unique<ingest::CommandExecutor>(*writer, nullptr);
    decoder = std::make_unique<ingest::JsonDecoder>(writer->namespaces());
  }
  ~World() {
    writer.reset();
    boost::interprocess::shared_memory_object::remove(seg.c_str());
    ::unlink(("/dev/shm/" + seg + ".lock").c_str());
  }
};
World& world() {
  static World w;
  return w;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
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
