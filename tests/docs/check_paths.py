#!/usr/bin/env python3
"""Every file the documentation or a comment cites exists, and every link lands.

- In README.md, CHANGELOG.md and docs/*.md: each relative link [text](target) names a file that
  exists (relative to the page) and, with #anchor, a heading of that page; each repository path
  written out (`shm/seqlock.hpp`, `tools/systemd/`, `include/poscache/*.hpp`) exists.
- In the comments of the sources (C, C++, Python and its stubs, shell, CMake, TOML, systemd
  files): each repository path exists.
- A citation path:LINE points within the file.
- A component may be named without its extension (`writer/journal` for its .hpp and .cpp).

A repository path is one that starts with a top-level directory of the project (shm/, writer/,
...) or is a top-level file (README.md, LICENSE, ...); build outputs (build/...) and absolute
paths (/dev/shm/...) are not checked.

    check_paths.py SOURCE_DIR"""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import markdown  # noqa: E402

TOP_DIRS = (".ci", "bench", "cmake", "config", "docs", "include", "reader", "scripts", "shm",
            "tests", "tools", "writer")
TOP_FILES = ("CMakeLists.txt", "README.md", "CHANGELOG.md", "LICENSE", ".clang-format", "setup.py",
             "pyproject.toml")
# The top-level files whose comments are checked as the sources' are.
TOP_SOURCES = ("CMakeLists.txt", "setup.py", "pyproject.toml")
PATH = re.compile(
    r"(?<![\w./<{$-])((?:%s)/[\w./*-]*[\w*/]|(?:%s)(?![\w.]))(?::(\d+))?"
    % ("|".join(re.escape(d) for d in TOP_DIRS), "|".join(re.escape(f) for f in TOP_FILES)))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SOURCE_EXT = {".c": "//", ".h": "//", ".cpp": "//", ".hpp": "//", ".py": "#", ".pyi": "#",
              ".sh": "#", ".cmake": "#", ".in": "#", ".toml": "#", ".service": "#", ".env": "#",
              ".txt": "#"}

problems = []


def exists(root, rel):
    if any(c in rel for c in "*?["):
        return bool(glob.glob(os.path.join(root, rel)))
    if os.path.exists(os.path.join(root, rel.rstrip("/"))):
        return True
    # A component named without its extension ("writer/journal": .hpp and .cpp).
    return "." not in os.path.basename(rel) and bool(glob.glob(os.path.join(root, rel + ".*")))


def check_path(root, where, rel, line):
    rel = rel.rstrip(".")
    if not exists(root, rel):
        problems.append("%s: cites %s, which does not exist" % (where, rel))
        return
    if line is not None:
        full = os.path.join(root, rel)
        n = sum(1 for _ in open(full, encoding="utf-8", errors="replace"))
        if not 1 <= int(line) <= n:
            problems.append("%s: cites %s:%s, but the file has %d lines" % (where, rel, line, n))


def check_docs(root):
    count = 0
    for rel in markdown.user_docs(root) + ["CHANGELOG.md"]:
        here = os.path.dirname(rel)
        in_fence = None
        for n, text in enumerate(open(os.path.join(root, rel), encoding="utf-8"), 1):
            m = markdown.FENCE.match(text)
            if m and (in_fence is None or text.startswith(in_fence)):
                in_fence = None if in_fence else m.group(1)
            where = "%s:%d" % (rel, n)
            if not in_fence:
                for target in LINK.findall(text):
                    if re.match(r"^[a-z]+:", target):
                        continue  # https:, mailto:
                    count += 1
                    file, _, anchor = target.partition("#")
                    dest = os.path.normpath(os.path.join(here, file)) if file else rel
                    if not os.path.exists(os.path.join(root, dest)):
                        problems.append("%s: links to %s, which does not exist" % (where, target))
                    elif anchor and dest.endswith(".md") and anchor not in markdown.anchors(root, dest):
                        problems.append("%s: links to %s, but %s has no heading with anchor #%s"
                                        % (where, target, dest, anchor))
            for p, line in PATH.findall(LINK.sub("", text)):
                count += 1
                check_path(root, where, p, line or None)
    return count


def comments(path, mark):
    """(line number, comment text) of a source file: what follows the comment mark, and the
    lines of /* */ blocks in C and C++."""
    in_block = False
    for n, text in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
        if mark == "//":
            if in_block:
                yield n, text
                in_block = "*/" not in text
                continue
            if "/*" in text and "*/" not in text.split("/*", 1)[1]:
                in_block = True
                yield n, text.split("/*", 1)[1]
                continue
        k = text.find(mark)
        if k >= 0:
            yield n, text[k + len(mark):]


def check_sources(root):
    count = 0
    for top in TOP_DIRS + ("",):
        base = os.path.join(root, top)
        walk = os.walk(base) if top else [(root, [], os.listdir(root))]
        for d, dirs, files in walk:
            dirs[:] = [x for x in dirs if not x.startswith("build")]
            for f in files:
                ext = os.path.splitext(f)[1]
                mark = SOURCE_EXT.get(ext) or ("#" if f == "CMakeLists.txt" else None)
                if mark is None or (top == "" and f not in TOP_SOURCES):
                    continue
                path = os.path.join(d, f)
                rel = os.path.relpath(path, root)
                for n, text in comments(path, mark):
                    for p, line in PATH.findall(text):
                        count += 1
                        check_path(root, "%s:%d" % (rel, n), p, line or None)
    return count


def main():
    root = sys.argv[1]
    in_docs = check_docs(root)
    in_code = check_sources(root)
    if problems:
        print("\n".join(problems))
        print("check_paths: %d citation(s) lead nowhere" % len(problems))
        return 1
    print("check_paths: %d links and paths in the documentation, %d paths in comments, all there"
          % (in_docs, in_code))
    return 0


if __name__ == "__main__":
    sys.exit(main())
