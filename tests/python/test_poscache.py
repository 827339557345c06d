"""`import poscache` as a Python service uses it: a real poscache-writer on a scratch segment,
fed through a Producer, read back with a Reader; exact Decimals both ways, errors as exceptions
naming the cause. Run by ctest (PythonTest.*) with PYTHONPATH at the built package; the writer
fixture is conftest.py's."""
import os
import subprocess
import threading
import time
from decimal import Decimal

import pytest

import poscache


def test_the_module_reports_the_projects_version():
    assert poscache.__version__ == os.environ.get("POSCACHE_VERSION", poscache.__version__)
    assert poscache.__version__.count(".") == 2


def test_fills_and_marks_read_back_as_exact_decimals(writer):
    p = poscache.Producer(writer, "py-test")
    r = poscache.Reader(writer)
    p.fill("spot", "w1", "SOL", "buy", Decimal("10"), "100", trade_id="T1")
    p.fill("spot", "w1", "SOL", "buy", 10, Decimal("110"), fee=Decimal("0.05"), trade_id="T2")
    p.fill("spot", "w1", "SOL", "sell", "5", "120", trade_id="T3")
    seq = p.mark("spot", "SOL", "130")
    assert seq == 4
    assert p.wait_applied(seq, timeout=10)
    pos = r.get("spot", "w1", "SOL")
    assert pos.fields["qty"] == Decimal("15")
    assert str(pos.fields["qty"]) == "15.000000000000000000"
    assert pos.fields["avg_price"] == Decimal("105")
    assert pos.fields["realized_pnl"] == Decimal("75")
    assert pos.fields["unrealized_pnl"] == Decimal("375")
    assert pos.fields["fees"] == Decimal("0.05")
    assert isinstance(pos.fields["qty"], Decimal)
    assert pos.status == "ok" and not pos.stale
    assert pos.version > 0 and pos.age >= 0
    assert "spot:w1:SOL" in repr(pos)
    assert pos.ns == "spot" and pos.account == "w1" and pos.instrument == "SOL"
    assert r.stats()["counting"] and r.stats()["namespace_live"]["spot"] >= 1
    assert isinstance(pos, poscache.Position) and pos.created_at_ns <= pos.updated_at_ns
    same = r.get(instrument="SOL", ns="spot", account="w1")  # by name, in any order
    assert same.fields == pos.fields and same.version == pos.version
    assert [x.instrument for x in r.positions_of("w1")] == ["SOL"]
    # A redelivered trade id changes nothing.
    seq = p.fill("spot", "w1", "SOL", "sell", "5", "120", trade_id="T3")
    assert p.wait_applied(seq, timeout=10)
    assert r.get("spot", "w1", "SOL").fields["qty"] == Decimal("15")


def test_decimals_of_every_magnitude_keep_their_exact_digits(writer):
    # Every decimal crosses as its exact text at the field's scale (its digits and its exponent,
    # -18): checked where the formatting changes method (10^9 and 10^18 mantissas, 2^64, the
    # 38-digit limit), on both signs.
    texts = ["0.000000000000000001", "0.000000001000000000", "1.000000000000000000",
             "18.446744073709551615", "18.446744073709551616", "101.500000000000000000",
             "1000000000000.123456789012345678", "18446744073709551616.000000000000000000",
             "99999999999999999999.999999999999999999", "0.000000000000000000"]
    p = poscache.Producer(writer, "py-magnitudes")
    fields = ["qty", "avg_price", "cost_basis", "realized_pnl", "unrealized_pnl", "mark_price",
              "fees"]
    for k in range(len(texts)):
        for sign in ("", "-"):
            values = {f: sign + texts[(k + j) % len(texts)] for j, f in enumerate(fields)}
            seq = p.upsert("spot", f"mag{k}{sign}", "SOL", values)
            p.wait_applied(seq, timeout=10)
            got = poscache.Reader(writer).get("spot", f"mag{k}{sign}", "SOL").fields
            for f, v in values.items():
                want = v.replace("-0.000000000000000000", "0.000000000000000000")
                assert format(got[f], "f") == want and got[f] == Decimal(v), (f, v, got[f])
                assert got[f].as_tuple().exponent == -18, (f, v, got[f])


