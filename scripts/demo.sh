#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a writer fed by the synthetic generator,
# runs a reader process against it, and shows the inspector's view.
set -euo pipefail
cd "$(dirname "$0")/.."
"$PWD/scripts/deps.sh"
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j"$(nproc)" --target poscache-writer poscache-inspect poscache-reader-demo
bin=build/tools
seg=poscache_demo

echo "== writer: 200k updates/s over 1000 accounts x 20 instruments (config/demo.toml)"
"$bin/poscache-writer" --config config/demo.toml --segment "$seg" --fresh --stats-interval 2s &
writer=$!
trap 'kill $writer 2>/dev/null; wait $writer 2>/dev/null || true' EXIT
for _ in $(seq 100); do "$bin/poscache-inspect" -s "$seg" health >/dev/null 2>&1 && break; sleep 0.05; done

echo; echo "== a reader process (poscache-reader-demo) reading while the writer updates"
"$bin/poscache-reader-demo" --segment "$seg" --seconds 3 --accounts 1000 --instruments 20

echo; echo "== poscache-inspect stats"
"$bin/poscache-inspect" -s "$seg" stats
echo; echo "== poscache-inspect ls --account acct000042"
"$bin/poscache-inspect" -s "$seg" ls --account acct000042 --limit 5
echo; echo "== poscache-inspect --json get spot acct000007 SOL"
"$bin/poscache-inspect" -s "$seg" --json get spot acct000007 SOL || echo "(not written yet: exit $?)"
echo; echo "== poscache-inspect verify (walks every slot and index bucket beside the running writer)"
"$bin/poscache-inspect" -s "$seg" verify
echo; echo "== poscache-inspect watch (3 refreshes)"
"$bin/poscache-inspect" -s "$seg" watch --count 3 --interval-ms 1000 --top 5
echo; echo "== stopping the writer (SIGTERM: clean close; the segment stays readable)"
kill "$writer"; wait "$writer" || true
trap - EXIT
"$bin/poscache-inspect" -s "$seg" health || true
