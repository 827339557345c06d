#!/usr/bin/env python3
"""No production function is over 150 lines, unless the exceptions list names it with a reason.

Production code is what ships: writer/, reader/, shm/, include/ and tools/ (C, C++ and Python);
tests and benchmarks are not held to it. A function's length runs from the line of its name to
its closing line, as universal-ctags reports them (`--fields=+ne`: its start line and end line).
A function inside another (a lambda, a nested def) is counted in the one that holds it.

The exceptions list (tests/code/long_functions.txt) has one entry a line,
`path:function  reason` (two spaces or a tab before the reason); `function` is the name with
its class (`Table::upsert_hashed`), without namespaces. The check fails on a function over the
limit that is not listed, on an entry without a reason, and on an entry no longer needed (the
function is 150 lines or fewer, or gone), so that the list stays true.

    check_function_length.py SOURCE_DIR EXCEPTIONS_FILE
    check_function_length.py --self-test   (the check fails on 151 lines and a stale entry)

Exits 77 (a skip) when universal-ctags is missing (Debian package universal-ctags, in
scripts/deps.sh), 1 under POSCACHE_TESTS_NO_SKIP (CI)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

LIMIT = 150
ROOTS = ("writer", "reader", "shm", "include", "tools")
EXTENSIONS = (".c", ".cc", ".cpp", ".h", ".hpp", ".py")
# ctags kinds that are function bodies: C and C++ functions (methods defined in a class body
# included), Python functions and methods.
FUNCTION_KINDS = ("function", "member")


def sources(root):
    out = []
    for top in ROOTS:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            out += [os.path.relpath(os.path.join(d, f), root) for f in sorted(files)
                    if f.endswith(EXTENSIONS)]
    return out


def tags(root, files):
    """ctags' JSON records of `files` (paths relative to root)."""
    run = subprocess.run(
        ["ctags", "--fields=+neK", "--languages=C,C++,Python", "--kinds-Python=fm", "-o", "-",
         "--output-format=json", "-L", "-"],
        cwd=root, input="\n".join(files), capture_output=True, text=True, check=True)
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def functions(root):
    """{(path, name): [(first line, lines)]} of every function not inside another."""
    records = tags(root, sources(root))
    namespaces = {(r["scope"] + "::" if r.get("scope") else "") + r["name"]
                  for r in records if r.get("kind") == "namespace"}
    out = {}
    for r in records:
        if r.get("kind") not in FUNCTION_KINDS or "end" not in r:
            continue
        if r.get("kind") == "member" and not r["path"].endswith(".py"):
            continue  # a C++ data member
        if r.get("scopeKind") == "function":
            continue  # a lambda or a nested def: part of the function that holds it
        # The class part of the scope stays; the namespaces before it go (the longest prefix
        # that names a namespace).
        scope = r.get("scope", "")
        parts = scope.split("::") if scope else []
        keep = parts
        for i in range(len(parts), 0, -1):
            if "::".join(parts[:i]) in namespaces:
                keep = parts[i:]
                break
        name = "<lambda>" if r["name"].startswith("__anon") else r["name"]
        sep = "." if r["path"].endswith(".py") else "::"
        qualified = sep.join(keep + [name]) if keep else name
        lines = r["end"] - r["line"] + 1
        out.setdefault((r["path"], qualified), []).append((r["line"], lines))
    return out


ENTRY = re.compile(r"^(\S+?):(\S+)(?:(?:\s{2,}|\t)\s*(.*))?$")


def exceptions(path):
    """{(path, function): (list line, reason)}, and the problems of the list itself."""
    out, problems = {}, []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = ENTRY.match(line)
            where = "%s:%d" % (os.path.basename(path), n)
            if not m:
                problems.append("%s: '%s' is not `path:function  reason`" % (where, line))
                continue
            key = (m.group(1), m.group(2))
            if not (m.group(3) or "").strip():
                problems.append("%s: %s:%s has no reason" % (where, *key))
            if key in out:
                problems.append("%s: %s:%s is listed twice" % (where, *key))
            out[key] = (n, (m.group(3) or "").strip())
    return out, problems


