// poscache-feed's ring path: one command, a batch, or a file of JSON lines sent through the
// process's producer ring (RingCommands decodes each as the socket does), each outcome read back
// and reported in the socket replies' words. The exit codes are poscache-feed's.
#pragma once

#include <chrono>
#include <cstdint>
#include <istream>
#include <nlohmann/json.hpp>
#include <string>

#include "poscache/producer.hpp"

namespace poscache::feed {

inline constexpr int kOk = 0, kRefused = 1, kUsage = 2, kUnreachable = 3;

// One command: pushed, applied, its outcome printed.
int ring_one(const std::string& segment, Producer& p, const nlohmann::json& cmd);
// One batch line ({"op":"batch",...}) of `n` commands: the batch's outcome and each command's.
int ring_batch(const std::string& segment, Producer& p, const std::string& line, std::size_t n);
// A file of JSON lines in order, waiting for room up to `timeout` of no progress; every line's
// outcome read before its slot (of a ring of `capacity`) is reused.
int ring_replay(const std::string& segment, Producer& p, std::istream& in,
                std::chrono::nanoseconds timeout, std::uint64_t capacity);

}  // namespace poscache::feed
