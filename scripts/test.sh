#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with warnings as errors, runs ctest.
#   scripts/test.sh              as users build it (Release, -O3) in build/, benchmarks included
#   scripts/test.sh --sanitize   the same suite under AddressSanitizer + UBSan in build-asan/
#   scripts/test.sh --tsan       the tests with threads in one process under ThreadSanitizer, in
#                                build-tsan/ (the writer's sync thread, the stream source, producers,
#                                readers and writers in threads; see below for what it leaves out)
#
# The sanitizer builds compile at -O1 with line tables only (-g1): that halves their compile time
# (CI builds the project three times on two cores), and the reports still name file and line.
set -euo pipefail
cd "$(dirname "$0")/.."
"$PWD/scripts/deps.sh"
dir=build
skip=()
targets=()
flags=(-DPOSCACHE_WERROR=ON -DCMAKE_BUILD_TYPE=Release -DPOSCACHE_BUILD_TESTS=ON -DPOSCACHE_BUILD_BENCH=ON)
case "${1:-}" in
  --sanitize)
    dir=build-asan
    flags=(-DPOSCACHE_WERROR=ON -DPOSCACHE_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DPOSCACHE_BUILD_BENCH=OFF)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
  --tsan)
    dir=build-tsan
    flags=(-DPOSCACHE_WERROR=ON -DPOSCACHE_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DPOSCACHE_BUILD_BENCH=OFF)
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
    # Only what has threads in one process: the writer's sync thread, the stream source's
    # thread, producers, sockets and readers in threads, daemons with those threads. What
    # ThreadSanitizer cannot check it only slows, and the Release and ASan passes run it:
    # concurrency between processes (torture, readers in other processes during a rebuild or
    # frozen mid-read, fault points), single-threaded code (values, the inspector, a model
    # test), the seqlock's torn-read test (its fences are not modelled; every word is atomic),
    # installing, Python (not built under sanitizers), and the documentation's checks (they
    # run the daemon, the feed and the inspector, which this pass does not build).
    # The daemon tests are left to the Release and ASan passes: under TSan they need the
    # daemon, the feed and the inspector built again (the heaviest files of the project) for
    # threads the in-process tests already exercise (sync, stream source, admin queue).
    targets=(--target writer_test redis_test ingest_test reader_test shm_test c_api_test http_test)
    skip=(-E "_NOT_BUILT|TortureTest|TortureFlagsTest|InstallTest|PythonTest|DocsTest|SeqlockTest.ConcurrentReaders|ReaderRebuildTest|ReaderFrozenTest|RecencyLogTest.AgreesWithAReferenceModel")
    ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--sanitize | --tsan]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)" "${targets[@]}"
cd "$dir"
ctest -j2 --output-on-failure --timeout 900 "${skip[@]}"
