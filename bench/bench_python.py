#!/usr/bin/python3
"""What `import poscache` costs a Python service: a get() of a position with its Decimals, and a
producer push, beside a floor from the same run (a lookup in a private dict of the same
positions, already built as Decimals: what Python pays for a dict hit and a tuple key).

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--writer", default="build/tools/poscache-writer")
    a = ap.parse_args()
    seg = f"poscache_bench_py_{os.getpid()}"
    print(f"bench_python: {cpu_name()}, {os.cpu_count()} CPUs, {a.positions} positions")
    proc = subprocess.Popen([a.writer, "-s", seg, "--capacity", str(a.positions), "--no-redis",
                             "-n", "spot:trading", "--log-level", "warn"])
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
        keys = [(acc, sym) for acc in accounts for sym in symbols][: a.positions]
        private = {}
        push = []
        clock = time.perf_counter_ns
        t0 = time.monotonic()
        for i, (acc, sym) in enumerate(keys):
            qty, avg = Decimal(i % 997) + Decimal("0.25"), Decimal("101.5")
            private[(acc, sym)] = {"qty": qty, "avg_price": avg}
            fields = {"qty": qty, "avg_price": avg}
            s = clock()
            seq = p.upsert("spot", acc, sym, fields, timeout=10.0)
            push.append(clock() - s)
        p.wait_applied(seq, timeout=60)
        fill_s = time.monotonic() - t0
        print(f"\n1. Producer.upsert from Python, 2 Decimal fields ({len(push)} pushes, "
              f"{len(push) / fill_s / 1e3:.0f} k/s with the key and Decimal building)")
        print(f"  Producer.upsert(...)                          {percentiles(push)}")

        r = poscache.Reader(seg)
        sample = [random.choice(keys) for _ in range(a.samples)]
        floor, got = [], []
        for acc, sym in sample:
            s = clock()
            x = private.get((acc, sym))
            floor.append(clock() - s)
        for acc, sym in sample:
            s = clock()
            x = r.get("spot", acc, sym)
            got.append(clock() - s)
        assert x is not None and "qty" in x.fields
        timer = []
        for _ in range(a.samples):
            s = clock()
            timer.append(clock() - s)
        print(f"\n2. Reader.get() of a random position of {a.positions}, its 2 fields as Decimal "
              f"(7 trading fields in the schema)")
        print(f"  floor: dict.get of a tuple key (private)     {percentiles(floor)}")
        print(f"  Reader.get('spot', account, instrument)      {percentiles(got)}")
        print(f"  (the timer itself: two perf_counter_ns calls {percentiles(timer)})")
        print(f"  target p50 <= 2000 ns: p50 {sorted(got)[len(got) // 2]:.0f} ns")
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
