// poscache-feed's pieces its subcommands share (tools/feed.cpp: the commands, batch and replay;
// tools/feed_load.cpp: the market simulation and the load generator): where commands go, how a
// reply is reported, the feed's own producer ring, and the one duration syntax of its flags.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "poscache/producer.hpp"

namespace poscache::feed {

inline constexpr std::uint64_t kRingCapacity = 4096;  // the feed's ring (ProducerConfig's default)

// The writer the commands go to, and how (the top-level flags).
struct Target {
  std::string segment = "poscache";
  std::string sock;          // "" = the segment's socket, /dev/shm/SEGMENT.sock
  std::string via = "ring";  // or "socket" (JSON lines)
  std::string path() const;  // the socket's path
};

// Prints a reply for a person; returns false if the command was refused.
bool report(std::string_view reply, bool quiet);

// A producer ring of this process, named after its pid (and `instance`, when several).
std::unique_ptr<Producer> open_producer(const std::string& segment, const std::string& sock,
                                        int instance = 0);

// One duration syntax (values/duration.hpp); a bad one is a usage error naming the flag.
CLI::Validator duration_flag();
// A value duration_flag() accepted, in seconds.
double checked_seconds(const std::string& text);

// simulate: a small market (tools/market_sim.hpp) for this long, through a ring or the socket.
struct SimulateArgs {
  std::string seconds = "10s";
  std::uint32_t wallets = 8;
  std::string trading_ns = "spot", lending_ns = "lending", quotes_ns = "quotes";
};
CLI::App* add_simulate(CLI::App& app, SimulateArgs& a);
int simulate(const Target& t, const SimulateArgs& a);

// load: upserts as fast as asked from `producers` threads, each its own ring or connection.
struct LoadArgs {
  std::string seconds = "10s";
  double rate = 100'000;
  unsigned producers = 1;
  std::string ns = "spot";
};
CLI::App* add_load(CLI::App& app, LoadArgs& a);
int load(const Target& t, const LoadArgs& a);

}  // namespace poscache::feed
