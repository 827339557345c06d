// JSON-lines commands through a producer ring, for poscache-feed: each line is decoded by the
// writer's own decoder (writer/ingest/json_codec.hpp), the one the socket and streams use, so a
// line means the same and is refused for the same reason whichever way it travels. The decoded
// command is then pushed with the Producer's typed calls (decimals re-formatted at their fields'
// scales: exact), waiting up to a timeout while the ring is full.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "poscache/producer.hpp"
#include "poscache/reader.hpp"
#include "writer/ingest/json_codec.hpp"

namespace poscache::feed {

class RingCommands {
 public:
  // `segment`'s namespaces, read once (the decoder resolves names and scales against them).
  RingCommands(const std::string& segment, Producer& producer);
  ~RingCommands();

  struct Pushed {
    PushResult result;  // ok, full (after `timeout`), bad_input or dropped
    std::string error;  // why, if not ok (the decoder's or the producer's text)
  };
  // Decodes `line` and pushes it, waiting up to `timeout` for room.
  Pushed push(std::string_view line, Producer::Timeout timeout);

 private:
  PushResult push_command(const ingest::Command& c, Producer::Timeout timeout);
  Producer& producer_;
  Reader reader_;
  std::vector<NamespaceSpec> specs_;
  std::unique_ptr<ingest::JsonDecoder> decoder_;
};

// The name the socket's replies give an outcome ("applied", "duplicate", "stale_source",
// "not_found", "rejected"), so both paths print the same words.
std::string_view reply_name(Outcome o) noexcept;

}  // namespace poscache::feed
