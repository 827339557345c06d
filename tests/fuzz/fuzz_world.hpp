// What both fuzz targets apply decoded input to: a real writer on a small private segment (256
// positions, so evictions happen), with the three presets, removed when the target exits
// normally (scripts/fuzz.sh removes what a crashed target leaves).
#pragma once

#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <memory>
#include <string>

#include "writer/ingest/executor.hpp"

namespace poscache::fuzz {

struct World {
  std::string seg;
  std::unique_ptr<Writer> writer;
  std::unique_ptr<ingest::CommandExecutor> exec;
  explicit World(const std::string& tag)
      : seg("poscache_fuzz_" + tag + "_" + std::to_string(::getpid())) {
    WriterConfig c;
    c.segment = seg;
    c.capacity = 256;
    c.fresh = true;
    c.huge_pages = false;
    c.namespaces = {preset_trading("spot"), preset_lending("lending"), preset_quote("quotes")};
    c.log = [](LogLevel, std::string_view) {};
    writer = Writer::open(c);
    exec = std::make_unique<ingest::CommandExecutor>(*writer, nullptr);
  }
  ~World() {
    exec.reset();
    writer.reset();
    boost::interprocess::shared_memory_object::remove(seg.c_str());
    ::unlink(("/dev/shm/" + seg + ".lock").c_str());
    ::unlink(("/dev/shm/" + seg + ".readers").c_str());
  }
};

}  // namespace poscache::fuzz