def test_upsert_add_and_int_fields(writer):
    p = poscache.Producer(writer, "py-lending")
    r = poscache.Reader(writer)
    p.upsert("lending", "0xab12", "USDC",
             {"collateral_amount": 2500 * 10**18, "debt_amount": "1800000000000000000000",
              "health_factor": Decimal("1.145833333333333333")})
    p.add("lending", "0xab12", "USDC", "blocks_unhealthy", 2)
    seq = p.add("lending", "0xab12", "USDC", "blocks_unhealthy", 1)
    assert p.wait_applied(seq, timeout=10)
    pos = r.get("lending", "0xab12", "USDC")
    assert pos.fields["collateral_amount"] == Decimal(2500 * 10**18)
    assert pos.fields["health_factor"] == Decimal("1.145833333333333333")
    assert pos.fields["blocks_unhealthy"] == 3
    assert isinstance(pos.fields["blocks_unhealthy"], int)
    assert "last_update_block" not in pos.fields
    seq = p.reset("lending", "0xab12", "USDC", "blocks_unhealthy")
    assert p.wait_applied(seq, timeout=10)
    assert r.get("lending", "0xab12", "USDC").fields["blocks_unhealthy"] == 0
    seq = p.upsert("lending", "0xab12", "USDC", {"debt_amount": 5}, replace=True)
    assert p.wait_applied(seq, timeout=10)
    assert set(r.get("lending", "0xab12", "USDC").fields) == {"debt_amount"}


def test_one_field_is_read_alone_and_the_fields_are_built_once(writer):
    """pos['qty'] builds that field alone; pos.fields builds the dict on first use and keeps it;
    a Position outlives its Reader."""
    p = poscache.Producer(writer, "py-lazy")
    weth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    p.upsert("spot", "w9", "SOL", {"qty": "12.25", "mark_price": "101.97"})
    seq = p.upsert("lending", "0xab12", "WETH", {"collateral_amount": 5 * 10**18,
                                                  "blocks_unhealthy": 4, "collateral_asset": weth,
                                                  "debt_asset": "usdc€"})
    assert p.wait_applied(seq, timeout=10)
    r = poscache.Reader(writer)
    pos = r.get("spot", "w9", "SOL")
    lend = r.get("lending", "0xab12", "WETH")
    del r  # the Positions keep what they need of the schema
    assert pos["qty"] == Decimal("12.25") and pos["qty"].as_tuple().exponent == -18
    assert pos["mark_price"] == Decimal("101.97")
    assert lend["collateral_amount"] == 5 * 10**18 and lend["blocks_unhealthy"] == 4
    assert type(lend["blocks_unhealthy"]) is int
    assert lend["collateral_asset"] == weth and lend["debt_asset"] == "usdc€"
    with pytest.raises(KeyError, match="avg_price"):
        pos["avg_price"]  # in the schema, no value in this position
    with pytest.raises(KeyError, match="colour"):
        pos["colour"]  # not in the schema
    with pytest.raises(TypeError, match="a field name is a str"):
        pos[0]
    assert "qty" in pos and "avg_price" not in pos and "colour" not in pos
    assert "debt_asset" in lend and "last_update_block" not in lend
    fields = pos.fields
    assert fields is pos.fields  # built once
    assert fields == {"qty": Decimal("12.25"), "mark_price": Decimal("101.97")}
    assert pos["qty"] is fields["qty"]  # read from the dict once it exists
    assert "qty" in pos and "avg_price" not in pos
    with pytest.raises(TypeError, match="a field name is a str"):
        pos[0]  # the same answers once the dict is built
    with pytest.raises(TypeError, match="a field name is a str"):
        0 in pos
    with pytest.raises(KeyError, match="avg_price"):
        pos["avg_price"]
    assert weth in repr(lend) and "blocks_unhealthy" in repr(lend)


