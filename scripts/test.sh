#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with warnings as errors, runs ctest.
#   scripts/test.sh              release build (RelWithDebInfo) in build/
#   scripts/test.sh --sanitize   the same suite under AddressSanitizer + UBSan in build-asan/
#   scripts/test.sh --release    the same suite built as users build it (Release, -O3) in build-release/
set -euo pipefail
cd "$(dirname "$0")/.."
"$PWD/scripts/deps.sh"
dir=build
flags=(-DPOSCACHE_WERROR=ON)
case "${1:-}" in
  --sanitize)
    dir=build-asan
    flags+=(-DPOSCACHE_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
  --release)
    dir=build-release
    flags+=(-DCMAKE_BUILD_TYPE=Release -DPOSCACHE_BUILD_TESTS=ON -DPOSCACHE_BUILD_BENCH=ON)
    ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--sanitize | --release]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
cd "$dir"
ctest -j2 --output-on-failure --timeout 900
