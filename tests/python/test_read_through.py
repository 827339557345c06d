"""The Reader's read-through from Python against a real poscache-writer (docs/read-through.md):
get_or_fetch() answered by a refresher (fetched, then cached, forced again), absent, failed,
no_refresher, unavailable, a timeout with nobody answering (in time, the GIL released meanwhile),
a stale copy fetched again; request(), pending(), refresh_stats(); and the asyncio forms
(poscache/aio.py) with other coroutines running while they wait: get_or_fetch_async answered by an
AsyncRefresher on the same loop, wait_for_change_async, and changes_async yielding a producer's
upserts."""
import asyncio
import threading
import time
from decimal import Decimal

import pytest

import poscache
from poscache.aio import ChangeStream, ResyncNeeded
from poscache.refresher import AsyncRefresher, Refresher

from conftest import RefreshWriter, _cleanup

SLACK = 1.0  # seconds a loaded machine may add to a wait's timeout


class Writer(RefreshWriter):
    """A poscache-writer with two namespaces of the trading preset that refresh on miss and on
    stale (2 s a try, 2 retries): acct, stale after 300 ms, and hold, stale after 30 s."""

    def __init__(self, tmp_path):
        super().__init__(tmp_path, "pc_test_rt", ["acct:trading:300ms", "hold:trading:30s"],
                         ["acct:both:2s:2", "hold:both:2s:2"], "refresh: namespace hold")


@pytest.fixture
def rt_writer(tmp_path):
    w = Writer(tmp_path)
    yield w
    w.stop()
    _cleanup(w.seg)


class Source:
    """A refresher serving both namespaces from a dict, in a thread: an instrument starting with
    NONE is absent, FAIL raises (an error answer, tried again), SLOW answers after 0.3 s."""

    def __init__(self, seg, positions=None):
        self.positions = dict(positions or {})
        self.asked = []
        self.stop = threading.Event()
        self.refresher = Refresher(seg, ["acct", "hold"], name="py-source")
        self.thread = threading.Thread(target=self.refresher.serve, args=(self.fetch, self.stop))
        self.thread.start()

    def fetch(self, req):
        self.asked.append((req.ns, req.account, req.instrument, req.reason, req.attempt))
        if req.instrument.startswith("NONE"):
            return None
        if req.instrument.startswith("FAIL"):
            raise RuntimeError("broker 503")
        if req.instrument.startswith("SLOW"):
            time.sleep(0.3)
        return self.positions.get((req.account, req.instrument), {"qty": "1"})

    def close(self):
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        self.refresher.close()


def test_a_miss_is_fetched_then_cached_and_force_fetches_again(rt_writer):
    source = Source(rt_writer.seg, {("F1", "AAPL"): {"qty": "10", "avg_price": "101.5"}})
    try:
        r = poscache.Reader(rt_writer.seg)
        assert r.refresh_available and r.refresh_unavailable_because == ""
        res = r.get_or_fetch("hold", "F1", "AAPL", timeout=5)
        assert isinstance(res, poscache.FetchResult) and isinstance(res, tuple)
        position, reason = res
        assert reason == res.reason == "fetched", res
        assert position is res.position and isinstance(position, poscache.Position)
        assert (position.ns, position.account, position.instrument) == ("hold", "F1", "AAPL")
        assert position["qty"] == Decimal("10") and position["avg_price"] == Decimal("101.5")
        assert not position.stale and position.status == "ok"
        assert ("hold", "F1", "AAPL", "miss", 1) in source.asked
        assert r.pending("hold", "F1", "AAPL")["state"] == "answered"

        again = r.get_or_fetch("hold", "F1", "AAPL", timeout=5)
        assert again.reason == "cached" and again.position.version == position.version

        source.positions[("F1", "AAPL")] = {"qty": "11"}
        forced = r.get_or_fetch("hold", "F1", "AAPL", timeout=5, force=True)
        assert forced.reason == "fetched", forced
        assert forced.position["qty"] == Decimal("11")
        assert forced.position.version > position.version
        assert ("hold", "F1", "AAPL", "forced", 1) in source.asked

        stats = r.refresh_stats()
        assert stats is not None and stats["refreshers"] == 1
        assert stats["requests"]["miss"] >= 1 and stats["requests"]["forced"] >= 1
        assert stats["outcomes"]["answered"] >= 2 and stats["in_flight"] == 0
        assert set(stats["requests"]) == {"stale", "miss", "forced", "rebuild", "ahead"}
        assert set(stats["outcomes"]) == {"pending", "answered", "absent", "erased", "failed",
                                          "superseded", "no_refresher"}
    finally:
        source.close()


