// A program outside the tree: writes one position with poscache::writer, reads it back with
// poscache::reader, both from the installed package.
#include <unistd.h>

#include <cstdio>
#include <poscache/reader.hpp>
#include <poscache/writer.hpp>
#include <string>

int main() {
  poscache::WriterConfig cfg;
  cfg.segment = "poscache_consumer_" + std::to_string(::getpid());
  cfg.capacity = 16;
  cfg.namespaces = {poscache::preset_trading("spot")};
  int rc = 1;
  {
    auto w = poscache::Writer::open(cfg);
    w->upsert(*w->make_update("spot", "alice", "SOL", {{"qty", "1.5"}}));
    auto r = poscache::Reader::open(cfg.segment);
    poscache::Position p;
    if (r.get("spot", "alice", "SOL", p) == poscache::ReadStatus::ok) {
      std::printf("consumer read qty %s\n", poscache::format_decimal(p.values[0], 18).c_str());
      rc = 0;
    }
  }
  std::remove(("/dev/shm/" + cfg.segment).c_str());
  std::remove(("/dev/shm/" + cfg.segment + ".lock").c_str());
  std::remove(("/dev/shm/" + cfg.segment + ".readers").c_str());
  return rc;
}
