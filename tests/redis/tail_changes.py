#!/usr/bin/env python3
"""Tails poscache's change stream {prefix}:@changes with redis-py (python3-redis) and keeps a copy
of every position, the way a service streams deltas to its clients
(docs/redis-format.md, "The change stream").

usage: tail_changes.py PORT PREFIX [IDLE_MS]
reads from the start of the stream until no entry arrives for IDLE_MS (default 1000), then prints
one JSON object: {"<position key>": {"<field>": "<text>", ...}, ...}; a delta line per change
goes to stderr.
"""
import fnmatch
import json
import sys

import redis


def apply(r, prefix, positions, key, upsert, version):
    held = positions.get(key)
    if not upsert:
        if held and int(held["version"]) <= version:
            del positions[key]
            print(f"removed {key}", file=sys.stderr)
        return
    # the hash holds this version or a newer one (or nothing: removed since, and the removal's
    # entry follows)
    ns, account, instrument = key.split(":", 2)
    fields = r.hgetall(f"{prefix}:{ns}:{{{account}}}:{instrument}")
    if fields and (not held or int(fields["version"]) > int(held["version"])):
        positions[key] = fields
        print(f"{key} {fields}", file=sys.stderr)


def main() -> int:
    port, prefix = int(sys.argv[1]), sys.argv[2]
    idle_ms = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    positions = {}  # "ns:account:instrument" -> the hash's fields
    last_id = "0"   # "$" for only what comes after now
    while True:
        reply = r.xread({f"{prefix}:@changes": last_id}, count=1000, block=idle_ms)
        if not reply:
            break
        for entry_id, e in reply[0][1]:
            last_id = entry_id
            if e["kind"] == "changes":  # a transaction's positions: "ns:account:instrument" -> "+v"/"-v"
                for key, change in e.items():
                    if key != "kind":
                        apply(r, prefix, positions, key, change[0] == "+", int(change[1:]))
                continue
            version = int(e["version"])
            if e["kind"] == "pattern":  # scope account | namespace | glob | all
                def covered(key):
                    ns, account, instrument = key.split(":", 2)
                    return {"account": account == e["pattern"] and e["ns"] in ("", ns),
                            "namespace": ns == e["ns"],
                            "glob": fnmatch.fnmatchcase(key, e["pattern"]),
                            "all": True}[e["scope"]]
                for key in [k for k, p in positions.items()
                            if covered(k) and int(p["version"]) < version]:
                    del positions[key]
                print(f"removed {e['scope']} {e['ns']} {e['pattern']}", file=sys.stderr)
    out = {}
    for key, fields in positions.items():
        ns, account, instrument = key.split(":", 2)
        out[f"{prefix}:{ns}:{{{account}}}:{instrument}"] = fields
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
