#!/usr/bin/env python3
"""Independent reference for poscache's fill and mark arithmetic, with Python's decimal module.

Reads the file the C++ test wrote: one JSON object per command, {"cmd": <the JSON-lines command>,
"got": {"status": ..., "fields": {name: decimal string}}}, and recomputes every position from the
commands alone (average-cost method, realized on reduction, fees apart, half-even to 18 decimals,
trade ids de-duplicated). Exits 1 at the first difference, naming the command and the field.
"""
import json
import sys
from decimal import Decimal, getcontext, ROUND_HALF_EVEN

getcontext().prec = 200
STEP = Decimal("1e-18")
FIELDS = ["qty", "avg_price", "cost_basis", "realized_pnl", "fees", "mark_price", "unrealized_pnl"]


def r(x):
    return x.quantize(STEP, rounding=ROUND_HALF_EVEN)


def main(path):
    book = {}   # (ns, account, instrument) -> {field: Decimal}
    seen = set()
    checked = fills = dups = marks = 0
    for n, line in enumerate(open(path), 1):
        rec = json.loads(line)
        cmd, got = rec["cmd"], rec["got"]
        want_status = "applied"
        touched = []
        if cmd["op"] == "fill":
            key = (cmd["ns"], cmd["account"], cmd["instrument"])
            tid = (cmd["ns"], cmd.get("trade_id"))
            if cmd.get("trade_id") is not None and tid in seen:
                want_status = "duplicate"
                dups += 1
            else:
                if cmd.get("trade_id") is not None:
                    seen.add(tid)
                fills += 1
                p = book.setdefault(key, {})
                q0, a0, cb0 = p.get("qty", Decimal(0)), p.get("avg_price", Decimal(0)), p.get("cost_basis", Decimal(0))
                rp, fees = p.get("realized_pnl", Decimal(0)), p.get("fees", Decimal(0))
                price = Decimal(cmd["price"])
                s = Decimal(cmd["qty"]) * (1 if cmd["side"] == "buy" else -1)
                q1 = q0 + s
                if q0 == 0 or (q0 > 0) == (s > 0):
                    cb1 = cb0 + r(abs(s) * price)
                    a1 = r(cb1 / abs(q1))
                else:
                    closed = min(abs(s), abs(q0))
                    per = price - a0 if q0 > 0 else a0 - price
                    rp += r(closed * per)
                    if q1 == 0:
                        a1 = cb1 = Decimal(0)
                    elif (q1 > 0) == (q0 > 0):
                        a1, cb1 = a0, r(abs(q1) * a0)
                    else:
                        a1, cb1 = price, r(abs(q1) * price)
                p.update(qty=q1, avg_price=a1, cost_basis=cb1, realized_pnl=rp,
                         fees=fees + Decimal(cmd.get("fee", "0")))
                if "mark_price" in p:
                    p["unrealized_pnl"] = r(q1 * (p["mark_price"] - a1))
            touched = [key]
        elif cmd["op"] == "mark":
            marks += 1
            m = Decimal(cmd["price"])
            keys = [k for k in book if k[0] == cmd["ns"] and k[2] == cmd["instrument"]
                    and ("account" not in cmd or k[1] == cmd["account"])]
            for k in keys:
                p = book[k]
                p["mark_price"] = m
                p["unrealized_pnl"] = r(p.get("qty", Decimal(0)) * (m - p.get("avg_price", Decimal(0))))
            touched = keys
            if "account" in cmd and not keys:
                want_status = "not_found"  # a one-account mark of a position never filled
        else:
            sys.exit(f"line {n}: unexpected op {cmd['op']}")
        if got["status"] != want_status:
            sys.exit(f"line {n}: {cmd}: status {got['status']}, reference says {want_status}")
        if want_status == "applied" and cmd["op"] == "mark" and got.get("count", 0) != len(touched):
            sys.exit(f"line {n}: {cmd}: marked {got.get('count')} positions, reference {len(touched)}")
        for k in touched:
            have = got["positions"]["|".join(k)]
            if k not in book:  # a redelivered trade id on a position that never traded
                if have:
                    sys.exit(f"line {n}: {cmd}: {'|'.join(k)} exists; the reference has none")
                continue
            for f in FIELDS:
                if f not in book[k]:
                    continue
                if Decimal(have.get(f, "0")) != book[k][f]:
                    sys.exit(f"line {n}: {cmd}: {'|'.join(k)} field {f} = {have.get(f)}, "
                             f"reference {book[k][f]}")
                checked += 1
    print(f"fill reference: {n} commands ({fills} fills, {dups} duplicates, {marks} marks), "
          f"{checked} field values equal to Python's decimal")


if __name__ == "__main__":
    main(sys.argv[1])