def test_get_many_gives_what_get_gives_for_every_key_in_order(writer):
    p = poscache.Producer(writer, "py-many")
    seq = 0
    for i in range(300):
        seq = p.upsert("spot", f"acct{i % 30}", f"T{i}", {"qty": f"{i}.5", "avg_price": "101.25"})
    seq = p.upsert("lending", "0xab12", "USDC", {"debt_amount": 7, "debt_asset": "usdc"})
    assert p.wait_applied(seq, timeout=10)
    r = poscache.Reader(writer)
    keys = [("spot", f"acct{i % 30}", f"T{i}") for i in range(0, 600, 2)]  # half are absent
    keys.insert(7, ("lending", "0xab12", "USDC"))
    got = r.get_many(keys)
    assert len(got) == len(keys)
    for key, pos in zip(keys, got):
        one = r.get(*key)
        if one is None:
            assert pos is None, key
        else:
            assert (pos.ns, pos.account, pos.instrument) == key
            assert pos.fields == one.fields and pos.version == one.version
    assert sum(pos is not None for pos in got) == 151
    assert got[7]["debt_asset"] == "usdc" and got[8]["qty"] == Decimal("14.5")  # T14
    assert r.get_many([]) == []
    with pytest.raises(TypeError, match="key 1 is not a tuple"):
        r.get_many([("spot", "acct0", "T0"), ["spot", "acct0", "T0"]])
    with pytest.raises(TypeError, match="key 0 holds a bytes"):
        r.get_many([("spot", b"acct0", "T0")])
    with pytest.raises(ValueError, match="key 1: segment .* has no namespace 'futures'"):
        r.get_many([("spot", "acct0", "T0"), ("futures", "acct0", "T0")])
    with pytest.raises(ValueError, match="bad key 0 spot::T0"):
        r.get_many([("spot", "", "T0")])


def test_floats_and_bad_input_are_refused_naming_the_cause(writer):
    p = poscache.Producer(writer, "py-bad")
    with pytest.raises(TypeError, match=r"field 'qty': 1.5 is a float"):
        p.upsert("spot", "w1", "SOL", {"qty": 1.5})
    with pytest.raises(TypeError, match="price: 100.25 is a float"):
        p.fill("spot", "w1", "SOL", "buy", "1", 100.25)
    with pytest.raises(TypeError, match="bool"):
        p.upsert("spot", "w1", "SOL", {"qty": True})
    with pytest.raises(ValueError, match="12.5.3"):
        p.upsert("spot", "w1", "SOL", {"qty": "12.5.3"})
    with pytest.raises(ValueError, match="futures"):
        p.upsert("futures", "w1", "SOL", {"qty": "1"})
    with pytest.raises(ValueError, match="colour"):
        p.upsert("spot", "w1", "SOL", {"colour": "1"})
    with pytest.raises(ValueError, match="side 'hold'"):
        p.fill("spot", "w1", "SOL", "hold", "1", "1")
    with pytest.raises(ValueError, match="one of"):
        p.invalidate()
    r = poscache.Reader(writer)
    with pytest.raises(ValueError, match="no namespace 'futures'"):
        r.get("futures", "w1", "SOL")
    with pytest.raises(ValueError, match="bad key"):
        r.get("spot", "", "SOL")
    with pytest.raises(TypeError, match="three str"):
        r.get("spot", b"w1", "SOL")
    with pytest.raises(TypeError, match="missing argument 'instrument'"):
        r.get("spot", "w1")
    with pytest.raises(TypeError, match="unexpected or repeated argument 'venue'"):
        r.get("spot", "w1", venue="SOL")
    with pytest.raises(TypeError, match="takes 3 arguments"):
        r.get("spot", "w1", "SOL", "x")
    with pytest.raises(TypeError):
        poscache.Position()  # only reads make them
    with pytest.raises(TypeError, match="initialized poscache.Reader"):
        poscache.Reader.__new__(poscache.Reader).get("spot", "w1", "SOL")
    with pytest.raises(TypeError):
        poscache.Reader.get(object(), "spot", "w1", "SOL")
    with pytest.raises(poscache.Error, match="no_such_segment"):
        poscache.Reader("poscache_no_such_segment")
    with pytest.raises(poscache.Error):
        poscache.Producer("poscache_no_such_segment", "x")
    # A fill the writer refuses: the producer's stats say why.
    seq = p.fill("spot", "w2", "ETH", "buy", "99999999999999999999", "99999999999999999999")
    assert p.wait_applied(seq, timeout=10)
    assert "cost_basis" in p.stats()["last_error"]
    assert r.get("spot", "w2", "ETH") is None
    with pytest.raises(poscache.NoRedis):
        p.wait_synced(seq, timeout=1)


