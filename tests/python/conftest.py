"""The fixture the Python tests share: a real poscache-writer (POSCACHE_WRITER_BIN) on a scratch
segment of the test's own, without Redis, stopped and its files removed after the test."""
import os
import subprocess
import time

import pytest

import poscache

WRITER = os.environ.get("POSCACHE_WRITER_BIN", "poscache-writer")


def _cleanup(seg):
    for suffix in ("", ".lock", ".trades", ".sock", ".streams", ".readers"):
        try:
            os.unlink(f"/dev/shm/{seg}{suffix}")
        except FileNotFoundError:
            pass


@pytest.fixture
def writer(request):
    seg = f"poscache_test_py_{os.getpid()}_{request.node.name[:20]}"
    _cleanup(seg)
    proc = subprocess.Popen([WRITER, "-s", seg, "--capacity", "10000", "--no-redis",
                             "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            poscache.Producer(seg, "probe").close()
            break
        except poscache.Error:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the writer did not come up: " + proc.stderr.read().decode())
            time.sleep(0.01)
    yield seg
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    _cleanup(seg)
