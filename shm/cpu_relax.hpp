// The spin-wait hint of a reader retrying a slot (shm/seqlock.hpp): a pause that lets the
// sibling hyperthread run and keeps the spin from flooding the memory system.
#pragma once

namespace poscache::shm {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace poscache::shm
