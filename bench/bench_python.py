#!/usr/bin/python3
"""What `import poscache` costs a Python service: a get() of a position with its Decimals, and a
producer push, beside a floor from the same run (a lookup in a private dict of the same
positions, already built as Decimals: what Python pays for a dict hit and a tuple key). Two
kinds of position share the table: a wallet's holding with all 7 trading fields, and a broker
account's quantity and average price.

    PYTHONPATH=build/python bench/bench_python.py [--positions 1000000] [--samples 200000]

It starts its own poscache-writer (build/tools/poscache-writer, or --writer) on a scratch
segment without Redis, fills it through a Producer, then reads random positions."""
import argparse
import os
import random
import subprocess
import time
from decimal import Decimal

import poscache


def percentiles(ns):
    ns.sort()
    pick = lambda q: ns[min(len(ns) - 1, int(q * len(ns)))]
    return f"p50 {pick(0.5):7.0f}  p99 {pick(0.99):7.0f}  p99.9 {pick(0.999):8.0f} ns (n={len(ns)})"


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def holding(i):
    """A wallet's holding with every field of the trading preset, its P&L consistent: bought qty
    at avg_price (cost_basis = qty x avg_price), marked at mark_price (unrealized = qty x (mark -
    avg)), realized from an earlier partial sale, fees at 10 bp of the cost."""
    qty = Decimal(i % 997 + 1) + Decimal("0.25")
    avg = Decimal("101.5") + Decimal(i % 89) / 100
    mark = avg + Decimal(i % 23 - 11) / 10
    cost = qty * avg
    return {"qty": qty, "avg_price": avg, "cost_basis": cost,
            "realized_pnl": Decimal(i % 41 - 20) * Decimal("1.5"),
            "unrealized_pnl": qty * (mark - avg), "mark_price": mark,
            "fees": (cost / 1000).quantize(Decimal("0.000001"))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--writer", default="build/tools/poscache-writer")
    a = ap.parse_args()
    seg = f"poscache_bench_py_{os.getpid()}"
    print(f"bench_python: {cpu_name()}, {os.cpu_count()} CPUs, {a.positions} positions")
    proc = subprocess.Popen([a.writer, "-s", seg, "--capacity", str(a.positions), "--no-redis",
                             "-n", "spot:trading", "-n", "broker:trading", "--log-level", "warn"])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                p = poscache.Producer(seg, "bench-py", capacity=65536)
                break
            except poscache.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        accounts = [f"acct{i:06d}" for i in range(a.positions // 10)]
        symbols = ["SOL", "BTC", "ETH", "USDC", "JUP", "BONK", "AAPL", "MSFT", "NVDA", "TSLA"]
        # Half the table wallets' holdings with every trading field, half broker accounts with
        # a quantity and an average price, alternating (both kinds in one 1 M-position table).
        keys = [("spot" if k % 2 == 0 else "broker", acc, sym)
                for k, (acc, sym) in enumerate((acc, sym) for acc in accounts for sym in symbols)]
        keys = keys[: a.positions]
        private = {}
        push = {"spot": [], "broker": []}
        clock = time.perf_counter_ns
        t0 = time.monotonic()
        for i, key in enumerate(keys):
            fields = holding(i)
            if key[0] == "broker":
                fields = {"qty": fields["qty"], "avg_price": fields["avg_price"]}
            private[key] = fields
            s = clock()
            seq = p.upsert(*key, fields, timeout=10.0)
            push[key[0]].append(clock() - s)
        p.wait_applied(seq, timeout=60)
        fill_s = time.monotonic() - t0
        print(f"\n1. Producer.upsert from Python ({len(keys)} pushes, "
              f"{len(keys) / fill_s / 1e3:.0f} k/s with the key and Decimal building)")
        print(f"  7 Decimal fields (a wallet's holding)       {percentiles(push['spot'])}")
        print(f"  2 Decimal fields (a broker account)         {percentiles(push['broker'])}")

        r = poscache.Reader(seg)
        print(f"\n2. Reader.get() of a random position of {a.positions}: all its fields as Decimal "
              f"(.fields), or one (['qty'])")
        p50 = {}
        for ns, what in (("spot", "7 fields"), ("broker", "2 fields")):
            sample = [k for k in random.choices(keys, k=2 * a.samples) if k[0] == ns]
            floor, got, one = [], [], []
            for key in sample:
                s = clock()
                x = private.get(key)
                floor.append(clock() - s)
            # Every Decimal built: the Position builds its fields when first asked for them.
            for n, acc, sym in sample:
                s = clock()
                x = r.get(n, acc, sym).fields
                got.append(clock() - s)
            assert x == private[(n, acc, sym)]
            # What a risk check reading one field pays: pos["qty"] builds that Decimal alone.
            for n, acc, sym in sample:
                s = clock()
                x = r.get(n, acc, sym)["qty"]
                one.append(clock() - s)
            assert x == private[(n, acc, sym)]["qty"]
            print(f"  floor: dict.get of a tuple key (private)     {percentiles(floor)}")
            print(f"  get('{ns}', ...).fields, {what}{' ' * (18 - len(ns))}{percentiles(got)}")
            print(f"  get('{ns}', ...)['qty'], 1 of {what}{' ' * (13 - len(ns))}{percentiles(one)}")
            p50[what] = sorted(got)[len(got) // 2]
        # A risk check reading 16 positions at once, one field of each: get_many overlaps the
        # lookups' misses; against the same keys read one get() at a time, rounds alternating.
        print(f"\n3. 16 random positions of {a.positions} and one field of each, per position "
              f"(mean of a batch)")
        many, single = [], []
        for _ in range(a.samples // 32):
            for timed in (single, many):
                batch = random.choices(keys, k=16)
                s = clock()
                if timed is many:
                    x = [p["qty"] for p in r.get_many(batch)]
                else:
                    x = [r.get(n, acc, sym)["qty"] for n, acc, sym in batch]
                timed.append((clock() - s) / 16)
            assert x[-1] == private[batch[-1]]["qty"]
        print(f"  [r.get(*k)['qty'] for k in batch]           {percentiles(single)}")
        print(f"  [p['qty'] for p in r.get_many(batch)]       {percentiles(many)}")
        print(f"  get_many ratio {sum(many) / sum(single):.2f} of get() from Python")
        timer = []
        for _ in range(a.samples):
            s = clock()
            timer.append(clock() - s)
        print(f"  (the timer itself: two perf_counter_ns calls {percentiles(timer)})")
        print(f"  target p50 <= 2000 ns: p50 {p50['7 fields']:.0f} ns with 7 fields, "
              f"{p50['2 fields']:.0f} ns with 2")
    finally:
        proc.terminate()
        proc.wait()
        for suffix in ("", ".lock", ".trades", ".sock", ".streams", ".readers"):
            try:
                os.unlink(f"/dev/shm/{seg}{suffix}")
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    main()
