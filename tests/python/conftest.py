"""The fixture the Python tests share: a real poscache-writer (POSCACHE_WRITER_BIN) on a scratch
segment of the test's own, without Redis, stopped and its files removed after the test."""
import glob
import os
import subprocess
import time

import pytest

import poscache

WRITER = os.environ.get("POSCACHE_WRITER_BIN", "poscache-writer")


def _cleanup(seg):
    """Every file of segment `seg` in /dev/shm (the segment and the files beside it)."""
    for path in glob.glob(f"/dev/shm/{seg}") + glob.glob(f"/dev/shm/{seg}.*"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class RefreshWriter:
    """A poscache-writer serving read-through (docs/read-through.md), for the refresher and
    read-through tests: `namespaces` as -n flags, `refresh` as --refresh flags; up once its
    socket listens and the refresh files exist (the log says `ready`): a Reader opened before
    them would have no request channel."""

    _count = 0

    def __init__(self, tmp_path, prefix, namespaces, refresh, ready):
        RefreshWriter._count += 1
        self.seg = f"{prefix}_{os.getpid()}_{RefreshWriter._count}"
        _cleanup(self.seg)
        self.log = tmp_path / "writer.log"
        args = [WRITER, "-s", self.seg, "--capacity", "4096", "--no-generate", "--no-redis",
                "--no-http", "--stats-interval", "1h"]
        for n in namespaces:
            args += ["-n", n]
        for r in refresh:
            args += ["--refresh", r]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            text = self.log.read_text(errors="replace")
            if "ingest socket" in text and ready in text:
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                raise RuntimeError("the writer did not come up:\n" + text)
            time.sleep(0.01)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            assert self.proc.wait(timeout=30) == 0, self.log.read_text(errors="replace")


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
