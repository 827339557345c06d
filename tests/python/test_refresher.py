"""poscache.refresher against a real poscache-writer serving read-through (docs/read-through.md):
a Reader's get() of a key the segment lacks asks (namespace acct refreshes on miss and on stale),
the refresher receives the request on the writer's socket and answers, and a later get() reads
the position. Sync and asyncio refreshers, the serves() decorator, the answers (upsert, absent,
erase, error then retry, positions, a rebuild's progress), refusals counted with the writer's
reason, floats refused before anything is sent."""
import asyncio
import json
import socket
import threading
import time
from decimal import Decimal

import pytest

import poscache
from poscache.refresher import ERASE, AsyncRefresher, FetchRequest, Refresher, serves

from conftest import RefreshWriter, _cleanup



class Writer(RefreshWriter):
    """A poscache-writer whose namespace acct (trading preset, stale after 300 ms) refreshes on
    miss and on stale: 2 s a try, 2 retries."""

    def __init__(self, tmp_path):
        super().__init__(tmp_path, "pc_test_refresh", ["acct:trading:300ms"], ["acct:both:2s:2"],
                         "refresh: namespace acct")

    def raw(self, line):
        """Sends one line on the socket as any client does; the reply."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(f"/dev/shm/{self.seg}.sock")
            s.sendall((json.dumps(line) + "\n").encode())
            s.settimeout(5)
            return json.loads(s.makefile("rb").readline())


@pytest.fixture
def writer(tmp_path):
    w = Writer(tmp_path)
    yield w
    w.stop()
    _cleanup(w.seg)


def wait_for(what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def request_for(r, account, instrument, timeout=5.0):
    """The request for the key (others, e.g. a stale key asked again, are left unanswered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for q in r.next(0.1):
            if (q.account, q.instrument) == (account, instrument):
                return q
    raise AssertionError(f"no request for {account}/{instrument} in {timeout} s")


def test_a_miss_is_asked_for_and_the_upsert_answer_is_read_back(writer):
    with Refresher(writer.seg, ["acct"], name="py-sync") as r:
        assert r.namespaces == ["acct"] and "py-sync" in repr(r)
        reader = poscache.Reader(writer.seg)
        assert reader.get("acct", "A1", "AAPL") is None  # a miss: get() asks, no system call
        q = request_for(r, "A1", "AAPL")
        assert isinstance(q, FetchRequest)
        assert (q.reason, q.ns, q.attempt, q.rebuild) == ("miss", "acct", 1, False)
        r.upsert(q, {"qty": Decimal("10"), "avg_price": "101.5", "fees": 3})
        pos = wait_for(lambda: reader.get("acct", "A1", "AAPL"))
        assert pos is not None
        assert pos["qty"] == Decimal("10") and pos["avg_price"] == Decimal("101.5")
        assert pos["fees"] == Decimal("3")
        r.next(0.2)  # reads the reply
        assert (r.refused, r.applied) == (0, 1)


def test_absent_is_remembered_and_not_asked_again(writer):
    with Refresher(writer.seg, ["acct"], name="py-absent") as r:
        reader = poscache.Reader(writer.seg)
        assert reader.get("acct", "A2", "NONE") is None
        q = request_for(r, "A2", "NONE")
        r.absent(q)
        assert r.next(0.3) == [] and r.refused == 0
        time.sleep(0.2)  # past the reader's own memory of its ask
        assert reader.get("acct", "A2", "NONE") is None
        # negative_ttl (5 s by default): the reader sees `absent` and does not ask again.
        assert [q for q in r.next(0.7) if q.account == "A2"] == []


def test_an_error_is_retried_with_the_next_attempt(writer):
    with Refresher(writer.seg, ["acct"], name="py-retry") as r:
        reader = poscache.Reader(writer.seg)
        assert reader.get("acct", "A3", "MSFT") is None
        q = request_for(r, "A3", "MSFT")
        r.error(q, "broker 503")
        again = request_for(r, "A3", "MSFT")
        assert (again.id, again.attempt) == (q.id, 2)
        r.upsert(again, {"qty": "-4.25"})
        pos = wait_for(lambda: reader.get("acct", "A3", "MSFT"))
        assert pos is not None and pos["qty"] == Decimal("-4.25")
        assert r.refused == 0
    assert "refresher error: broker 503" in writer.log.read_text()


def test_a_refused_answer_is_counted_with_the_writers_reason(writer):
    with Refresher(writer.seg, ["acct"], name="py-refused") as r:
        reader = poscache.Reader(writer.seg)
        assert reader.get("acct", "A4", "AAPL") is None
        q = request_for(r, "A4", "AAPL")
        r.upsert(q, {"quantity": "10"})  # not a field of the trading schema
        again = request_for(r, "A4", "AAPL")  # a refused answer is the try's error: retried
        assert again.attempt == 2
        assert r.refused == 1
        assert "answer:" in r.last_refusal
        assert "no field 'quantity'" in r.last_refusal
        r.positions(again, [("A9", "AAPL", {"qty": "1"})])  # an account not asked
        r.next(0.5)
        assert r.refused == 2 and "account 'A9' was not asked" in r.last_refusal
        assert reader.get("acct", "A9", "AAPL") is None


def test_floats_and_bad_answers_are_refused_before_anything_is_sent(writer):
    with Refresher(writer.seg, ["acct"], name="py-float") as r:
        q = FetchRequest(id=1, reason="miss", ns="acct", account="A1", instrument="AAPL")
        with pytest.raises(TypeError, match=r"field 'qty': 1.5 is a float"):
            r.upsert(q, {"qty": 1.5})
        with pytest.raises(TypeError, match=r"position 1: field 'avg_price': 2.0 is a float"):
            r.positions(q, [("A1", "AAPL", {"qty": "1"}), ("A1", "MSFT", {"avg_price": 2.0})])
        with pytest.raises(TypeError, match="bool"):
            r.upsert(q, {"qty": True})
        with pytest.raises(ValueError, match="finite"):
            r.upsert(q, {"qty": Decimal("NaN")})
        with pytest.raises(ValueError, match="mode"):
            r.upsert(q, {"qty": "1"}, mode="overwrite")
        with pytest.raises(ValueError, match="empty"):
            r.upsert(q, {})
        rebuild = FetchRequest(id=2, reason="rebuild", ns="acct")
        assert rebuild.rebuild
        with pytest.raises(ValueError, match="positions"):
            r.absent(rebuild)
        r.next(0.3)
        assert r.refused == 0  # nothing reached the writer


def test_registration_refused_and_no_writer_raise_poscache_errors(writer):
    with pytest.raises(poscache.Error, match="refused the registration.*futures"):
        Refresher(writer.seg, ["futures"])
    with pytest.raises(poscache.Error, match="cannot connect"):
        Refresher("pc_test_refresh_no_such_segment", ["acct"], connect_timeout=0.1)
    with pytest.raises(ValueError, match="at least one namespace"):
        Refresher(writer.seg, [])


def test_serve_maps_what_fetch_returns_and_the_writer_going_ends_it(writer):
    """serve(): fields upsert, None is absent, ERASE erases, an exception is an error answer
    (retried), a list is the account's positions."""
    seen = []

    def fetch(req):
        seen.append((req.account, req.instrument, req.reason, req.attempt))
        if req.instrument == "FLAKY" and req.attempt == 1:
            raise RuntimeError("broker 503")
        if req.instrument == "CLOSED":
            return {"qty": "5"} if req.reason == "miss" else ERASE
        if req.instrument == "ACCOUNT":
            return [("S1", "ACCOUNT", {"qty": "1"}),
                    {"account": "S1", "instrument": "OTHER", "fields": {"qty": 2}}]
        return {"qty": Decimal("7.5")}

    stop = threading.Event()
    r = Refresher(writer.seg, ["acct"], name="py-serve")
    t = threading.Thread(target=r.serve, args=(fetch, stop))
    t.start()
    try:
        reader = poscache.Reader(writer.seg)
        for instrument in ("PLAIN", "FLAKY", "CLOSED", "ACCOUNT"):
            assert reader.get("acct", "S1", instrument) is None
        assert wait_for(lambda: reader.get("acct", "S1", "PLAIN"))["qty"] == Decimal("7.5")
        assert wait_for(lambda: reader.get("acct", "S1", "FLAKY"))["qty"] == Decimal("7.5")
        assert ("S1", "FLAKY", "miss", 2) in seen
        assert wait_for(lambda: reader.get("acct", "S1", "OTHER"))["qty"] == Decimal("2")
        assert reader.get("acct", "S1", "ACCOUNT")["qty"] == Decimal("1")
        assert wait_for(lambda: reader.get("acct", "S1", "CLOSED")) is not None
        # Stale after 300 ms: a read asks again, fetch says it is gone (ERASE), the key is erased.
        time.sleep(0.35)
        assert reader.get("acct", "S1", "CLOSED").stale
        assert wait_for(lambda: reader.get("acct", "S1", "CLOSED") is None)
        assert ("S1", "CLOSED", "stale", 1) in seen
    finally:
        stop.set()
        t.join(timeout=10)
    assert not t.is_alive() and r.refused == 0, r.last_refusal
    writer.stop()
    with pytest.raises(poscache.Error, match="writer"):
        r.next(5)
    r.close()


def test_a_rebuild_is_answered_with_positions_in_lines_under_the_limit(writer):
    """A rebuild asked on the socket; 1500 positions (about 120 KiB) go as several lines, all
    but the last with "more"."""
    rebuilds = []

    def fetch(req):
        if req.rebuild:
            rebuilds.append(req)
            return [(f"R{i % 50}", f"SYM{i}", {"qty": str(i), "avg_price": "100.25"})
                    for i in range(1500)]
        return None

    stop = threading.Event()
    with Refresher(writer.seg, ["acct"], name="py-rebuild") as r:
        t = threading.Thread(target=r.serve, args=(fetch, stop))
        t.start()
        try:
            reply = writer.raw({"op": "rebuild", "ns": "acct"})
            assert reply["status"] == "applied", reply
            reader = poscache.Reader(writer.seg)
            assert wait_for(lambda: reader.stats()["namespace_live"]["acct"] == 1500)
            assert reader.get("acct", "R3", "SYM1053")["qty"] == Decimal("1053")
        finally:
            stop.set()
            t.join(timeout=10)
        r.next(0.3)  # the last replies
        assert len(rebuilds) == 1 and rebuilds[0].account == "" and rebuilds[0].ns == "acct"
        assert r.refused == 0, r.last_refusal
        assert r.applied == 1500
    assert "1500 positions" in writer.log.read_text()


def test_async_refresher_fetches_concurrently(writer):
    keys = [f"K{i}" for i in range(8)]
    running = []
    most = []

    async def fetch(req):
        running.append(req.id)
        most.append(len(running))
        await asyncio.sleep(0.3)  # a slow source: the fetches overlap
        running.remove(req.id)
        return {"qty": str(keys.index(req.instrument)), "mark_price": Decimal("1.25")}

    async def main():
        stop = asyncio.Event()
        async with AsyncRefresher(writer.seg, ["acct"], name="py-async", concurrency=4) as r:
            serving = asyncio.create_task(r.serve(fetch, stop))
            reader = poscache.Reader(writer.seg)
            start = time.monotonic()
            for k in keys:
                assert reader.get("acct", "AS", k) is None
            while any(reader.get("acct", "AS", k) is None for k in keys):
                assert time.monotonic() - start < 10, "not every key was answered"
                await asyncio.sleep(0.02)
            elapsed = time.monotonic() - start
            stop.set()
            await asyncio.wait_for(serving, 10)
            return r, reader, elapsed

    r, reader, elapsed = asyncio.run(main())
    assert max(most) == 4  # bounded by concurrency
    assert elapsed < 8 * 0.3  # not one at a time
    assert [reader.get("acct", "AS", k)["qty"] for k in keys] == [Decimal(i) for i in range(8)]
    assert r.refused == 0


def test_async_answers_one_by_one(writer):
    async def main():
        async with AsyncRefresher(writer.seg, "acct", name="py-async-next") as r:
            reader = poscache.Reader(writer.seg)
            assert reader.get("acct", "AN", "ONE") is None
            q = None
            while q is None:
                q = next((x for x in await r.next(5) if x.account == "AN"), None)
            with pytest.raises(TypeError, match="float"):
                await r.upsert(q, {"qty": 0.1})
            await r.upsert(q, {"qty": "0.1"}, mode="replace", seq=3)
            for _ in range(250):
                pos = reader.get("acct", "AN", "ONE")
                if pos is not None:
                    return pos
                await asyncio.sleep(0.02)

    pos = asyncio.run(main())
    assert pos is not None and pos["qty"] == Decimal("0.1") and pos.source_seq == 3


def test_the_decorator_serves_a_function_keyed_by_account_and_instrument(writer):
    calls = []

    @serves("acct", segment=writer.seg, name="py-decorated")
    def position(account, instrument):
        """The source."""
        calls.append((account, instrument))
        return {"qty": "3", "avg_price": Decimal("99.5")}

    assert position("X", "Y") == {"qty": "3", "avg_price": Decimal("99.5")}  # still callable
    assert position.__doc__ == "The source." and position.namespace == "acct"
    calls.clear()
    stop = threading.Event()
    thread = position.start(stop)
    assert thread.daemon and thread.is_alive()
    reader = poscache.Reader(writer.seg)
    assert reader.get("acct", "D1", "TSLA") is None
    pos = wait_for(lambda: reader.get("acct", "D1", "TSLA"))
    assert pos is not None and pos["avg_price"] == Decimal("99.5")
    assert ("D1", "TSLA") in calls
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_decorator_serves_a_coroutine_function_and_start_raises_when_it_cannot(writer):
    @serves("acct", segment=writer.seg)
    async def position(account, instrument):
        await asyncio.sleep(0.01)
        return None if instrument == "NONE" else {"qty": "11"}

    assert asyncio.run(position("X", "Y")) == {"qty": "11"}
    stop = threading.Event()
    thread = position.start(stop)
    reader = poscache.Reader(writer.seg)
    assert reader.get("acct", "D2", "NVDA") is None
    pos = wait_for(lambda: reader.get("acct", "D2", "NVDA"))
    assert pos is not None and pos["qty"] == Decimal("11")
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()

    @serves("futures", segment=writer.seg)
    def unknown(account, instrument):
        return None

    with pytest.raises(poscache.Error, match="futures"):
        unknown.start()