def test_scans_removals_and_change_notification(writer):
    p = poscache.Producer(writer, "py-scan")
    r = poscache.Reader(writer)
    for i, sym in enumerate(["SOL", "ETH", "BTC"]):
        p.fill("spot", "w9", sym, "buy", str(i + 1), "10")
    seq = p.upsert("quotes", "mkt", "SOL", {"bid": "101.1", "ask": "101.3"})
    assert p.wait_applied(seq, timeout=10)
    assert sorted(x.instrument for x in r.positions_of("w9")) == ["BTC", "ETH", "SOL"]
    snap = r.snapshot("w9")
    assert sorted((x.ns, x.instrument) for x in snap) == sorted(
        (x.ns, x.instrument) for x in r.positions_of("w9"))
    assert r.snapshot("nobody") == []
    with pytest.raises(ValueError):
        r.snapshot("")
    assert [x.account for x in r.scan(namespace="quotes")] == ["mkt"]
    assert len(r.scan(glob="spot:w9:*")) == 3
    assert r.namespaces() == ["spot", "lending", "quotes"]
    st = r.stats()
    assert st["live"] == 4 and st["writer_alive"] and st["state"] == "ready"

    seen = r.change_sequence()
    woke = []
    t = threading.Thread(target=lambda: woke.append(r.wait_for_change(seen, timeout=10)))
    t.start()
    time.sleep(0.05)  # the waiter is blocked without the GIL: this thread runs on
    seq = p.erase("spot", "w9", "SOL")
    t.join()
    assert woke == [True]
    assert p.wait_applied(seq, timeout=10)
    assert r.get("spot", "w9", "SOL") is None
    seq = p.invalidate(account="w9")
    assert p.wait_applied(seq, timeout=10)
    assert r.positions_of("w9") == []
    seq = p.invalidate(all=True)
    assert p.wait_applied(seq, timeout=10)
    assert r.stats()["live"] == 0
    assert p.stats()["applied"] >= seq


def test_text_fields_round_trip_as_str(writer):
    """A lending position's asset addresses: text fields, str both ways, exact."""
    p = poscache.Producer(writer, "py-text")
    r = poscache.Reader(writer)
    weth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    seq = p.upsert("lending", "0xab12", "WETH", {"collateral_amount": 5 * 10**18,
                                                  "collateral_asset": weth, "debt_asset": "usdc€"})
    assert p.wait_applied(seq, timeout=10)
    pos = r.get("lending", "0xab12", "WETH")
    assert pos.fields["collateral_asset"] == weth and type(pos.fields["collateral_asset"]) is str
    assert pos.fields["debt_asset"] == "usdc€"
    assert pos.fields["collateral_amount"] == Decimal(5 * 10**18)
    with pytest.raises(ValueError, match="text field 'debt_asset' holds at most 48 bytes, got 49"):
        p.upsert("lending", "0xab12", "WETH", {"debt_asset": "a" * 49})
    with pytest.raises(ValueError, match="may not contain NUL"):
        p.upsert("lending", "0xab12", "WETH", {"debt_asset": "a\0b"})


