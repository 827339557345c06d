#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a private redis-server (unix socket in a
# temporary directory), a writer mirrored to that Redis with a synthetic load on it, producers
# that feed it as users do (poscache-feed: fills, marks, lending health through a producer ring
# and the JSON-lines socket), a reader process against it, the inspector's view and what Redis
# holds, then restarts the writer on a fresh segment to show the warm start.
set -euo pipefail
cd "$(dirname "$0")/.."
"$PWD/scripts/deps.sh"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null  # as scripts/test.sh builds it
cmake --build build -j"$(nproc)" --target poscache-writer poscache-inspect poscache-reader-demo poscache-feed poscache_python
bin=build/tools
seg=poscache_demo

tmp=$(mktemp -d /tmp/poscache_demo_XXXXXX)
sock=$tmp/redis.sock
redis-server --port 0 --unixsocket "$sock" --dir "$tmp" --save "" --appendonly no \
  --logfile "$tmp/redis.log" --daemonize yes --pidfile "$tmp/redis.pid"
for _ in $(seq 100); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
writer=""
follower=""
standby=""
refresher=""
cleanup() {
  set +e  # clean up everything, whatever already exited
  for p in "$writer" "$follower" "$standby" "$refresher"; do [ -n "$p" ] && { kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; }; done
  for s in "${seg}_follower" "${seg}_standby" "${seg}_rival"; do "$bin/poscache-writer" -s "$s" --remove >/dev/null 2>&1; done
  [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true
  sleep 0.2; rm -rf "$tmp"
}
trap cleanup EXIT

# The HTTP API on a free loopback port, admin on with a token only this user can read.
http_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(umask 077; head -c 24 /dev/urandom | base64 > "$tmp/admin.token")
# GET or POST the writer's HTTP API (Debian's python3: curl may not be installed).
http() {
  /usr/bin/python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
url, body = sys.argv[1], (sys.argv[2].encode() if len(sys.argv) > 2 else None)
req = urllib.request.Request(url, data=body)
if len(sys.argv) > 3: req.add_header("Authorization", "Bearer " + sys.argv[3])
try: r = urllib.request.urlopen(req, timeout=5); print(r.status, r.read().decode().rstrip())
except urllib.error.HTTPError as e: print(e.code, e.read().decode().rstrip())
PY
}

echo "== writer: a synthetic load of 50k updates/s over 1000 accounts x 20 instruments (config/demo.toml), mirrored to redis at $sock, HTTP on 127.0.0.1:$http_port"
"$bin/poscache-writer" --config config/demo.toml --segment "$seg" --fresh --stats-interval 2s --redis-socket "$sock" \
  --stream positions:in --http "127.0.0.1:$http_port" --admin-token-file "$tmp/admin.token" &
writer=$!
for _ in $(seq 100); do "$bin/poscache-inspect" -s "$seg" health >/dev/null 2>&1 && break; sleep 0.05; done

wallet=7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU
echo; echo "== a producer (poscache-feed, through its own shared-memory ring): fills on one wallet"
"$bin/poscache-feed" -s "$seg" fill spot "$wallet" SOL buy 10 142.50 --fee 0.0713 --trade-id demo-1
"$bin/poscache-feed" -s "$seg" fill spot "$wallet" SOL buy 10 146.10 --fee 0.0731 --trade-id demo-2
"$bin/poscache-feed" -s "$seg" fill spot "$wallet" SOL sell 5 151.00 --fee 0.0378 --trade-id demo-3
echo "   the same fill again (redelivered trade id demo-3, over the socket, which says what happened):"
"$bin/poscache-feed" -s "$seg" --via socket fill spot "$wallet" SOL sell 5 151.00 --trade-id demo-3
"$bin/poscache-feed" -s "$seg" --via socket mark spot SOL 149.25
echo "   qty 15, average 144.30, realized 5 x (151.00 - 144.30) = 33.50, unrealized 15 x (149.25 - 144.30) = 74.25:"
"$bin/poscache-inspect" -s "$seg" get spot "$wallet" SOL
echo "   over the ring too, every message's outcome comes back (the same trade id again):"
"$bin/poscache-feed" -s "$seg" fill spot "$wallet" SOL sell 5 151.00 --trade-id demo-3
echo "   a trade and its cash leg as ONE batch, seen together or not at all: buy 0.5 ETH @ 3150.00"
echo "   (fee 0.05) and pay 1575.05 USDC from the wallet's 5000 (poscache-feed batch, docs/producers.md):"
"$bin/poscache-feed" -s "$seg" fill spot "$wallet" USDC buy 5000 1 --trade-id demo-deposit
cat > "$tmp/trade.jsonl" <<TRADE
{"op":"fill","ns":"spot","account":"$wallet","instrument":"ETH","side":"buy","qty":"0.5","price":"3150.00","fee":"0.05","trade_id":"demo-4"}
{"op":"fill","ns":"spot","account":"$wallet","instrument":"USDC","side":"sell","qty":"1575.05","price":"1","trade_id":"demo-4-cash"}
TRADE
"$bin/poscache-feed" -s "$seg" batch "$tmp/trade.jsonl"
"$bin/poscache-inspect" -s "$seg" ls --account "$wallet"
echo "   a command the schema cannot take is refused, naming why (exit 1):"
"$bin/poscache-feed" -s "$seg" --via socket fill lending "$wallet" SOL buy 1 1 || true

echo; echo "== a market for 4 s (poscache-feed simulate): 8 wallets trading SOL/ETH/BTC/JUP, marks, quotes, 6 borrowers"
# Meanwhile a Python service streams deltas from the change ring (what its clients would be
# pushed): which keys changed, in order; it get()s the ones it shows for their values.
PYTHONPATH=build/python /usr/bin/python3 - "$seg" "$wallet" > "$tmp/follower.txt" 2>&1 <<'PY' &
import sys, time, collections, poscache
from decimal import Decimal
def show(p, k):  # one field, built alone (p[k]); Decimals as plain digits
    v = p[k] if k in p else None
    return "-" if v is None else format(v, "f") if isinstance(v, Decimal) else str(v)
r = poscache.Reader(sys.argv[1])
at, kinds, resyncs, wallet, lending = r.change_position(), collections.Counter(), 0, [], []
deadline = time.monotonic() + 4.5
while time.monotonic() < deadline:
    r.wait_for_changes(at, timeout=0.1)
    status, at, changes = r.changes(at)
    for c in changes:
        kinds[c["kind"]] += 1
        if c.get("account") == sys.argv[2] and c["kind"] == "updated" and len(wallet) < 3:
            p = r.get(c["namespace"], c["account"], c["instrument"])
            if p is not None:
                wallet.append(f"{c['namespace']}:{c['instrument']} v{c['version']}: qty {show(p, 'qty')} "
                             f"realized {show(p, 'realized_pnl')} unrealized {show(p, 'unrealized_pnl')}")
        if (c["namespace"] == "lending" and c["kind"] == "updated" and c["account"].startswith("0x")
                and len(lending) < 3):
            p = r.get("lending", c["account"], c["instrument"])
            if p is not None:
                lending.append(f"lending:{c['account'][:10]}..:{c['instrument']} v{c['version']}: health "
                             f"{show(p, 'health_factor')} blocks_unhealthy {show(p, 'blocks_unhealthy')} "
                             f"collateral {show(p, 'collateral_asset')} debt {show(p, 'debt_asset')}")
    if status != "ok":
        resyncs += 1  # lapped or writer_restarted: a real service re-reads what it serves here
print(f"   a Python follower (r.changes) streamed {sum(kinds.values())} changes in order: " +
      ", ".join(f"{k} {n}" for k, n in kinds.most_common()) + f"; resyncs {resyncs}")
for line in wallet + lending:
    print("     " + line)
PY
follower=$!
"$bin/poscache-feed" -s "$seg" simulate --seconds 4
wait "$follower" || true
cat "$tmp/follower.txt"
echo "   the wallet's book after the market moved (every number follows from its fills and the last mark):"
"$bin/poscache-inspect" -s "$seg" ls --account "$wallet" --limit 5
echo "   lending positions: health = collateral x price x 0.825 / debt; blocks_unhealthy counts blocks below 1:"
"$bin/poscache-inspect" -s "$seg" ls --glob 'lending:0x*' --limit 6
echo "   the producers the writer served (poscache-inspect producers):"
"$bin/poscache-inspect" -s "$seg" producers
echo; echo "== a Python service (tools/broker_stream.py) publishing through the Redis stream positions:in with redis-py"
# (Debian's python3 and python3-redis: the interpreter a Debian service runs under)
/usr/bin/python3 tools/broker_stream.py --socket "$sock" --stream positions:in --account PA3KQ0 --bad
sleep 0.3
echo "   the broker account as readers see it (AAPL 35 @ 189.681538, MSFT 20 @ 410.6775, NVDA 10 @ 879.33):"
"$bin/poscache-inspect" -s "$seg" ls --account PA3KQ0
echo "   every entry acknowledged (XPENDING), the refused one copied with its reason to positions:in:rejected:"
redis-cli -s "$sock" xpending positions:in "poscache:$(hostname):$seg" | head -1 | sed 's/^/   pending: /'
redis-cli -s "$sock" --no-raw xrange positions:in:rejected - + | sed -n 's/^/   /p' | head -12
echo; echo "== read-through: a refresher imitating a broker's positions API that answers in 50 ms (tools/broker_refresher.py)"
PYTHONPATH=build/python /usr/bin/python3 tools/broker_refresher.py --segment "$seg" --latency 50ms \
  --count-file "$tmp/fetches" > "$tmp/refresher.log" 2>&1 &
refresher=$!
for _ in $(seq 200); do grep -q registered "$tmp/refresher.log" && break; sleep 0.05; done
sed 's/^/   /' "$tmp/refresher.log"
fetches() { cat "$tmp/fetches" 2>/dev/null | wc -l; }
# One position over HTTP, in one line: status, stale, age, cached, what a fetch did, qty @ avg.
pos() {
  /usr/bin/python3 - "http://127.0.0.1:$http_port/v1/positions/alpaca/$1" <<'PY'
import json, sys, urllib.error, urllib.request
try:
    j = json.load(urllib.request.urlopen(sys.argv[1]))
except urllib.error.HTTPError as e:
    j = json.load(e)
f = j.get("fields", {})
print("  ", j["status"], " stale", j.get("stale"), " age %.2fs" % j.get("age_seconds", 0),
      " cached", j["cached"], (" refresh " + j["refresh"]) if "refresh" in j else "",
      (" qty %s @ %s" % (f["qty"].rstrip("0").rstrip("."), f["avg_price"])) if f else "")
PY
}
echo "   PB7XR2's AAPL as an older statement left it (25 @ 187.50), read 2.2 s later: stale"
echo "   (alpaca: stale_after 2s), served at once with its age; the read asked the broker:"
"$bin/poscache-feed" -s "$seg" upsert alpaca PB7XR2 AAPL qty=25 avg_price=187.50 > /dev/null
sleep 2.2
pos PB7XR2/AAPL
sleep 0.2
echo "   the next read, 200 ms later: fresh, the broker's 30 @ (20 x 188.90 + 10 x 191.30) / 30:"
pos PB7XR2/AAPL
echo "   a key the cache lacks, read through (?timeout=1s waits for the broker's answer):"
pos "PC4LM9/NVDA?timeout=1s"
echo "   ?refresh=true fetches even a fresh copy:"
pos "PC4LM9/NVDA?refresh=true"
echo "   a symbol the account does not hold: absent, and remembered (negative_ttl) rather than asked again:"
pos "PC4LM9/AMZN?timeout=1s"
pos "PC4LM9/AMZN?timeout=1s"
"$bin/poscache-feed" -s "$seg" upsert alpaca PC4LM9 MSFT qty=1 avg_price=400 > /dev/null
sleep 2.2
before=$(fetches)
echo "   a stampede: 8 processes read PC4LM9's MSFT, stale, 1000 times each, at once:"
PYTHONPATH=build/python /usr/bin/python3 - "$seg" <<'PY'
import multiprocessing, sys, poscache
def reads(seg):
    r = poscache.Reader(seg)
    return sum(1 for _ in range(1000) if r.get("alpaca", "PC4LM9", "MSFT").stale)
with multiprocessing.Pool(8) as pool:
    stale = pool.map(reads, [sys.argv[1]] * 8)
print("   %d stale reads served at once, no reader waited" % sum(stale))
PY
sleep 0.3
echo "   ... and the broker was asked $(( $(fetches) - before )) time(s); the key is fresh again:"
pos PC4LM9/MSFT
echo "   read-through counters (poscache-inspect stats):"
"$bin/poscache-inspect" -s "$seg" stats | grep '^refresh' | sed 's/^/   /'
kill "$refresher"; wait "$refresher" 2>/dev/null || true
refresher=""

echo; echo "== a load burst: 1 producer ring pushing as fast as it can for 2 s"
"$bin/poscache-feed" -s "$seg" load --rate 0 --seconds 2

echo; echo "== a reader process (poscache-reader-demo) reading while the writer updates"
"$bin/poscache-reader-demo" --segment "$seg" --seconds 3 --accounts 1000 --instruments 20
echo; echo "== a Python service reading the wallet (import poscache: exact Decimals, no Redis round trip)"
PYTHONPATH=build/python /usr/bin/python3 - "$seg" "$wallet" <<'PY'
import sys, poscache
r = poscache.Reader(sys.argv[1])
p = r.get("spot", sys.argv[2], "SOL")
print(f"   {p.ns}:{p.account[:8]}..:{p.instrument} qty {p['qty']:f} avg {p['avg_price']:f} "
      f"realized {p['realized_pnl']:f} (version {p.version}, {p.age * 1e3:.1f} ms old)")
print(f"   all its fields (p.fields): " + ", ".join(f"{k} {v:f}" for k, v in p.fields.items()))
book = r.snapshot(sys.argv[2])  # every position of the wallet, as of one moment
print(f"   the whole wallet at one moment (r.snapshot): {len(book)} positions: " +
      ", ".join(f"{x.ns}:{x.instrument} qty {x['qty']:f}" for x in book))
PY
echo "   what reader processes' get() calls answered (poscache-inspect readers; readers that left"
echo "   are in the reaped row):"
sleep 1.2  # the writer reaps records of readers that left about once a second
"$bin/poscache-inspect" -s "$seg" readers | sed 's/^/   /'

echo; echo "== the writer's HTTP API (--http): what an operator's tools and other services use"
echo "   GET /health (200 or 503, the inspector's rule):"
http "http://127.0.0.1:$http_port/health" | sed 's/^/   /'
echo "   GET /v1/positions/spot/$wallet/SOL (exact decimal strings):"
http "http://127.0.0.1:$http_port/v1/positions/spot/$wallet/SOL" | sed 's/^/   /'
echo "   GET /v1/accounts/$wallet (the whole account at one moment: Reader::snapshot):"
/usr/bin/python3 - "http://127.0.0.1:$http_port/v1/accounts/$wallet" <<'PY'
import sys, json, urllib.request
j = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))
for p in j["positions"]:
    print(f"   {p['namespace']}:{p['instrument']} " +
          " ".join(f"{k}={v}" for k, v in list(p["fields"].items())[:3]) + f" (version {p['version']})")
