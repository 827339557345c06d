#!/usr/bin/env python3
"""The shipped monitoring (tools/monitoring/) holds: the alert rules pass `promtool check rules`,
the Grafana dashboard is a dashboard (JSON with panels, each with a Prometheus query), and every
metric the rules and the panels name is one the writer serves (scraped from a running
poscache-writer, and written in writer/http/metrics.cpp for the states it was not in, as
docs/http.md's check does).

    check_monitoring.py SOURCE_DIR WRITER_BINARY"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs"))
from check_metrics import scraped_families, source_families  # noqa: E402


HISTOGRAMS = {"poscache_apply_seconds", "poscache_redis_sync_lag_seconds"}


def names_in(expr):
    out = set()
    for n in re.findall(r"\bposcache_[a-z0-9_]+\b", expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix) and n[: -len(suffix)] in HISTOGRAMS:
                n = n[: -len(suffix)]
        out.add(n)
    return out


def main():
    src, writer = sys.argv[1], sys.argv[2]
    mon = os.path.join(src, "tools", "monitoring")
    rules = os.path.join(mon, "poscache-alerts.yml")
    failures = []
    promtool = shutil.which("promtool")
    if promtool is None:
        sys.exit("check_monitoring: promtool is missing (Debian package prometheus)")
    r = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append("promtool check rules %s:\n%s%s" % (rules, r.stdout, r.stderr))
    exprs = {}
    for i, m in enumerate(re.finditer(r"^\s*expr:\s*(.+)$", open(rules).read(), re.M)):
        exprs["alert rule %d" % (i + 1)] = m.group(1)
    dash = json.load(open(os.path.join(mon, "poscache-dashboard.json")))
    if not dash.get("panels"):
        failures.append("poscache-dashboard.json has no panels")
    for p in dash.get("panels", []):
        if not p.get("targets"):
            failures.append("panel '%s' has no query" % p.get("title"))
        for t in p.get("targets", []):
            exprs["panel '%s' %s" % (p.get("title"), t.get("refId"))] = t.get("expr", "")
    # Served: what a writer without Redis serves, and what metrics.cpp writes in other states
    # (the Redis sync's families, a writer that mirrors).
    served = scraped_families(writer) | source_families(src)
    for where, expr in exprs.items():
        for name in sorted(names_in(expr) - served):
            failures.append("%s names %s, which the writer does not serve" % (where, name))
    if failures:
        print("\n".join(failures))
        return 1
    print("check_monitoring: %d alert rules and %d dashboard queries, every metric served"
          % (sum(1 for k in exprs if k.startswith("alert")),
             sum(1 for k in exprs if k.startswith("panel"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
