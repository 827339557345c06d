#!/usr/bin/env python3
"""A broker-sync service publishing its account's positions to poscache through a Redis stream.

What a Python service does to feed the cache: no poscache library, only the redis client it
already uses. Each position update is one stream entry whose field `cmd` is a JSON-lines
command (docs/redis-format.md, "The input stream"); the writer applies the entries in order,
acknowledges them, and copies a refused one to <stream>:rejected with the reason.

The broker reports executions; this service keeps each position's quantity and average price
as the broker statement does (Decimal, average cost, 6 decimals, half to even) and publishes
the result as an upsert of the `alpaca` namespace (qty, avg_price, as_of).

    tools/broker_stream.py --socket /tmp/redis.sock --stream positions:in --account PA3KQ0
"""
import argparse
import json
import time
from decimal import ROUND_HALF_EVEN, Decimal

import redis

# (symbol, side, quantity, price): a morning of executions on one account.
EXECUTIONS = [
    ("AAPL", "buy", "40", "189.42"),
    ("MSFT", "buy", "15", "411.07"),
    ("AAPL", "buy", "25", "190.10"),
    ("NVDA", "buy", "12.5", "879.33"),
    ("AAPL", "sell", "30", "191.85"),
    ("MSFT", "buy", "5", "409.50"),
    ("NVDA", "sell", "2.5", "884.00"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", help="redis unix socket")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--stream", default="positions:in")
    ap.add_argument("--account", default="PA3KQ0")
    ap.add_argument("--bad", action="store_true", help="also publish one malformed entry")
    a = ap.parse_args()
    r = (redis.Redis(unix_socket_path=a.socket) if a.socket else redis.Redis(a.host, a.port))

    book = {}  # symbol -> (qty, avg)
    for symbol, side, qty, price in EXECUTIONS:
        q, p = Decimal(qty), Decimal(price)
        held, avg = book.get(symbol, (Decimal(0), Decimal(0)))
        if side == "buy":
            avg = ((held * avg + q * p) / (held + q)).quantize(Decimal("0.000001"), ROUND_HALF_EVEN)
            held += q
        else:
            held -= q
            if held == 0:
                avg = Decimal(0)
        book[symbol] = (held, avg)
        cmd = {"op": "upsert", "ns": "alpaca", "account": a.account, "instrument": symbol,
               "fields": {"qty": str(held), "avg_price": str(avg), "as_of": time.time_ns()}}
        entry_id = r.xadd(a.stream, {"cmd": json.dumps(cmd)}, maxlen=1_000_000, approximate=True)
        print(f"   XADD {a.stream} {entry_id.decode()}: {side} {qty} {symbol} @ {price}"
              f" -> qty {held} avg {avg}")
    if a.bad:
        # A float where an exact decimal belongs: refused, acknowledged, copied with the reason.
        cmd = {"op": "upsert", "ns": "alpaca", "account": a.account, "instrument": "TSLA",
               "fields": {"qty": 3.3}}
        entry_id = r.xadd(a.stream, {"cmd": json.dumps(cmd)})
        print(f"   XADD {a.stream} {entry_id.decode()}: a float quantity (will be refused)")


if __name__ == "__main__":
    main()
