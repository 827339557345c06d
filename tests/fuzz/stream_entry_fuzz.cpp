// libFuzzer target: one Redis stream entry as the stream source receives it (stream_codec.hpp):
// its id, then its field/value pairs. The input is split as
//   ID "\n" FIELD "\0" VALUE "\0" FIELD "\0" VALUE ...
// so the fuzzer varies the id, the field names, their number and order, and the `cmd` text. An
// id must pack or be refused with a reason; an entry must decode or be refused with a reason; a
// decoded command is applied to a real writer (a small private segment), and the payload kept
// for a refused entry's copy to <stream>:rejected must be produced for any fields. Build and
// run: scripts/fuzz.sh.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "fuzz/fuzz_world.hpp"
#include "writer/ingest/stream_codec.hpp"

using namespace poscache;

namespace {
struct World : fuzz::World {
  std::unique_ptr<ingest::JsonDecoder> decoder;
  World()
      : fuzz::World("stream"),
        decoder(std::make_unique<ingest::JsonDecoder>(writer->namespaces())) {}
};
World& world() {
  static World w;
  return w;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& w = world();
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t nl = in.find('\n');
  const std::string_view id = in.substr(0, nl);
  ingest::StreamFields fields;
  if (nl != std::string_view::npos) {
    std::string_view rest = in.substr(nl + 1);
    while (!rest.empty()) {
      const std::size_t a = rest.find('\0');
      const std::string_view name = rest.substr(0, a);
      rest = a == std::string_view::npos ? std::string_view() : rest.substr(a + 1);
      const std::size_t b = rest.find('\0');
      const std::string_view value = rest.substr(0, b);
      rest = b == std::string_view::npos ? std::string_view() : rest.substr(b + 1);
      fields.emplace_back(std::string(name), std::string(value));
    }
  }
  (void)ingest::rejected_payload(fields);
  auto packed = ingest::pack_stream_id(id);
  if (!packed) {
    if (packed.error().empty()) std::abort();  // every refusal says why
    return 0;
  }
  if (ingest::unpack_stream_id(*packed).empty()) std::abort();
  auto decoded = ingest::decode_stream_entry(*w.decoder, *packed, fields);
  if (auto* c = std::get_if<ingest::Command>(&decoded)) {
    const ingest::CommandResult r = w.exec->execute(*c);
    if (r.status == ingest::CommandStatus::rejected && r.error.empty()) std::abort();
  } else if (std::get<std::string>(decoded).empty()) {
    std::abort();
  }
  return 0;
}
