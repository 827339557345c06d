// Built with `pkg-config --cflags --libs poscache`: the reader library alone.
#include <cstdio>
#include <poscache/reader.hpp>

int main() {
  try {
    poscache::Reader::open("poscache_pkgconfig_no_such_segment");
  } catch (const poscache::Error& e) {
    std::printf("pkg-config consumer: %s\n", e.what());
    return 0;
  }
  return 1;
}
