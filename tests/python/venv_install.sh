#!/usr/bin/env bash
# pip install of the repository into a fresh venv, offline, as the README says (Debian's
# python3-venv brings pip and setuptools; nothing is fetched), then the venv's own python, with
# no PYTHONPATH, imports poscache, checks its version and stubs, and reads back a fill that a
# real poscache-writer applied.
#
#   venv_install.sh SOURCE_DIR BUILD_DIR PYTHON WRITER VERSION
#
# BUILD_DIR is the suite's configured build tree: the install takes the module from it
# (POSCACHE_CMAKE_BUILD_DIR, see setup.py) instead of compiling the project a second time.
set -euo pipefail
src=$1 build=$2 python=$3 writer=$4 version=$5
seg="poscache_test_venv_$$"
work=$(mktemp -d)
writer_pid=""
cleanup() {
  if [ -n "$writer_pid" ]; then
    kill -TERM "$writer_pid" 2>/dev/null || true
    wait "$writer_pid" 2>/dev/null || true
  fi
  "$writer" -s "$seg" --remove >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! "$python" -c 'import ensurepip' 2>/dev/null; then
  echo "venv install: $python cannot create a venv with pip (Debian: apt-get install python3-venv)"
  exit 1
fi
"$python" -m venv "$work/venv"
# Nothing may lead pip or the import elsewhere: no PYTHONPATH (the suite's points at
# build/python), no index, no pip configuration, no user site, no cache.
unset PYTHONPATH PYTHONHOME PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONNOUSERSITE=1
if ! POSCACHE_CMAKE_BUILD_DIR="$build" "$work/venv/bin/pip" install --no-build-isolation \
    --no-index --no-cache-dir "$src" >"$work/pip.log" 2>&1; then
  cat "$work/pip.log"
  echo "venv install: pip install --no-build-isolation --no-index $src failed (above)"
  exit 1
fi

"$writer" -s "$seg" --no-redis --capacity 1000 --log-level warn 2>"$work/writer.log" &
writer_pid=$!
cd "$work"  # not the source tree: the import must find the venv's package
if ! "$work/venv/bin/python" - "$seg" "$version" "$work/venv" "$writer_pid" <<'PY'; then
import os
import sys
import time
from decimal import Decimal

seg, version, venv, writer_pid = sys.argv[1:]
import poscache

where = os.path.realpath(poscache.__file__)
assert where.startswith(os.path.realpath(venv) + os.sep), f"imported {where}, not the venv's"
assert poscache.__version__ == version, f"poscache {poscache.__version__}; the project is {version}"
package = os.path.dirname(where)
for f in ("__init__.pyi", "py.typed"):
    assert os.path.isfile(os.path.join(package, f)), f"the venv's package has no {f}"

deadline = time.monotonic() + 30
while True:
    try:
        producer = poscache.Producer(seg, "venv-test")
        break
    except poscache.Error:
        os.kill(int(writer_pid), 0)  # raises if the writer exited
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
seq = producer.fill("spot", "w1", "SOL", "buy", Decimal("10"), "100.5", fee="0.05",
                    trade_id="T-1")
assert producer.wait_applied(seq, timeout=10), "the writer did not apply the fill in 10 s"
pos = poscache.Reader(seg).get("spot", "w1", "SOL")
assert pos is not None and pos["qty"] == Decimal("10"), f"read {pos!r}"
print(f"venv install: poscache {poscache.__version__} in {package} read {pos!r}")
PY
  echo "venv install: the venv's poscache failed (above); the writer said:"
  cat "$work/writer.log"
  exit 1
fi

kill -TERM "$writer_pid"
wait "$writer_pid"
writer_pid=""
"$writer" -s "$seg" --remove
[ ! -e "/dev/shm/$seg" ] || { echo "venv install: /dev/shm/$seg is still there"; exit 1; }