def check(root, exceptions_path):
    """The problems: functions over the limit not listed, and entries the list no longer needs."""
    found = functions(root)
    listed, problems = exceptions(exceptions_path)
    list_name = os.path.basename(exceptions_path)
    for (path, name), defs in sorted(found.items()):
        longest = max(lines for _, lines in defs)
        if longest <= LIMIT or (path, name) in listed:
            continue
        for first, lines in defs:
            if lines > LIMIT:
                problems.append(
                    "%s:%d: %s is %d lines, over the limit of %d: split it, or list it in %s "
                    "with the reason it stays whole" % (path, first, name, lines, LIMIT, list_name))
    for (path, name), (n, _) in sorted(listed.items(), key=lambda kv: kv[1][0]):
        defs = found.get((path, name))
        if defs is None:
            problems.append("%s:%d: %s:%s is listed, but no such function was found: remove the "
                            "entry (or correct its name)" % (list_name, n, path, name))
        elif max(lines for _, lines in defs) <= LIMIT:
            problems.append("%s:%d: %s:%s is listed, but is %d lines now: remove the entry"
                            % (list_name, n, path, name, max(lines for _, lines in defs)))
    return problems, found, listed


def report(root, exceptions_path):
    problems, found, listed = check(root, exceptions_path)
    longest = sorted(((max(l for _, l in d), p, n) for (p, n), d in found.items()), reverse=True)
    print("check_function_length: %d functions in %s; the longest:" % (len(found), ", ".join(ROOTS)))
    for lines, path, name in longest[:12]:
        print("  %4d  %s:%s%s" % (lines, path, name, "  (listed)" if (path, name) in listed else ""))
    for p in problems:
        print("PROBLEM: " + p)
    return 1 if problems else 0


def body(name, lines):
    """A C++ function of exactly `lines` lines, its name on the first."""
    return "int %s() {\n%s  return 0;\n}\n" % (name, "  int x = 0;\n" * (lines - 3))


# The self-test's made-up source file, written into a temporary tree (not a file of the project).
FIXTURE = os.path.join("writer", "long.cpp")


def self_test():
    """The check fails on a function of 151 lines, passes one of 150, and keeps the list true."""
    failures = []
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "writer"))
        os.makedirs(os.path.join(root, "tests"))
        src = os.path.join(root, FIXTURE)
        with open(src, "w") as f:
            f.write("namespace poscache {\nstruct Table {\n  int inline_member() {\n"
                    + "    int y = 0;\n" * 150 + "    return y;\n  }\n};\n"
                    + body("at_the_limit", LIMIT) + body("over_the_limit", LIMIT + 1)
                    + "}  // namespace poscache\n")
        listed = os.path.join(root, "long_functions.txt")

        def run(entries):
            with open(listed, "w") as f:
                f.write("# the exceptions\n" + "".join(e + "\n" for e in entries))
            return check(root, listed)[0]

        def expect(what, problems, needles):
            text = "\n".join(problems)
            if len(problems) != len(needles) or any(n not in text for n in needles):
                failures.append("%s: expected %s, got %s" % (what, needles, problems or "none"))

        expect("151 lines, not listed",
               run([FIXTURE + ":Table::inline_member  a member defined in its class"]),
               ["over_the_limit is 151 lines"])
        expect("a member defined in its class, not listed",
               run([FIXTURE + ":over_the_limit  listed"]), ["Table::inline_member is 153"])
        expect("both listed", run([FIXTURE + ":over_the_limit  a reason",
                                   FIXTURE + ":Table::inline_member  a reason"]), [])
        expect("an entry no longer needed",
               run([FIXTURE + ":over_the_limit  a reason",
                    FIXTURE + ":Table::inline_member  a reason",
                    FIXTURE + ":at_the_limit  150 lines is allowed"]),
               ["at_the_limit is listed, but is 150 lines now"])
        expect("an entry naming nothing",
               run([FIXTURE + ":over_the_limit  a reason",
                    FIXTURE + ":Table::inline_member  a reason",
                    "writer/gone.cpp:f  was split"]), ["no such function"])
        expect("an entry without a reason",
               run([FIXTURE + ":over_the_limit",
                    FIXTURE + ":Table::inline_member  a reason"]), ["has no reason"])
    for f in failures:
        print("SELF-TEST FAILED: " + f)
    if not failures:
        print("check_function_length: self-test passed (151 lines fail, 150 pass, the list is "
              "kept true)")
    return 1 if failures else 0


def main():
    if shutil.which("ctags") is None or b"Universal Ctags" not in subprocess.run(
            ["ctags", "--version"], capture_output=True).stdout:
        print("universal-ctags is missing (Debian package universal-ctags; scripts/deps.sh)")
        return 1 if os.environ.get("POSCACHE_TESTS_NO_SKIP") else 77
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    return report(sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    sys.exit(main())
