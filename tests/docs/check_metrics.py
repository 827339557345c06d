#!/usr/bin/env python3
"""Every metric family the writer serves is in docs/http.md.

The families come from the writer itself: a poscache-writer is started on a scratch segment
with its HTTP API on a free port, and every `# TYPE` line of its /metrics is a family. Families
served only in some states (a reader table that cannot be read, say) are caught from the source
as well: every "poscache_..." name written in writer/http/metrics.cpp (less the _bucket, _sum
and _count samples of a histogram).

    check_metrics.py SOURCE_DIR WRITER_BINARY"""
import os
import re
import subprocess
import sys
import time
import urllib.request


def scraped_families(writer):
    segment = "docs_metrics_%d" % os.getpid()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCACHE_")}
    log_path = "/tmp/%s.log" % segment
    with open(log_path, "w+") as log:
        proc = subprocess.Popen(
            [writer, "-s", segment, "--capacity", "1000", "--no-redis", "--http", "127.0.0.1:0",
             "--run-for", "60s", "--no-huge-pages"], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            port = None
            deadline = time.monotonic() + 30
            while port is None and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                log.seek(0)
                m = re.search(r"http: listening on [^:\s]+:(\d+)", log.read())
                port = m and int(m.group(1))
            if port is None:
                log.seek(0)
                sys.exit("check_metrics: the writer did not start its HTTP API:\n" + log.read())
            body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            for f in os.listdir("/dev/shm"):
                if f == segment or f.startswith(segment + "."):
                    os.unlink(os.path.join("/dev/shm", f))
            os.unlink(log_path)
    return set(re.findall(r"^# TYPE (\S+) ", body.decode(), re.M))


def source_families(src):
    text = open(os.path.join(src, "writer/http/metrics.cpp"), encoding="utf-8").read()
    names = set(re.findall(r'"(poscache_[a-z0-9_]+)"', text))
    return {n for n in names
            if not any(n.endswith(s) and n[: -len(s)] in names for s in ("_bucket", "_sum", "_count"))}


def main():
    src, writer = sys.argv[1], sys.argv[2]
    served = scraped_families(writer)
    written = source_families(src)
    if len(served) < 10:
        sys.exit("check_metrics: only %d families scraped; the writer's /metrics changed shape"
                 % len(served))
    doc = open(os.path.join(src, "docs/http.md"), encoding="utf-8").read()
    documented = set(re.findall(r"`(poscache_[a-z0-9_]+)(?:\{[^`]*\})?`", doc))
    missing = sorted((served | written) - documented)
    for name in missing:
        how = "served at /metrics" if name in served else "written in writer/http/metrics.cpp"
        print("docs/http.md: the metric family %s (%s) is not documented" % (name, how))
    if missing:
        return 1
    print("check_metrics: %d families served (%d named in metrics.cpp), each in docs/http.md"
          % (len(served), len(written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
