// Built with `pkg-config --cflags --libs poscache-writer` alone: owns a segment, writes a
// position, reads it back.
#include <unistd.h>

#include <cstdio>
#include <poscache/reader.hpp>
#include <poscache/writer.hpp>
#include <string>

int main() {
  poscache::WriterConfig cfg;
  cfg.segment = "poscache_pc_writer_" + std::to_string(::getpid());
  cfg.capacity = 16;
  cfg.namespaces = {poscache::preset_lending("moonwell")};
  int rc = 1;
  {
    auto w = poscache::Writer::open(cfg);
    w->upsert(*w->make_update("moonwell", "0xabc", "USDC",
                              {{"collateral_amount", "2500000000000000000000"}}));
    auto r = poscache::Reader::open(cfg.segment);
    poscache::Position p;
    if (r.get("moonwell", "0xabc", "USDC", p) == poscache::ReadStatus::ok) {
      std::printf("pkg-config writer consumer read collateral %s\n",
                  poscache::format_decimal(p.values[0], 0).c_str());
      rc = 0;
    }
  }
  std::remove(("/dev/shm/" + cfg.segment).c_str());
  std::remove(("/dev/shm/" + cfg.segment + ".lock").c_str());
  std::remove(("/dev/shm/" + cfg.segment + ".readers").c_str());
  return rc;
}