def test_following_the_change_ring(writer):
    """A delta stream as the seeds' services push to their clients: which keys changed, in order,
    told when the ring lapped the follower."""
    p = poscache.Producer(writer, "py-changes")
    r = poscache.Reader(writer)
    at = r.change_position()
    woke = []
    t = threading.Thread(target=lambda: woke.append(r.wait_for_changes(at, timeout=10)))
    t.start()
    time.sleep(0.05)  # blocked without the GIL
    p.fill("spot", "w7", "SOL", "buy", "2", "150")
    p.fill("spot", "w7", "SOL", "sell", "1", "160")
    p.erase("spot", "w7", "SOL")
    seq = p.invalidate(account="w7")
    assert p.wait_applied(seq, timeout=10)
    t.join()
    assert woke == [True]
    status, nxt, changes = r.changes(at)
    assert status == "ok" and nxt == r.change_position()
    assert [c["kind"] for c in changes] == ["inserted", "updated", "erased",
                                            "invalidated_account"]
    assert changes[0]["namespace"] == "spot" and changes[0]["account"] == "w7"
    assert changes[0]["instrument"] == "SOL"
    assert changes[3]["namespace"] is None and changes[3]["account"] == "w7"
    assert [c["position"] for c in changes] == sorted(c["position"] for c in changes)
    assert changes[1]["version"] > changes[0]["version"]
    assert r.changes(nxt) == ("ok", nxt, [])
    # A follower the ring lapped is told so, and where to resync.
    for i in range(17000):  # more than the ring's 16 384 cells
        seq = p.upsert("quotes", "mkt", f"S{i % 100}", {"bid": str(i)}, timeout=10)
    assert p.wait_applied(seq, timeout=30)
    status, resync_at, changes = r.changes(nxt)
    assert status == "lapped" and resync_at == r.change_position() and changes == []
    assert r.changes(r.change_position() + 1)[0] == "invalid_position"


def test_a_full_ring_raises_full_at_once_and_waits_with_a_timeout(writer):
    p = poscache.Producer(writer, "py-full", capacity=64)
    # Stop the writer from draining (SIGSTOP), fill the ring, then let it go.
    pid = poscache.Reader(writer).stats()["writer_pid"]
    os.kill(pid, 19)
    try:
        for i in range(64):
            p.upsert("spot", "w1", "SOL", {"qty": i})
        with pytest.raises(poscache.Full, match="ring is full"):
            p.upsert("spot", "w1", "SOL", {"qty": 64})
        t0 = time.monotonic()
        with pytest.raises(poscache.Full):
            p.upsert("spot", "w1", "SOL", {"qty": 64}, timeout=0.1)
        assert time.monotonic() - t0 >= 0.09
        # Every push takes a timeout and waits it out.
        for name, call in (
                ("fill", lambda t: p.fill("spot", "w1", "SOL", "buy", "1", "1", timeout=t)),
                ("mark", lambda t: p.mark("spot", "SOL", "2", timeout=t)),
                ("add", lambda t: p.add("lending", "a", "ETH", "blocks_unhealthy", 1, timeout=t)),
                ("reset", lambda t: p.reset("lending", "a", "ETH", "blocks_unhealthy", timeout=t)),
                ("erase", lambda t: p.erase("spot", "w1", "SOL", timeout=t)),
                ("invalidate", lambda t: p.invalidate(ns="spot", timeout=t))):
            t0 = time.monotonic()
            with pytest.raises(poscache.Full, match="stayed full for the whole timeout"):
                call(0.05)
            assert time.monotonic() - t0 >= 0.045, name
    finally:
        os.kill(pid, 18)
    seq = p.upsert("spot", "w1", "SOL", {"qty": 65}, timeout=10)
    assert p.wait_applied(seq, timeout=10)
    assert poscache.Reader(writer).get("spot", "w1", "SOL").fields["qty"] == 65
    assert p.stats()["full"] >= 1


