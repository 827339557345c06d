// libFuzzer target: one request to the daemon's HTTP API (writer/http/api.hpp) as the server
// hands it over after the front (request_head.cpp) parsed it, split as
//   METHOD "\n" PATH "\n" AUTHORIZATION "\n" BODY
// over a real segment with a few positions. Every answer must be a status from 200 to 599 with a
// JSON body (or the metrics text); nothing may crash, leak or hang. The same bytes go through the
// server's request head parser (request_head.hpp) first: a refusal is a 4xx or 505, a complete
// head ends within the input and its path holds no NUL. Admin commands are decoded
// and checked but not run (no apply loop: they answer 503); the executor's side of an
// invalidation is fuzzed through json_line_fuzz. Build and run: scripts/fuzz.sh.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz/fuzz_world.hpp"
#include "writer/http/api.hpp"
#include "writer/http/request_head.hpp"

using namespace poscache;

namespace {
struct World : fuzz::World {
  std::unique_ptr<Reader> reader;
  std::unique_ptr<http::Api> api;
  World() : fuzz::World("http") {
    for (const char* acc : {"w1", "w2", "0xabc"}) {
      writer->upsert(
          *writer->make_update("spot", acc, "SOL", {{"qty", "1.5"}, {"avg_price", "140"}}));
      writer->upsert(*writer->make_update("quotes", acc, "SOL/USDC", {{"bid", "140.25"}}));
      writer->upsert(*writer->make_update("lending", acc, "USDC", {{"debt_amount", "1000000"}}));
    }
    writer->tick();
    reader = std::make_unique<Reader>(Reader::open(seg));
    http::ApiConfig ac;
    ac.admin_token = "fuzz-token-0123456789";
    api = std::make_unique<http::Api>(*reader, writer->namespaces(), ac, nullptr, nullptr,
                                      [](bool, const std::string&) {});
  }
};
World& world() {
  static World w;
  return w;
}
std::string_view next_line(std::string_view& rest) {
  const std::size_t nl = rest.find('\n');
  const std::string_view line = rest.substr(0, nl);
  rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  return line;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& w = world();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const http::HeadParse head = http::parse_head(in);
  if (head.state == http::HeadParse::State::bad && (head.status < 400 || head.status > 505))
    std::abort();
  if (head.state == http::HeadParse::State::complete &&
      (head.head.head_bytes > size || head.head.path.find('\0') != std::string::npos))
    std::abort();
  http::HttpRequest req;
  req.method = std::string(next_line(in));
  req.path = std::string(next_line(in));
  req.authorization = std::string(next_line(in));
  req.body = std::string(in.substr(0, http::kMaxBody));
  req.remote = "127.0.0.1:1";
  const http::HttpResponse r = w.api->handle(req);
  if (r.status < 200 || r.status > 599) std::abort();
  if (r.content_type == "application/json") {
    const auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded()) std::abort();  // every JSON answer parses
    if (r.status >= 400 && !j.contains("error") && !j.contains("status")) std::abort();
  } else if (r.body.find("poscache_positions ") == std::string::npos) {
    std::abort();
  }
  return 0;
}
