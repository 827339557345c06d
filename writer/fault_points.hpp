// Fault points: the steps of a slot write (shm/seqlock.hpp, "THE WRITER DIES") at which a test
// build of the writer can kill its own process, to prove what a crash at exactly that step leaves
// behind for the next writer. In every other build POSCACHE_FAULT_POINT compiles to nothing: only
// poscache_writer_faults, a test-only archive of the writer (CMakeLists.txt), compiles the files
// that use it with POSCACHE_FAULT_POINTS defined, and the fault test, which links that archive,
// defines detail::fault_point() itself (tests/writer/fault_test.cpp). A file that starts using
// POSCACHE_FAULT_POINT joins _writer_fault_sources in CMakeLists.txt.
#pragma once

namespace poscache::detail {

enum class FaultPoint {
  undo_saved,     // the undo record is filled but not armed
  undo_armed,     // armed for the slot, the slot still even (before SW1)
  after_w1,       // the slot is odd, no payload word stored yet
  mid_w3,         // the slot is odd, half of the changed words stored
  after_w4,       // published (even again), the undo record still armed
  undo_disarmed,  // the write is over
};

#ifdef POSCACHE_FAULT_POINTS
void fault_point(FaultPoint p) noexcept;
#define POSCACHE_FAULT_POINT(p) ::poscache::detail::fault_point(::poscache::detail::FaultPoint::p)
#else
#define POSCACHE_FAULT_POINT(p) ((void)0)
#endif

}  // namespace poscache::detail