def test_every_finite_decimal_exact_at_the_scale_is_taken_and_the_rest_refused(writer):
    p = poscache.Producer(writer, "py-decimals")
    r = poscache.Reader(writer)
    forms = {
        "e1": Decimal("1E-7"),
        "e2": Decimal("1.0E+3"),
        "e3": Decimal("12.500").normalize(),           # 12.5
        "e4": Decimal("-0"),
        "e5": Decimal("1.000000000000000000000000"),  # exact, 24 places
        "e6": Decimal("-1.23E-16"),
    }
    seq = 0
    for acct, value in forms.items():
        seq = p.upsert("spot", acct, "SOL", {"qty": value}, timeout=5)
    assert p.wait_applied(seq, timeout=10)
    for acct, value in forms.items():
        assert r.get("spot", acct, "SOL")["qty"] == value, acct
    # A value just read goes back in as it is (here in exponent form, 0E-18).
    zero = r.get("spot", "e4", "SOL")["qty"]
    seq = p.fill("spot", "e7", "SOL", "buy", Decimal("2E+0"), r.get("spot", "e2", "SOL")["qty"],
                 fee=zero, trade_id="py-e7")
    assert p.wait_applied(seq, timeout=10)
    assert r.get("spot", "e7", "SOL")["avg_price"] == 1000
    with pytest.raises(ValueError, match="qty"):
        p.upsert("spot", "x", "SOL", {"qty": Decimal("1E-19")})  # finer than scale 18
    seq = p.upsert("spot", "e8", "SOL", {"qty": "1.0000000000000000000"}, timeout=5)  # zeros beyond
    assert p.wait_applied(seq, timeout=10) and r.get("spot", "e8", "SOL")["qty"] == 1
    with pytest.raises(ValueError, match=r"qty: Decimal\('NaN'\) is not a finite number"):
        p.fill("spot", "x", "SOL", "buy", Decimal("NaN"), "1")
    with pytest.raises(ValueError, match=r"field 'qty': Decimal\('-Infinity'\)"):
        p.upsert("spot", "x", "SOL", {"qty": Decimal("-Infinity")})
    with pytest.raises(ValueError, match="trade_id must have 1 to 64 characters"):
        p.fill("spot", "x", "SOL", "buy", "1", "1", trade_id="")
    with pytest.raises(ValueError, match="outside int64"):
        p.add("lending", "0xab", "ETH", "blocks_unhealthy", 2**63)
    with pytest.raises(ValueError, match="outside int64"):
        p.add("lending", "0xab", "ETH", "blocks_unhealthy", -2**63 - 1)
    seq = p.add("lending", "0xab", "ETH", "blocks_unhealthy", -2**63, timeout=1)
    assert p.wait_applied(seq, timeout=10)
    assert r.get("lending", "0xab", "ETH")["blocks_unhealthy"] == -2**63


def test_every_message_says_what_the_writer_did_with_it(writer):
    p = poscache.Producer(writer, "py-outcome")
    first = p.fill("spot", "o1", "SOL", "buy", "1", "100", trade_id="py-o1", timeout=1)
    again = p.fill("spot", "o1", "SOL", "buy", "1", "100", trade_id="py-o1", timeout=1)
    gone = p.erase("spot", "nobody", "SOL", timeout=1)
    p.add("lending", "0xcd", "ETH", "blocks_unhealthy", 2**63 - 1, timeout=1)
    over = p.add("lending", "0xcd", "ETH", "blocks_unhealthy", 1, timeout=1)
    assert p.wait_applied(over, timeout=10)
    assert p.outcome(first) == "applied"
    assert p.outcome(again) == "duplicate"
    assert p.outcome(gone) == "not_found"
    assert p.outcome(over) == "rejected"
    assert "would overflow int64" in p.refusal(over)
    assert p.refusal(first) is None
    assert p.outcome(over + 1) == "unknown"
    for call in (lambda: p.mark("spot", "SOL", "101", timeout=0.5),
                 lambda: p.reset("lending", "0xcd", "ETH", "blocks_unhealthy", timeout=0.5),
                 lambda: p.invalidate(account="nobody", timeout=0.5)):
        assert p.outcome(call()) in ("pending", "applied")
    with pytest.raises(ValueError, match="timeout"):
        p.erase("spot", "nobody", "SOL", timeout=-1)