PY
echo "   GET /metrics (Prometheus; a few of its lines):"
http "http://127.0.0.1:$http_port/metrics" | grep -E '^(poscache_positions|poscache_namespace_positions|poscache_producer_applied_total|poscache_redis_dirty|poscache_apply_seconds_(count|bucket\{le="1e-06"))' | sed 's/^/   /'
echo "   POST /v1/invalidate {\"ns\":\"quotes\"} without the token, then with it (the writer logs the caller):"
http "http://127.0.0.1:$http_port/v1/invalidate" '{"ns":"quotes"}' | sed 's/^/   /'
http "http://127.0.0.1:$http_port/v1/invalidate" '{"ns":"quotes"}' "$(cat "$tmp/admin.token")" | sed 's/^/   /'

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
echo; echo "== the same position in Redis (redis-cli HGETALL): exact decimal text, version, timestamps"
redis-cli -s "$sock" hgetall "poscache:v1:spot:{acct000007}:SOL" | paste - - | head -12
echo; echo "== an account's positions, listed without SCAN (ZRANGE poscache:v1:@account:{acct000042})"
redis-cli -s "$sock" zrange "poscache:v1:@account:{acct000042}" 0 4 withscores | paste - -
echo "   positions in Redis: $(redis-cli -s "$sock" --scan --pattern 'poscache:v1:*:{*}:*' | wc -l)"
echo "   of them quotes: $(redis-cli -s "$sock" --scan --pattern 'poscache:v1:quotes:{*}:*' | wc -l) (sync = \"none\": the segment holds $("$bin/poscache-inspect" -s "$seg" --json stats | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["namespaces"][2]["live"])') quotes, Redis none)"
echo; echo "== one writer per Redis prefix: the lease (HGETALL poscache:v1:@writer), and a second writer refused"
redis-cli -s "$sock" hgetall "poscache:v1:@writer" | paste - - | sed 's/^/   /'
"$bin/poscache-writer" --config config/demo.toml --segment "${seg}_rival" --fresh --redis-socket "$sock" \
  --no-generate --no-socket --run-for 1s 2>&1 | grep -E "held by another writer" | sed 's/^/   /' || true
