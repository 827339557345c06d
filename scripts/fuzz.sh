#!/usr/bin/env bash
# Fuzzes the ingest decoders and the HTTP API with libFuzzer (clang-16, libfuzzer-16-dev, libclang-rt-16-dev), under
# AddressSanitizer and UBSan, starting from the checked-in seed corpora (tests/fuzz/corpus/).
#   scripts/fuzz.sh                   10 000 000 executions per target
#   scripts/fuzz.sh --runs N          N executions per target
#   scripts/fuzz.sh --seconds S       S seconds per target (CI's short pass)
# Built at -O1 with line tables only, as the sanitizer builds are (scripts/test.sh): less than
# -O2's compile time for the same targets, and libFuzzer asks for -O1 or above.
# New inputs that reach new code are kept in build-fuzz/corpus/<target>/; a crash leaves its
# input in build-fuzz/ (crash-*) and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-runs=10000000)
case "${1:-}" in
  --runs) limit=(-runs="$2") ;;
  --seconds) limit=(-max_total_time="$2") ;;
  "") ;;
  *) echo "usage: scripts/fuzz.sh [--runs N | --seconds S]" >&2; exit 2 ;;
esac
"$PWD/scripts/deps.sh" clang-16 libfuzzer-16-dev libclang-rt-16-dev
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-16 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DPOSCACHE_FUZZ=ON -DPOSCACHE_BUILD_TESTS=OFF \
  -DPOSCACHE_BUILD_BENCH=OFF -DPOSCACHE_BUILD_TOOLS=OFF \
  -DPOSCACHE_SANITIZE=address,undefined,fuzzer-no-link >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target json_line_fuzz ring_message_fuzz stream_entry_fuzz http_request_fuzz
rm -f build-fuzz/crash-* build-fuzz/leak-* build-fuzz/timeout-*
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rm -f /dev/shm/poscache_fuzz_*  # segments a crashed target left behind
for t in json_line ring_message stream_entry http_request; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "== $t: ${limit[*]}"
  (cd build-fuzz && "./tests/fuzz/${t}_fuzz" "${limit[@]}" -print_final_stats=1 \
     -max_len=1024 "corpus/$t" "../tests/fuzz/corpus/$t" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY|Done|INFO: seed corpus)" || true)
  # libFuzzer exits non-zero on a crash; grep above hides its code, so look for the artifact.
  if compgen -G "build-fuzz/crash-*" >/dev/null || compgen -G "build-fuzz/leak-*" >/dev/null ||
     compgen -G "build-fuzz/timeout-*" >/dev/null; then
    echo "fuzz: $t found a failing input:"; ls build-fuzz/crash-* build-fuzz/leak-* build-fuzz/timeout-* 2>/dev/null || true
    exit 1
  fi
done
rm -f /dev/shm/poscache_fuzz_*