def test_a_batch_is_applied_whole_or_not_at_all(writer):
    p = poscache.Producer(writer, "py-batch")
    r = poscache.Reader(writer)
    trade = [
        {"op": "fill", "ns": "spot", "account": "pb", "instrument": "SOL", "side": "buy",
         "qty": "10", "price": Decimal("100"), "fee": "0.1", "trade_id": "PB-1"},
        {"op": "fill", "ns": "spot", "account": "pb", "instrument": "USDC", "side": "sell",
         "qty": Decimal("1000.1"), "price": 1, "trade_id": "PB-1-cash"},
    ]
    seq = p.batch(trade, timeout=1)
    assert p.wait_applied(seq, timeout=10)
    assert [p.outcome(seq + i) for i in range(3)] == ["applied", "applied", "applied"]
    assert r.get("spot", "pb", "USDC")["qty"] == Decimal("-1000.1")
    seq = p.batch(trade, timeout=1)  # resent: both legs are duplicates
    assert p.wait_applied(seq, timeout=10)
    assert [p.outcome(seq + 1), p.outcome(seq + 2)] == ["duplicate", "duplicate"]
    with pytest.raises(ValueError, match=r"batch: command 1 \(fill\): .*price"):
        p.batch([trade[0], dict(trade[1], price="1,0")])
    with pytest.raises(TypeError, match=r"batch: command 0 \(fill\): its members do not match fill\(\)"):
        p.batch([{k: v for k, v in trade[0].items() if k != "price"}])
    seq = p.batch(tuple(dict(leg, trade_id=leg["trade_id"] + "-t") for leg in trade))  # any sequence
    assert p.wait_applied(seq, timeout=10) and p.outcome(seq) == "applied"
    with pytest.raises(ValueError, match="op 'invalidate' cannot be part of a batch"):
        p.batch([{"op": "invalidate", "all": True}])
    with pytest.raises(ValueError, match="at most 64"):
        p.batch([{"op": "erase", "ns": "spot", "account": "x", "instrument": "SOL"}] * 65)
    p.add("lending", "pb", "ETH", "blocks_unhealthy", 2**63 - 1, timeout=1)
    seq = p.batch([dict(trade[0], trade_id="PB-2"),
                   {"op": "add", "ns": "lending", "account": "pb", "instrument": "ETH",
                    "field": "blocks_unhealthy", "by": 1}], timeout=1)
    assert p.wait_applied(seq, timeout=10)
    assert p.outcome(seq) == "rejected"
    assert "command 1 (add)" in p.refusal(seq)
    assert r.get("spot", "pb", "SOL")["qty"] == 20  # nothing of it applied


def test_the_heartbeat_budget_is_seconds_above_zero_or_none(writer):
    """How long the writer may be silent before a read stuck mid-write asks whether it lives
    (docs/concepts.md, Reader): a bad value is refused naming the argument."""
    assert poscache.Reader(writer, writer_silent_after=0.25).get("spot", "w1", "SOL") is None
    assert poscache.Reader(writer, writer_silent_after=None).get("spot", "w1", "SOL") is None
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="writer_silent_after"):
            poscache.Reader(writer, writer_silent_after=bad)


def test_wait_timeouts_are_seconds_at_least_zero_or_inf(writer):
    """NaN and negative timeouts are refused naming the argument (NaN used to block for ever);
    0 looks once; inf waits without end, until the change."""
    r = poscache.Reader(writer)
    p = poscache.Producer(writer, "py-wait")
    seen, at = r.change_sequence(), r.change_position()
    for wait, since in ((r.wait_for_change, seen), (r.wait_for_changes, at)):
        with pytest.raises(ValueError, match=r"timeout=nan is not a number of seconds >= 0"):
            wait(since, timeout=float("nan"))
        with pytest.raises(ValueError, match=r"timeout=-1.0"):
            wait(since, timeout=-1)
        assert wait(since, timeout=0) is False
    threading.Timer(0.2, lambda: p.upsert("spot", "w-inf", "SOL", {"qty": "1"})).start()
    assert r.wait_for_change(seen, timeout=float("inf")) is True
    assert r.wait_for_changes(at, timeout=float("inf")) is True