"$bin/poscache-writer" -s "${seg}_rival" --remove >/dev/null
echo; echo "== the change stream (XREVRANGE poscache:v1:@changes + - COUNT 1): a transaction's changes, in the order Redis applied them"
redis-cli -s "$sock" xrevrange poscache:v1:@changes + - COUNT 1 | awk 'NR <= 9' | { read -r id; echo "   entry $id"; paste -d' ' - - | sed 's/^/     /'; }
echo "   ... ($(redis-cli -s "$sock" xlen poscache:v1:@changes) entries kept: the last 60 s)"
echo; echo "== a follower and a standby, as on two other hosts (segments of their own): --follow, --standby"
"$bin/poscache-writer" --config config/demo.toml --segment "${seg}_follower" --fresh --redis-socket "$sock" \
  --follow --no-generate --stats-interval 1s > "$tmp/follower.log" 2>&1 &
follower=$!
"$bin/poscache-writer" --config config/demo.toml --segment "${seg}_standby" --fresh --redis-socket "$sock" \
  --standby --no-generate > "$tmp/standby.log" 2>&1 &
standby=$!
for _ in $(seq 200); do grep -q "tailing" "$tmp/follower.log" && grep -q "tailing" "$tmp/standby.log" && break; sleep 0.05; done
sleep 1.5
grep -hE "follow: loaded" "$tmp/follower.log" | sed 's/^.*poscache-writer: /   /'
echo "   the follower, while the writer goes on at 50k updates/s (poscache-inspect stats, health):"
"$bin/poscache-inspect" -s "${seg}_follower" stats | grep -E "^follow" | sed 's/^/   /'
"$bin/poscache-inspect" -s "${seg}_follower" health | sed 's/^/   /' || true
# One line of a wallet's SOL book from a segment (exact decimals, as readers see them).
book() {
  "$bin/poscache-inspect" -s "$1" --json get spot "$wallet" SOL | /usr/bin/python3 -c '
import json, sys
f = json.load(sys.stdin)["fields"]
print("qty", f["qty"], " avg_price", f["avg_price"], " realized_pnl", f["realized_pnl"])'
}
echo "   the wallet's SOL on the follower (the writer's numbers, read from this host's shared memory):"
echo "   $(book "${seg}_follower")"
echo; echo "== the writer killed with -9 (its host lost): the standby applies the stream, takes the lease, opens its socket"
kill -9 "$writer"; wait "$writer" 2>/dev/null || true
writer=""
for _ in $(seq 400); do grep -q "ingest socket" "$tmp/standby.log" && break; sleep 0.05; done
grep -hE "standby: promoted: the lease|ingest socket" "$tmp/standby.log" | sed 's/^.*poscache-writer: /   /'
echo "   a fill on the new writer (poscache-feed -s ${seg}_standby): sell 5 SOL @ 152.00"
"$bin/poscache-feed" -s "${seg}_standby" fill spot "$wallet" SOL sell 5 152.00 --trade-id demo-after-failover
sleep 0.3
echo "   the wallet on the standby, now the writer, and on the follower, which follows it (qty 5 less, realized_pnl up by 5 x (152.00 - avg_price)):"
for s in "${seg}_standby" "${seg}_follower"; do echo "   $s: $(book "$s")"; done
"$bin/poscache-inspect" -s "${seg}_follower" health | sed 's/^/   /' || true
kill "$follower"; wait "$follower" || true
follower=""
echo; echo "== stopping the new writer (SIGTERM: clean close, unsynced changes written to Redis first, the lease released)"
kill "$standby"; wait "$standby" || true
standby=""
grep -hE "closed segment" "$tmp/standby.log" | sed 's/^.*poscache-writer: /   /'
echo "   their files removed (poscache-writer -s NAME --remove: every file of a segment, refused while its writer lives):"
for s in "${seg}_follower" "${seg}_standby"; do "$bin/poscache-writer" -s "$s" --remove | sed 's/^/     /'; done
echo; echo "== warm start: a writer on a brand-new segment (--fresh) loads every position from Redis"
"$bin/poscache-writer" --config config/demo.toml --segment "$seg" --fresh --redis-socket "$sock" \
  --no-generate --run-for 1s 2>&1 | grep -E "warm start|created|closed"
