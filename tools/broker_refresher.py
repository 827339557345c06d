#!/usr/bin/env python3
"""A refresher imitating a broker's positions API: it answers the writer's requests for the
`alpaca` namespace as a broker REST call would, after a latency (50 ms by default).

What a service hands poscache so that poscache can fetch what it lacks (docs/read-through.md):
a function from (account, instrument) to the position as the source has it. The broker holds a
few accounts; each position's average price follows from its executions (average cost, 6
decimals, half to even), and a request for a symbol the account does not hold is answered
`absent`. A rebuild is answered with every position of every account, a page per account.

Every fetch is counted in --count-file (one line per fetch), so that a demo can show how many
reached the broker.

    PYTHONPATH=build/python tools/broker_refresher.py --segment positions --latency 50ms
"""
import argparse
import os
import sys
import time
from decimal import ROUND_HALF_EVEN, Decimal

from poscache.refresher import Refresher

# The broker's book: account -> symbol -> executions (side, qty, price).
EXECUTIONS = {
    "PB7XR2": {
        "AAPL": [("buy", "20", "188.90"), ("buy", "10", "191.30")],
        "TSLA": [("buy", "8", "242.15"), ("sell", "3", "250.40")],
    },
    "PC4LM9": {
        "MSFT": [("buy", "12", "408.25")],
        "NVDA": [("buy", "4", "875.10"), ("buy", "2", "881.60")],
    },
}


def position(execs):
    """qty and average price (average cost) of a list of executions."""
    qty, cost = Decimal(0), Decimal(0)
    for side, q, p in execs:
        q, p = Decimal(q), Decimal(p)
        if side == "buy":
            cost += q * p
            qty += q
        else:  # a sale leaves the average price as it was
            cost -= q * (cost / qty)
            qty -= q
    avg = (cost / qty).quantize(Decimal("0.000001"), ROUND_HALF_EVEN) if qty else Decimal(0)
    return {"qty": str(qty), "avg_price": str(avg), "as_of": str(time.time_ns()),
            "order_status": "filled"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segment", default="poscache")
    ap.add_argument("--namespace", default="alpaca")
    ap.add_argument("--latency", default="50ms", help="the broker API's answer time (ms)")
    ap.add_argument("--count-file", help="append one line per fetch")
    args = ap.parse_args()
    latency = float(args.latency.rstrip("ms")) / 1000.0
    count = open(args.count_file, "a", buffering=1) if args.count_file else None
    with Refresher(args.segment, [args.namespace], name="broker-api") as r:
        print(f"broker-api: registered for '{args.namespace}' (answers in {latency * 1000:.0f} ms)",
              flush=True)
        while True:
            for req in r.next(1.0):
                time.sleep(latency)  # the REST call
                if count:
                    count.write(f"{req.reason} {req.account} {req.instrument}\n")
                if req.rebuild:
                    pages = list(EXECUTIONS.items())
                    for i, (acct, book) in enumerate(pages):
                        r.positions(req, [(acct, sym, position(ex)) for sym, ex in book.items()],
                                    more=i < len(pages) - 1)
                    continue
                execs = EXECUTIONS.get(req.account, {}).get(req.instrument)
                if execs is None:
                    r.absent(req)
                else:
                    r.upsert(req, position(execs))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
