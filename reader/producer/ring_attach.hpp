// The producer's side of handing a ring to the writer (poscache/producer.hpp): one connection to
// the writer's socket carrying the "attach_ring" line and the ring's descriptor (SCM_RIGHTS), and
// the futex wait the acknowledgements use.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace poscache::detail {

// Connects to `path`, hands over `ring_fd` under `name` and reads the reply. Returns the connected
// socket, or -1 with the reason in `why`.
int connect_and_attach(const std::string& path, int ring_fd, const std::string& name,
                       std::string& why);
// FUTEX_WAIT on a shared (not process-private) word, for at most `t`.
void futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::nanoseconds t);

}  // namespace poscache::detail