def test_absent_failed_and_no_refresher(rt_writer):
    r = poscache.Reader(rt_writer.seg)
    start = time.monotonic()
    assert r.get_or_fetch("hold", "N1", "AAPL", timeout=5) == (None, "no_refresher")
    assert time.monotonic() - start < SLACK  # nobody to wait for
    assert r.request("hold", "N1", "AAPL") == "no_refresher"
    assert r.refresh_stats()["refreshers"] == 0

    source = Source(rt_writer.seg)
    try:
        assert r.get_or_fetch("hold", "N1", "NONE", timeout=5) == (None, "absent")
        pending = r.pending("hold", "N1", "NONE")
        assert pending["state"] == "absent" and pending["since_ns"] > 0
        start = time.monotonic()
        assert r.get_or_fetch("hold", "N1", "NONE", timeout=5) == (None, "absent")  # remembered
        assert time.monotonic() - start < SLACK
        assert r.request("hold", "N1", "NONE", reason="miss") == "remembered"
        assert r.request("hold", "N1", "NONE") in ("asked", "pending")  # forced asks anyway

        # An error on every try (the first and 2 retries): failed. (get_or_fetch's last read of
        # the miss asks again by the namespace's policy: a new request may be under way.)
        assert r.get_or_fetch("hold", "N1", "FAIL", timeout=10) == (None, "failed")
        assert [a[4] for a in source.asked if a[2] == "FAIL"][:3] == [1, 2, 3]
    finally:
        source.close()


def test_a_timeout_returns_in_time_without_holding_the_gil(rt_writer):
    silent = Refresher(rt_writer.seg, ["acct", "hold"], name="py-silent")  # never answers
    try:
        r = poscache.Reader(rt_writer.seg)
        spins = [0]
        done = threading.Event()

        def spin():  # needs the GIL to count
            while not done.is_set():
                spins[0] += 1

        t = threading.Thread(target=spin)
        t.start()
        try:
            time.sleep(0.05)
            before, start = spins[0], time.monotonic()
            res = r.get_or_fetch("hold", "T1", "AAPL", timeout=0.3)
            elapsed = time.monotonic() - start
            during = spins[0] - before
        finally:
            done.set()
            t.join()
        assert res == (None, "timeout")
        assert 0.25 <= elapsed < 0.3 + SLACK
        assert during > 1000, f"the other thread counted {during} while get_or_fetch waited"
        assert r.pending("hold", "T1", "AAPL")["state"] == "pending"
        assert r.request("hold", "T1", "AAPL", reason="miss") == "pending"

        # A stale copy nobody refreshes in time: the copy, stale, and why.
        p = poscache.Producer(rt_writer.seg, "py-rt")
        assert p.wait_applied(p.upsert("acct", "T2", "MSFT", {"qty": "7"}), timeout=10)
        time.sleep(0.35)  # stale after 300 ms
        position, reason = r.get_or_fetch("acct", "T2", "MSFT", timeout=0.2)
        assert reason == "timeout" and position is not None
        assert position.stale and position["qty"] == Decimal("7")
        p.close()
    finally:
        silent.close()


