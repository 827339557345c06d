#!/usr/bin/env python3
"""The directions includes may run (docs/internals.md, "Layers"), checked from the includes.

Every production source belongs to one part (the longest matching path below). A part may
include its own files and the parts listed as beneath it, nothing else: the facade
(poscache/writer.hpp) sits on the writer library's parts, the programs' parts (ingest, the
refresh broker, HTTP, the daemon) on the facade, and nothing beneath includes anything above.
Prints every include that runs the wrong way, with the line, and exits 1; exits 0 when all run
one way. Python 3.11's standard library only.

    check_includes.py SOURCE_DIR
"""
import pathlib
import re
import subprocess
import sys

# (part, path prefixes). The longest prefix that matches a path names its part.
PARTS = [
    ("public", ["include/poscache/", "shm/values/"]),  # the API and the value types
    ("facade", ["include/poscache/writer.hpp", "writer/writer.cpp", "writer/writer_impl.hpp",
                "writer/writer_redis.cpp"]),
    ("shm", ["shm/"]),
    ("engine", ["writer/"]),  # the table, journal, pending changes, input rules, side tables
    ("redis-client", ["writer/net/"]),
    ("mirror", ["writer/redis/"]),
    ("follow", ["writer/follow/"]),
    ("ingest", ["writer/ingest/"]),
    ("refresh", ["writer/refresh/"]),
    ("http", ["writer/http/"]),
    ("daemon", ["writer/daemon/"]),
    ("reader", ["reader/"]),
    ("producer", ["reader/producer/"]),
    ("c-api", ["reader/c/"]),
    ("python", ["reader/python/"]),
    ("views", ["reader/views/"]),
    ("tools", ["tools/"]),
]

# What each part may include besides itself: the parts beneath it.
BENEATH = {
    "public": set(),
    "shm": {"public"},
    "engine": {"public", "shm"},
    "redis-client": {"public"},
    "mirror": {"public", "shm", "engine", "redis-client"},
    "follow": {"public", "shm", "engine", "redis-client", "mirror"},
    "facade": {"public", "shm", "engine", "redis-client", "mirror", "follow"},
    "ingest": {"public", "shm", "engine", "redis-client", "facade"},
    "refresh": {"public", "shm", "facade", "ingest"},
    "http": {"public", "shm", "facade", "ingest", "views", "reader"},
    "daemon": {"public", "shm", "engine", "redis-client", "mirror", "facade", "ingest", "refresh",
               "http"},
    "reader": {"public", "shm"},
    "producer": {"public", "shm"},
    "c-api": {"public", "shm", "reader", "producer"},
    "python": {"public", "shm", "reader", "producer"},
    "views": {"public", "shm", "reader"},
    "tools": {"public", "shm", "reader", "views", "ingest"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SOURCE = re.compile(r"\.(hpp|cpp|h|c)$")


def part_of(path: str):
    best, best_len = None, -1
    for name, prefixes in PARTS:
        for p in prefixes:
            if path.startswith(p) and len(p) > best_len:
                best, best_len = name, len(p)
    return best


def resolve(root: pathlib.Path, src: str, target: str):
    """The repository path an include names: from the top, from include/, or beside the file."""
    for candidate in (target, "include/" + target,
                      str(pathlib.PurePosixPath(src).parent / target)):
        if (root / candidate).is_file():
            return candidate
    if target.startswith("poscache/"):  # generated into the build (poscache/version.h)
        return "include/" + target
    return None


def main() -> int:
    root = pathlib.Path(sys.argv[1])
    files = subprocess.run(["git", "-C", str(root), "ls-files"], check=True, capture_output=True,
                           text=True).stdout.split()
    wrong, checked = [], 0
    for src in files:
        if not SOURCE.search(src):
            continue
        part = part_of(src)
        if part is None:  # tests/, bench/: they may use anything
            continue
        for n, line in enumerate((root / src).read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = resolve(root, src, m.group(1))
            if target is None:
                wrong.append(f"{src}:{n}: includes \"{m.group(1)}\", which is not in the tree")
                continue
            checked += 1
            to = part_of(target)
            if to is None:
                wrong.append(f"{src}:{n}: includes {target}, which is no production source")
            elif to != part and to not in BENEATH[part]:
                allowed = ", ".join(sorted(BENEATH[part])) or "nothing"
                wrong.append(f"{src}:{n}: includes {target}: {part} may not include {to} "
                             f"(beneath {part}: {allowed})")
    for w in wrong:
        print(w)
    print(f"{checked} includes checked, {len(wrong)} running the wrong way")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
