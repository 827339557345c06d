#!/usr/bin/env python3
"""Every configuration key poscache-writer accepts is in docs/configuration.md and in
config/demo.toml, and demo.toml stays a file the writer accepts, with every commented-out key
uncommented too.

The keys come from the code, not from a list kept here: each table's keys are the list that
writer/daemon/config.cpp passes to only_keys() (the check that refuses an unknown key), and
every key the writer's --print-config prints must be one of them (or a flag-only setting that
configuration.md names), so a key added by another route is caught as well.

    check_config_keys.py SOURCE_DIR WRITER_BINARY"""
import os
import re
import subprocess
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import markdown  # noqa: E402

# --print-config settings that are not keys of the file: flags only, documented as flags.
FLAG_ONLY = {"segment.fresh": "--fresh"}
# How a table is named in only_keys() and where its keys live in a parsed TOML document.
TOP = "the top level"

failures = []


def fail(msg):
    failures.append(msg)


def accepted_keys(src):
    """{table: [keys]} from the only_keys() calls of config.cpp."""
    text = open(os.path.join(src, "writer/daemon/config.cpp"), encoding="utf-8").read()
    calls = re.findall(r'only_keys\(\s*origin\s*,[^,]+,\s*"([^"]+)"\s*,\s*\{([^}]*)\}\s*\)', text, re.S)
    tables = {}
    for where, body in calls:
        tables.setdefault(where, []).extend(re.findall(r'"([^"]+)"', body))
    # Guard against this parser silently finding nothing after a refactor of config.cpp.
    expected = {TOP, "[segment]", "[[namespace]]", "a field", "[generator]", "[ingest]", "[redis]",
                "[http]", "[daemon]"}
    if not expected <= set(tables):
        sys.exit("check_config_keys: only_keys() calls for %s not found in writer/daemon/config.cpp;"
                 " update this check to read the keys where they are now"
                 % sorted(expected - set(tables)))
    return tables


def toml_name(where):
    return where.strip("[]")


def check_printed(tables, writer, src):
    """--print-config is TOML, and every key it sets is an accepted key of its table."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCACHE_")}
    out = subprocess.run(
        [writer, "--config", os.path.join(src, "config/demo.toml"), "--redis-host", "localhost",
         "--http", "127.0.0.1:9108", "--stream", "in", "--generate", "--print-config"],
        env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail("poscache-writer --print-config failed: " + out.stderr.strip())
        return
    try:
        doc = tomllib.loads(out.stdout)
    except tomllib.TOMLDecodeError as e:
        fail("poscache-writer --print-config does not print TOML (%s):\n%s" % (e, out.stdout))
        return
    for table, body in doc.items():
        if table == "namespace":
            for ns in body:
                for key, value in ns.items():
                    if key not in tables["[[namespace]]"]:
                        fail("--print-config prints [[namespace]] %s, which config.cpp's "
                             "only_keys() does not list" % key)
                    if key == "fields":
                        for f in value:
                            for k in f:
                                if k not in tables["a field"]:
                                    fail("--print-config prints field key %s, which "
                                         "only_keys() for a field does not list" % k)
            continue
        if not isinstance(body, dict):
            fail("--print-config sets %s at the top level, outside every table" % table)
            continue
        for key in body:
            if key not in tables.get("[%s]" % table, []):
                fail("--print-config prints %s.%s, which config.cpp's only_keys() for [%s] does "
                     "not list" % (table, key, table))
    # Flag-only settings are printed as comments naming their flag.
    for key, flag in FLAG_ONLY.items():
        if ("# " + key.split(".", 1)[1] + " = ") not in out.stdout:
            fail("--print-config does not show %s (the %s flag) as a comment" % (key, flag))


def check_reference(tables, src):
    """configuration.md: each table has a section whose tables list its keys."""
    rel = "docs/configuration.md"
    secs = markdown.sections(src, rel)
    text = open(os.path.join(src, rel), encoding="utf-8").read()
    for flag in FLAG_ONLY.values():
        if "`%s`" % flag not in text:
            fail("%s: the flag-only setting `%s` is not described" % (rel, flag))
    for where, keys in tables.items():
        sec = [body for head, _, body in secs if where.lower() in head.lower()]
        if not sec:
            fail("%s: no section whose heading names %s" % (rel, where))
            continue
        body = "\n".join(sec[0])
        if where == TOP:
            for k in keys:
                if "`[%s]`" % k not in body and "`[[%s]]`" % k not in body:
                    fail("%s: the table [%s] is not named under %r" % (rel, k, where))
            continue
        documented = set(re.findall(r"^\|\s*`([a-z_]+)`\s*\|", body, re.M))
        for k in keys:
            if k not in documented:
                fail("%s: key '%s' of %s has no row in its section" % (rel, k, where))


def uncomment(text):
    """demo.toml with its commented-out tables and keys ('# key = value') made live."""
    out = []
    for line in text.split("\n"):
        m = re.match(r"^#\s?(\[\[?[a-z_]+\]\]?\s*(#.*)?|[a-z_]+\s*=.*)$", line)
        out.append(m.group(1) if m else line)
    return "\n".join(out)


def check_demo(tables, writer, src):
    rel = "config/demo.toml"
    text = open(os.path.join(src, rel), encoding="utf-8").read()
    full = uncomment(text)
    try:
        doc = tomllib.loads(full)
    except tomllib.TOMLDecodeError as e:
        fail("%s with its commented keys uncommented is not TOML: %s" % (rel, e))
        return
    present = {TOP: set(doc)}
    for where in tables:
        if where == TOP:
            continue
        if where == "[[namespace]]":
            present[where] = {k for ns in doc.get("namespace", []) for k in ns}
        elif where == "a field":
            present[where] = {k for ns in doc.get("namespace", []) for f in ns.get("fields", [])
                              for k in f}
        else:
            present[where] = set(doc.get(toml_name(where), {}))
    for where, keys in tables.items():
        for k in keys:
            if k not in present[where]:
                fail("%s: key '%s' of %s is missing (set it, or list it commented out)"
                     % (rel, k, where))
    # The writer must accept the demo as it is and with every key uncommented.
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCACHE_")}
    with tempfile.TemporaryDirectory() as tmp:
        everything = os.path.join(tmp, "demo-all-keys.toml")
        open(everything, "w", encoding="utf-8").write(full)
        for path, what in ((os.path.join(src, rel), rel),
                           (everything, rel + " with every key uncommented")):
            r = subprocess.run([writer, "--config", path, "--print-config"], env=env,
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                fail("poscache-writer refuses %s: %s" % (what, r.stderr.strip()))


def main():
    src, writer = sys.argv[1], sys.argv[2]
    tables = accepted_keys(src)
    check_printed(tables, writer, src)
    check_reference(tables, src)
    check_demo(tables, writer, src)
    n = sum(len(v) for v in tables.values())
    if failures:
        print("\n".join(failures))
        print("check_config_keys: %d problem(s) in the documentation of %d keys" % (len(failures), n))
        return 1
    print("check_config_keys: %d keys in %d tables, each in docs/configuration.md and "
          "config/demo.toml; the writer accepts demo.toml with every key" % (n, len(tables)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
