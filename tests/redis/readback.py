#!/usr/bin/env python3
"""Reads poscache positions back from Redis with redis-py (python3-redis), the way a service in
another language would: the account index first (no SCAN), then each position's hash.

usage: readback.py PORT PREFIX ACCOUNT [ACCOUNT ...]
prints one JSON object: {"<position key>": {"<field>": "<text>", ...}, ...}
"""
import json
import sys
import time

import redis


def main() -> int:
    port, prefix, accounts = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    schema = {ns: json.loads(j) for ns, j in r.hgetall(f"{prefix}:@schema").items()}
    now_ms = int(time.time() * 1000)
    out = {}
    for account in accounts:
        # Live members: score (expiry in ms) in the future, or inf.
        for member in r.zrangebyscore(f"{prefix}:@account:{{{account}}}", f"({now_ms}", "+inf"):
            ns, instrument = member.split(":", 1)
            key = f"{prefix}:{ns}:{{{account}}}:{instrument}"
            fields = r.hgetall(key)
            if not fields:
                continue
            known = {f["name"] for f in schema[ns]["fields"]} | {"version", "source_seq", "created_at", "updated_at"}
            unknown = set(fields) - known
            if unknown:
                print(f"{key}: fields not in the published schema: {sorted(unknown)}", file=sys.stderr)
                return 1
            out[key] = fields
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