def test_a_stale_copy_is_fetched_again(rt_writer):
    source = Source(rt_writer.seg, {("S1", "AAPL"): {"qty": "2"}})
    try:
        p = poscache.Producer(rt_writer.seg, "py-rt")
        assert p.wait_applied(p.upsert("acct", "S1", "AAPL", {"qty": "1"}), timeout=10)
        r = poscache.Reader(rt_writer.seg)
        assert r.get_or_fetch("acct", "S1", "AAPL", timeout=5).reason == "cached"
        time.sleep(0.35)
        position, reason = r.get_or_fetch("acct", "S1", "AAPL", timeout=5)
        assert reason == "fetched" and not position.stale and position["qty"] == Decimal("2")
        assert any(a[:3] == ("acct", "S1", "AAPL") and a[3] == "stale" for a in source.asked)
        p.close()
    finally:
        source.close()


def test_bad_input_raises_and_a_reader_without_read_through_says_why(writer):
    """The conftest's writer serves no read-through: no request channel."""
    r = poscache.Reader(writer)
    assert not r.refresh_available and r.refresh_unavailable_because != ""
    assert r.get_or_fetch("spot", "U1", "SOL", timeout=0.1) == (None, "unavailable")
    assert r.request("spot", "U1", "SOL") == "unavailable"
    assert r.refresh_stats() is None
    assert r.pending("spot", "U1", "SOL") == {"state": "none", "reason": "miss", "since_ns": 0}
    p = poscache.Producer(writer, "py-rt")
    assert p.wait_applied(p.upsert("spot", "U1", "SOL", {"qty": "3"}), timeout=10)
    position, reason = r.get_or_fetch("spot", "U1", "SOL", timeout=0.1)
    assert reason == "cached" and position["qty"] == Decimal("3")
    p.close()
    with pytest.raises(ValueError, match="no namespace 'futures'"):
        r.get_or_fetch("futures", "U1", "SOL")
    with pytest.raises(ValueError, match="bad key"):
        r.get_or_fetch("spot", "", "SOL")
    with pytest.raises(ValueError, match="bad key"):
        r.request("spot", "U1", "S" * 65)
    with pytest.raises(ValueError, match="bad key"):
        r.pending("spot", "", "SOL")
    with pytest.raises(ValueError, match="timeout"):
        r.get_or_fetch("spot", "U1", "SOL", timeout=-1)
    with pytest.raises(ValueError, match="reason 'rebuild'"):
        r.request("spot", "U1", "SOL", reason="rebuild")
    with pytest.raises(TypeError):
        r.get_or_fetch("spot", "U1", 7)


class Ticker:
    """A coroutine that counts every 10 ms: it only counts while the loop runs."""

    def __init__(self):
        self.ticks = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self):
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    async def stop(self):
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def test_get_or_fetch_async_waits_while_the_loop_runs(rt_writer):
    """The refresher answering is an AsyncRefresher on the same loop: the answer can only come
    if the loop runs while get_or_fetch_async waits."""
    async def fetch(req):
        await asyncio.sleep(0.3)  # a slow source
        return None if req.instrument == "NONE" else {"qty": "5", "mark_price": Decimal("1.25")}

    async def main():
        stop = asyncio.Event()
        async with AsyncRefresher(rt_writer.seg, ["hold"], name="py-async-rt") as refresher:
            serving = asyncio.create_task(refresher.serve(fetch, stop))
            r = poscache.Reader(rt_writer.seg)
            ticker = Ticker()
            start, ticks = time.monotonic(), ticker.ticks
            res = await r.get_or_fetch_async("hold", "A1", "AAPL", timeout=5)
            elapsed, ticked = time.monotonic() - start, ticker.ticks - ticks
            cached = await r.get_or_fetch_async("hold", "A1", "AAPL")
            forced = await r.get_or_fetch_async("hold", "A1", "AAPL", timeout=5, force=True)
            absent = await r.get_or_fetch_async("hold", "A1", "NONE", timeout=5)
            await ticker.stop()
            stop.set()
            await asyncio.wait_for(serving, 10)
            return res, elapsed, ticked, cached, forced, absent

    res, elapsed, ticked, cached, forced, absent = asyncio.run(main())
    assert isinstance(res, poscache.FetchResult) and res.reason == "fetched", res
    assert res.position["qty"] == Decimal("5") and res.position["mark_price"] == Decimal("1.25")
    assert elapsed >= 0.25
    assert ticked >= 10, f"the loop ticked {ticked} times in {elapsed:.2f} s"
    assert cached.reason == "cached" and cached.position.version == res.position.version
    assert forced.reason == "fetched" and forced.position.version > res.position.version
    assert absent == (None, "absent")