"$bin/poscache-inspect" -s "$seg" stats | head -4
"$bin/poscache-inspect" -s "$seg" health || true
echo; echo "== a rebuild from the source: Redis flushed and a fresh segment, nothing to warm-start from;"
echo "   poscache-feed rebuild alpaca asks the broker's refresher for the whole namespace"
redis-cli -s "$sock" flushall > /dev/null
"$bin/poscache-writer" --config config/demo.toml --segment "$seg" --fresh --redis-socket "$sock" \
  --no-generate > "$tmp/rebuild.log" 2>&1 &
writer=$!
for _ in $(seq 200); do grep -q "refresh: namespace" "$tmp/rebuild.log" && break; sleep 0.05; done
PYTHONPATH=build/python /usr/bin/python3 tools/broker_refresher.py --segment "$seg" --latency 50ms \
  > "$tmp/refresher.log" 2>&1 &
refresher=$!
for _ in $(seq 200); do grep -q registered "$tmp/refresher.log" && break; sleep 0.05; done
"$bin/poscache-feed" -s "$seg" rebuild alpaca --wait 10s | sed 's/^/   /'
"$bin/poscache-inspect" -s "$seg" ls --glob 'alpaca:*' | sed 's/^/   /'
sleep 0.5
echo "   and in Redis again: $(redis-cli -s "$sock" --scan --pattern 'poscache:v1:alpaca:*' | wc -l) alpaca positions"
kill "$refresher" "$writer"; wait "$refresher" "$writer" 2>/dev/null || true
refresher=""; writer=""
echo; echo "== the segment '$seg' stays for you to look at (poscache-inspect -s $seg stats);"
echo "   remove its files with: build/tools/poscache-writer -s $seg --remove"
