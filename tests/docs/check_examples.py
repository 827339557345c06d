#!/usr/bin/env python3
"""The examples of README.md and docs/*.md are checked, and those marked runnable are run.

Every shell and Python block carries a marker (see markdown.py): `run`, `not run: WHY` or
`fragment: WHY`; an unmarked one fails, so nobody has to guess whether an example was tried.
- shell: `bash -n`; Python: compiled; TOML and JSON: parsed (fragments excepted);
- `run` blocks are run, shell with `bash -e`, Python with the interpreter given, in a scratch
  directory holding a link to config/, with the build's programs first on PATH and its Python
  module on PYTHONPATH. A segment named `quickstart...` in a block is renamed to one of its own,
  so two runs never meet; whatever a block leaves in /dev/shm under that name is removed, and
  its process group is killed when it ends.

    check_examples.py SOURCE_DIR TOOLS_DIR PYTHON [PYTHON_MODULE_DIR]

Without PYTHON_MODULE_DIR (a build without the Python module) a runnable block that imports
poscache is checked as if it were marked `not run`."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import markdown  # noqa: E402

SHELL = {"sh", "bash", "shell"}
problems = []


def where(b):
    return "%s:%d" % (b.path, b.line)


def syntax(b, python):
    if b.lang in SHELL:
        r = subprocess.run(["bash", "-n"], input=b.code, capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("%s: shell syntax: %s" % (where(b), r.stderr.strip()))
    elif b.lang == "python":
        r = subprocess.run([python, "-c", "import sys; compile(sys.stdin.read(), 'example', 'exec')"],
                           input=b.code, capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("%s: Python syntax: %s" % (where(b), r.stderr.strip().splitlines()[-1]))
    elif b.lang == "toml":
        try:
            tomllib.loads(b.code)
        except tomllib.TOMLDecodeError as e:
            problems.append("%s: TOML: %s" % (where(b), e))
    elif b.lang == "json":
        try:
            json.loads(b.code)
        except json.JSONDecodeError as e:
            problems.append("%s: JSON: %s" % (where(b), e))


def run(b, src, tools, python, module_dir, k):
    segment = "quickstart_%d_%d" % (os.getpid(), k)
    code = re.sub(r"\bquickstart", segment, b.code)
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(os.path.join(src, "config"), os.path.join(tmp, "config"))
        bindir = os.path.join(tmp, ".bin")
        os.mkdir(bindir)
        os.symlink(python, os.path.join(bindir, "python3"))
        env = {k2: v for k2, v in os.environ.items() if not k2.startswith("POSCACHE_")}
        env["PATH"] = os.pathsep.join([tools, bindir, env.get("PATH", "/usr/bin:/bin")])
        if module_dir:
            env["PYTHONPATH"] = module_dir
        cmd = ["bash", "-e", "-c", code] if b.lang in SHELL else [python, "-c", code]
        # Output to a file, not a pipe: a process the example left in the background would
        # hold a pipe open after the example failed.
        log = open(os.path.join(tmp, ".log"), "w+")
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            log.write("\n(killed after 120 s)")
            proc.returncode = -1
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for f in os.listdir("/dev/shm"):
                if f == segment or f.startswith(segment + ".") or f.startswith(segment + "_"):
                    os.unlink(os.path.join("/dev/shm", f))
        log.seek(0)
        out = log.read()
        log.close()
        if proc.returncode != 0:
            problems.append("%s: the example failed (exit %d):\n%s"
                            % (where(b), proc.returncode, out.rstrip()))
            return False
    return True


def main():
    src, tools, python = sys.argv[1], sys.argv[2], sys.argv[3]
    module_dir = sys.argv[4] if len(sys.argv) > 4 else None
    counts = {"run": 0, "checked": 0, "fragment": 0}
    k = 0
    for rel in markdown.user_docs(src):
        for b in markdown.blocks(src, rel):
            if b.marker is None and b.lang in SHELL | {"python"}:
                problems.append("%s: a %s example without a marker: add <!-- example: run --> "
                                "or <!-- example: not run: WHY --> (or fragment: WHY) before it"
                                % (where(b), b.lang))
                continue
            if b.marker in ("not run", "fragment") and not b.why:
                problems.append("%s: the marker '%s' must say why" % (where(b), b.marker))
            if b.marker == "fragment":
                counts["fragment"] += 1
                continue
            syntax(b, python)
            if b.marker != "run":
                counts["checked"] += 1
                continue
            if b.lang not in SHELL | {"python"}:
                problems.append("%s: only shell and Python examples can be run, not %r"
                                % (where(b), b.lang))
                continue
            if module_dir is None and "poscache" in re.findall(r"import (\w+)", b.code):
                counts["checked"] += 1
                continue
            k += 1
            if run(b, src, tools, python, module_dir, k):
                counts["run"] += 1
    if problems:
        print("\n".join(problems))
        print("check_examples: %d problem(s)" % len(problems))
        return 1
    print("check_examples: %(run)d examples run, %(checked)d syntax-checked, %(fragment)d "
          "fragments, in README.md and docs/" % counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