def test_wait_for_change_async_and_a_timeout(rt_writer):
    async def main():
        r = poscache.Reader(rt_writer.seg)
        p = poscache.Producer(rt_writer.seg, "py-rt-wait")
        ticker = Ticker()
        seen, at = r.change_sequence(), r.change_position()
        start = time.monotonic()
        assert not await r.wait_for_change_async(seen, 0.3)  # nothing changes
        quiet = time.monotonic() - start
        assert not await r.wait_for_changes_async(at, 0.05)
        waiting = asyncio.create_task(r.wait_for_change_async(seen, 10))
        waiting_ring = asyncio.create_task(r.wait_for_changes_async(at, 10))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        p.upsert("hold", "W1", "AAPL", {"qty": "1"})
        assert await asyncio.wait_for(waiting, 5)
        assert await asyncio.wait_for(waiting_ring, 5)
        assert await r.wait_for_change_async(seen, 0)  # moved already: at once
        await ticker.stop()
        p.close()
        return quiet, ticker.ticks

    quiet, ticks = asyncio.run(main())
    assert 0.25 <= quiet < 0.3 + SLACK
    assert ticks >= 20


def test_changes_async_yields_a_producers_upserts(rt_writer):
    async def main():
        r = poscache.Reader(rt_writer.seg)
        p = poscache.Producer(rt_writer.seg, "py-rt-changes")
        stream = r.changes_async()  # from the head now, before the upserts
        assert isinstance(stream, ChangeStream)
        first = stream.position

        async def take(n):
            out = []
            async for change in stream:
                out.append(change)
                if len(out) == n:
                    return out

        ticker = Ticker()
        consumer = asyncio.create_task(take(3))
        await asyncio.sleep(0.2)  # the consumer waits in the executor
        assert not consumer.done()
        for instrument in ("AAPL", "MSFT", "TSLA"):
            last = p.upsert("hold", "C1", instrument, {"qty": "2"})
        got = await asyncio.wait_for(consumer, 5)
        assert p.wait_applied(last, timeout=5)
        await ticker.stop()
        # From a position past the ring's head: the stream cannot follow.
        ahead = r.changes_async(from_position=r.change_position() + 100, max=16)
        with pytest.raises(ResyncNeeded) as raised:
            await anext(ahead)
        with pytest.raises(StopAsyncIteration):
            await anext(ahead)
        p.close()
        return first, got, stream.position, r.change_position(), ticker.ticks, raised.value

    first, got, position, head, ticks, resync = asyncio.run(main())
    assert [(c["kind"], c["namespace"], c["account"], c["instrument"]) for c in got] == [
        ("inserted", "hold", "C1", "AAPL"), ("inserted", "hold", "C1", "MSFT"),
        ("inserted", "hold", "C1", "TSLA")]
    assert got[0]["position"] >= first
    assert [c["version"] for c in got] == sorted(c["version"] for c in got)
    assert position == head  # where the next change will be
    assert ticks >= 10
    assert resync.status == "invalid_position" and isinstance(resync, poscache.Error)
    assert resync.next <= head