def test_ctrl_c_interrupts_a_long_wait_at_once(writer):
    """SIGINT sent to this process during a 5 s wait raises KeyboardInterrupt within a slice
    (50 ms), not when the wait ends; the GIL is free meanwhile (the timer thread runs)."""
    import signal

    r = poscache.Reader(writer)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for wait, since in ((r.wait_for_change, r.change_sequence()),
                            (r.wait_for_changes, r.change_position())):
            threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            start = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                wait(since, timeout=5)
            assert time.monotonic() - start < 1.0, "the signal waited for the timeout"
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_key_part_no_key_has_is_an_error_naming_the_part(writer):
    """':' separates the parts of a key's text and NUL ends a C string: no key has either, so a
    read asking for one is a mistake, not a miss."""
    r = poscache.Reader(writer)
    with pytest.raises(ValueError, match=r"account 'w:1' has ':' at position 1"):
        r.get("spot", "w:1", "SOL")
    with pytest.raises(ValueError, match=r"instrument 'SO\\x00L' has '\\x00' at position 2"):
        r.get("spot", "w1", "SO\0L")
    with pytest.raises(ValueError, match=r"get_many\(\): key 1: account 'a:b'"):
        r.get_many([("spot", "w1", "SOL"), ("spot", "a:b", "SOL")])
    for call in (r.snapshot, r.positions_of, lambda a: r.scan(account=a)):
        with pytest.raises(ValueError, match=r"account 'a\\x00b' has '\\x00'"):
            call("a\0b")
    assert r.get("spot", "w.1-x_y", "SOL/USDC") is None  # every allowed character: a miss


def test_a_reader_closes_by_hand_or_with_a_block_and_is_not_used_after(writer):
    p = poscache.Producer(writer, "py-close")
    assert p.wait_applied(p.upsert("spot", "w1", "SOL", {"qty": "3"}), timeout=10)
    with poscache.Reader(writer) as r:
        assert not r.closed
        assert r.get("spot", "w1", "SOL").fields["qty"] == Decimal("3")
    assert r.closed
    for use in (lambda: r.get("spot", "w1", "SOL"), r.scan, r.stats,
                lambda: r.snapshot("w1"), lambda: r.wait_for_change(0, timeout=0)):
        with pytest.raises(ValueError, match=f"the Reader of segment '{writer}' is closed"):
            use()
    r.close()  # twice: harmless
    # A wait in another thread ends with the same error when the Reader is closed under it.
    r2 = poscache.Reader(writer)
    errors = []

    def wait():
        try:
            r2.wait_for_change(r2.change_sequence(), timeout=30)
        except ValueError as e:
            errors.append(str(e))

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.1)
    start = time.monotonic()
    r2.close()
    t.join(timeout=5)
    assert not t.is_alive() and time.monotonic() - start < 1.0
    assert errors and "is closed" in errors[0]


def test_scan_of_a_retired_segment_raises_retired(tmp_path):
    """A writer that re-creates the segment (here with another capacity) retires the old one:
    scan() and positions_of() on a Reader still mapping it raise Retired instead of returning
    the old generation's positions; after follow() they read the new one."""
    from conftest import WRITER, _cleanup

    seg = f"poscache_test_py_retire_{os.getpid()}"
    _cleanup(seg)

    def start(capacity, *more):
        proc = subprocess.Popen([WRITER, "-s", seg, "--capacity", str(capacity), "--no-redis",
                                 "--no-http", "--log-level", "warn", *more],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                poscache.Producer(seg, "probe").close()
                return proc
            except poscache.Error:
                assert time.monotonic() < deadline and proc.poll() is None, "no writer"
                time.sleep(0.01)

    first = start(1000)
    try:
        p = poscache.Producer(seg, "py-retire")
        assert p.wait_applied(p.upsert("spot", "w1", "SOL", {"qty": "1"}), timeout=10)
        p.close()
        r = poscache.Reader(seg)
        assert len(r.scan()) == 1
        first.terminate()
        assert first.wait(timeout=30) == 0
        second = start(2000, "--recreate")
        try:
            with pytest.raises(poscache.Retired):
                r.scan()
            with pytest.raises(poscache.Retired):
                r.positions_of("w1")
            with pytest.raises(poscache.Retired):
                r.get("spot", "w1", "SOL")
            assert r.follow()
            assert r.scan() == [] and r.positions_of("w1") == []
            r.close()
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        _cleanup(seg)
