#!/usr/bin/env python3
"""Independent reference for poscache's fill and mark arithmetic, in exact rationals.

Written from the specification (writer/ingest/fill_math.hpp's header comment), not from the C++:
every value is a fractions.Fraction, and every derived value is rounded once, half to even, to
its field's scale by round_half_even() below.

Usage:
  fill_reference.py FILE         check the commands and results the C++ test wrote to FILE
  fill_reference.py --self-test  hand-checked cases of the reference itself

FILE holds one JSON object per line:
  line 1, the header: {"namespaces": {NS: {FIELD: SCALE, ...}, ...}}, the scale of each trading
      field (qty, avg_price, cost_basis, realized_pnl, fees, mark_price, unrealized_pnl) in every
      namespace the commands use. A namespace missing from it (or a file without the header) has
      every field at scale 18, as the trading preset.
  every other line, one command and what poscache did with it:
      {"cmd": <the JSON-lines command as sent>,
       "got": {"status": "applied" | "duplicate" | "not_found" | ...,
               "count": <positions a mark marked>,
               "positions": {"NS|ACCOUNT|INSTRUMENT": {FIELD: decimal text, ...}, ...}}}
      "positions" lists the command's position (a fill, a mark of one account: with no fields if
      there is no such position), or every account's holding the instrument (a mark of every
      account), each with the decimal fields it has set, as poscache formats them: exactly
      SCALE digits after the point.

The model, with s = sign(Q) and [x]_f = x rounded half to even to field f's scale; a fill of side
d (+1 buy, -1 sell), quantity q > 0, price p >= 0 and fee phi; Q' = Q + d q:
  the cash of (a part of) a fill: [q p]_C, rounded once
  opening   Q = 0 or s = d:   A' = [(|Q| A + q p) / |Q'|]_A   C' = C + [q p]_C   R' = R
  reducing  s = -d, q <= |Q|: C' = [C |Q'| / |Q|]_C (0 if Q' = 0)   A' = A (0 if Q' = 0)
                              R' = R + [s ([q p]_C - (C - C'))]_R
  crossing  s = -d, q > |Q|:  R' = R + [s ([|Q| p]_C - C)]_R   A' = p   C' = [|Q'| p]_C
  always    F' = F + phi; with a mark M: U' = [Q' M - s' C']_U
  mark m    M' = m, U' = [Q m - s C]_U, of one account or of every account holding the instrument
            (a mark of one account without that position is "not_found")
  a fill whose trade id its namespace has seen is "duplicate" and changes nothing.
C and R move by amounts rounded once ([C + x]_C would differ from C + [x]_C when x is an exact
half and C's last digit odd: half to even is not invariant under a shift by one unit), so that
I4 (R - sC = the fills' cash, -sum d [q p]_C) holds exactly whenever R's scale is at least C's.

For every command the status, the mark count, the positions listed, the set of fields of each and
every field's text must equal the reference's. After every fill (and, for what a mark changes,
every mark) the reference's own state is checked against the invariants FI1-FI5 and against an
exact model that never rounds, within bounds stated and argued in Position.check. The first
difference exits 1, naming the line, the command, the position, the field, what poscache wrote
and what the reference expected; else one line of counts is printed. The records are checked in
up to 4 processes (check_file says why that is safe and still reports the earliest difference).
"""
import contextlib
import io
import json
import os
import pickle
import re
import sys
import tempfile
from fractions import Fraction

FIELDS = ("qty", "avg_price", "cost_basis", "realized_pnl", "fees", "mark_price", "unrealized_pnl")
ZERO = Fraction(0)
POW10 = [10**i for i in range(80)]
DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?\Z")
CMD_FIRST = re.compile(r'\{\s*"cmd"\s*:\s*')


def round_half_even(x, scale):
    """x (a Fraction) rounded to `scale` decimals, an exact half to the even neighbour."""
    unit, den = POW10[scale], x.denominator
    q, r = divmod(x.numerator * unit, den)  # floor: x * unit = q + r / den, 0 <= r < den
    twice = 2 * r
    if twice > den or (twice == den and q & 1):
        q += 1
    return Fraction(q, unit)


def is_half(x, scale):
    """Whether x lies exactly halfway between two decimals of `scale` (a tie for rounding)."""
    return 2 * (x.numerator * POW10[scale] % x.denominator) == x.denominator


def mantissa(x, scale):
    """x, a decimal at `scale`, in units of its last place (an int)."""
    per, rest = divmod(POW10[scale], x.denominator)
    if rest:
        raise Mismatch(f"the reference holds {x}, not a decimal at scale {scale}")
    return x.numerator * per


def sign(x):
    return (x.numerator > 0) - (x.numerator < 0)


def exceeds(err, num, den):
    """|err| > num / den, for a Fraction err and integers num, den > 0."""
    return abs(err.numerator) * den > num * err.denominator


def parse_decimal(text, scale, exact=True):
    """The value of a decimal text at `scale`, or None if it is not one. exact: as poscache writes
    it (exactly `scale` digits after the point; no point at scale 0); else as a command may give
    it ([+-]digits[.digits], at most `scale` digits after the point)."""
    if not isinstance(text, str):
        return None
    if not exact and text[:1] == "+":
        text = text[1:]
    if not DECIMAL.match(text):
        return None
    whole, _, frac = text.partition(".")
    if len(frac) > scale or (exact and len(frac) != scale):
        return None
    return Fraction(int(whole + frac.ljust(scale, "0")), POW10[scale])


def format_decimal(x, scale):
    """x (a decimal at `scale`) as poscache writes it: -0.050 at scale 3, 5 at scale 0."""
    m = mantissa(x, scale)
    t = str(-m if m < 0 else m).rjust(scale + 1, "0")
    if scale:
        t = t[:-scale] + "." + t[-scale:]
    return "-" + t if m < 0 else t


class Mismatch(Exception):
    pass


class Scales:
    """A namespace's field scales, and the units and half units of their last places."""

    def __init__(self, scales):
        for f in FIELDS:
            if not isinstance(scales.get(f), int):
                raise Mismatch(f"header: no scale for field {f}")
        self.of = dict(scales)
        self.qty, self.avg, self.cost, self.real = (scales[f] for f in FIELDS[:4])
        self.fee, self.mark, self.unreal = (scales[f] for f in FIELDS[4:])
        # The error bounds are counts of half units, k h_f = k / (2 x 10^scale_f); summed over two
        # fields, at the finer scale: k1 h_f1 + k2 h_f2 = (k1 w1 + k2 w2) / (2 x 10^max(...)).
        self.half_avg = 2 * POW10[self.avg]
        self.half_cost = 2 * POW10[self.cost]
        top = max(self.cost, self.real)
        self.d_w = (POW10[top - self.cost], POW10[top - self.real], 2 * POW10[top])
        top = max(self.cost, self.unreal)
        self.u_w = (POW10[top - self.cost], POW10[top - self.unreal], 2 * POW10[top])
        # FI4 (P&L conservation against the cash rounded at C's scale) needs R's grid to hold C's.
        self.same_rc = self.real >= self.cost


class Counts:
    def __init__(self):
        self.commands = self.fills = self.duplicates = self.marks = self.marks_all = 0
        self.not_found = self.compared = self.invariants = self.bounds = 0
        self.openings = self.reductions = self.closes = self.crossings = 0
        self.i4_exact = self.i4_ties = 0  # FI4 checks: no exact half met yet / some met
        self.roundings = self.halves = 0  # roundings done, of which of an exact half


class Position:
    """One position: the reference's state (rounded as specified), the exact model beside it, and
    what the invariants and the error bounds need of its history."""

    __slots__ = ("sc", "n", "Q", "A", "C", "R", "F", "M", "U",  # the reference state
                 "Cx", "Rx",  # the exact model; its Q, F and M are the reference's, its avg Cx/|Q|
                 "kC", "kR",  # cash roundings at C's scale and roundings of R so far (the bound on D)
                 "qsum", "fsum",  # FI1: the fills' signed quantities and fees, in units, summed
                 "lo", "hi", "opens", "since", "first",  # FI2, FI3: the fills that opened it
                 "cash", "ties",  # FI4: -sum d [q p]_C, and the exact halves met on the way
                 "texts")  # field -> (value, its text) as last formatted

    def __init__(self, sc, n):
        self.sc, self.n = sc, n
        self.Q = self.A = self.C = self.R = self.F = ZERO
        self.M = self.U = None
        self.Cx = self.Rx = ZERO
        self.kC = self.kR = 0
        self.qsum = self.fsum = 0
        self.lo = self.hi = None
        self.opens = 0  # opening fills since it was last flat or crossed (a crossing is one)
        self.since = 0  # fills since it was last flat or crossed (each rounds C once)
        self.first = None  # the price of the fill that opened it, while it is the only one
        self.cash = ZERO
        self.ties = 0
        self.texts = {}

    def fields(self):
        v = {"qty": self.Q, "avg_price": self.A, "cost_basis": self.C, "realized_pnl": self.R,
             "fees": self.F}
        if self.M is not None:
            v["mark_price"], v["unrealized_pnl"] = self.M, self.U
        return v

    def text(self, field, value):
        """format_decimal(value, field's scale), kept while the value is the same object."""
        kept = self.texts.get(field)
        if kept is None or kept[0] is not value:
            kept = self.texts[field] = (value, format_decimal(value, self.sc.of[field]))
        return kept[1]

    def _round(self, x, scale):
        n = self.n
        n.roundings += 1
        if is_half(x, scale):
            n.halves += 1
        return round_half_even(x, scale)

    def fill(self, d, q, p, phi):
        sc, rnd, n = self.sc, self._round, self.n
        Q, A, C, R = self.Q, self.A, self.C, self.R
        s = sign(Q)
        Q1 = Q + q if d > 0 else Q - q
        aQ, aQ1 = (-Q if s < 0 else Q), (-Q1 if Q1.numerator < 0 else Q1)
        if s == 0 or s == d:  # opening
            qp = q * p
            A1 = rnd((aQ * A + qp) / aQ1, sc.avg)
            C1 = C + rnd(qp, sc.cost)
            R1 = R
            Cx1, Rx1 = self.Cx + qp, self.Rx
            if s == 0:  # A' = [q p / q] = p exactly (p is at A's scale); C' = [q p]_C
                self.lo = self.hi = self.first = p
                self.opens = self.since = 1
            else:
                self.lo, self.hi = min(self.lo, p), max(self.hi, p)
                self.opens += 1
                self.since += 1
                self.first = None
            self.kC += 1
            cash, tie = round_half_even(qp, sc.cost), is_half(qp, sc.cost)
            self.cash = self.cash - cash if d > 0 else self.cash + cash
            n.openings += 1
        elif q <= aQ:  # reducing
            qp = q * p
            if Q1.numerator:
                C1 = rnd(C * aQ1 / aQ, sc.cost)
                A1 = A
                Cx1 = self.Cx * aQ1 / aQ
                self.since += 1
                self.first = None
            else:
                C1 = A1 = Cx1 = ZERO
                self.lo = self.hi = self.first = None
                self.opens = self.since = 0
            inc = rnd(qp, sc.cost) - (C - C1)
            R1 = R + rnd(inc if s > 0 else -inc, sc.real)
            inc = qp - (self.Cx - Cx1)
            Rx1 = self.Rx + inc if s > 0 else self.Rx - inc
            self.kR += 1
            self.kC += 1  # the closed part's cash, [q p]_C
            cash, tie = round_half_even(qp, sc.cost), is_half(qp, sc.real)
            self.cash = self.cash - cash if d > 0 else self.cash + cash
            n.reductions += 1
            n.closes += not Q1.numerator
        else:  # crossing: closes |Q| to flat, then opens |Q'| at p
            qp, qp1 = aQ * p, aQ1 * p
            inc = rnd(qp, sc.cost) - C
            R1 = R + rnd(inc if s > 0 else -inc, sc.real)
            A1 = p
            C1 = rnd(qp1, sc.cost)
            inc = qp - self.Cx
            Rx1 = self.Rx + inc if s > 0 else self.Rx - inc
            Cx1 = qp1
            self.lo = self.hi = self.first = p
            self.opens = self.since = 1
            self.kR += 1
            self.kC += 2  # the closing and the opening parts' cash
            cash = round_half_even(qp, sc.cost) + round_half_even(qp1, sc.cost)
            tie = is_half(qp, sc.real)
            self.cash = self.cash - cash if d > 0 else self.cash + cash
            n.crossings += 1
        self.ties += tie
        self.Q, self.A, self.C, self.R, self.F = Q1, A1, C1, R1, self.F + phi
        self.Cx, self.Rx = Cx1, Rx1
        self.qsum += d * mantissa(q, sc.qty)
        self.fsum += mantissa(phi, sc.fee)
        if self.M is not None:
            self.U = self.unrealized(self.M)

    def unrealized(self, m):
        """[Q m - s C]_U"""
        x = self.Q * m
        s = sign(self.Q)
        return self._round(x - self.C if s > 0 else x + self.C if s < 0 else x, self.sc.unreal)

    def mark(self, m):
        self.M = m
        self.U = self.unrealized(m)

    def check(self, after_fill=True):
        """Invariants I1-I5 and the error bounds against the exact model, on the reference's own
        state; after a mark, those a mark bears on. Raises Mismatch naming what broke."""
        sc, n = self.sc, self.n
        Q, A, C, R, M, Cx = self.Q, self.A, self.C, self.R, self.M, self.Cx
        s = sign(Q)
        bad = []
        eR = R - self.Rx  # realized P&L's error against the exact model
        # Against the exact model, which never rounds: its average Ax = Cx / |Q|, Ux = Q M - s Cx;
        # h_f is half a unit of field f's last place, the most one rounding to f errs by:
        #   |A - Ax| <= (opens - 1) h_A, opens = opening fills since flat or crossed. The first
        #       fill from flat and a crossing make A = Ax = p (p is at A's scale); a later opening
        #       fill maps the error e to e |Q| / |Q'| + r with |Q| < |Q'| and |r| <= h_A; a
        #       reduction keeps it (A' = A, Ax' = Cx |Q'|/|Q| / |Q'| = Ax).
        #   |C - Cx| <= since h_C, since = fills since flat or crossed. The first fill and a
        #       crossing round C once; an opening fill adds one rounding to the error; a reduction
        #       scales it by |Q'| / |Q| <= 1 and adds one.
        #   |D| <= kC h_C + kR h_R, D = (R - sC) - (Rx - sCx), kC the cash roundings at C's
        #       scale (one per opening and reduction, two per crossing) and kR the roundings of R
        #       (reductions and crossings), over the whole life. An opening fill moves D by its
        #       cash's rounding (R is kept); a reduction by its cash's and R's roundings, since
        #       R' - sC' = R - sC + s [q p]_C + (R's rounding), C's own rounding cancelling; a
        #       crossing by its two cash roundings and R's. Money is neither made nor lost between
        #       realized and open P&L beyond a rounding a fill, however large the quantity (as
        #       closed x (p - A) would, with A's rounding).
        #   |R - Rx| <= kC h_C + kR h_R + since h_C, as R - Rx = D + s (C - Cx).
        #   |U - Ux| <= since h_C + h_U, as U - Ux = -s (C - Cx) + (U's rounding); and the P&L at
        #       the mark, |(R + U) - (Rx + Ux)| <= kC h_C + kR h_R + h_U, as it is D + U's rounding.
        dc, dr, dden = sc.d_w
        dnum = self.kC * dc + self.kR * dr  # kC h_C + kR h_R = dnum / dden
        if after_fill:
            n.invariants += 4
            # FI1: Q is the signed sum of the fills' quantities, F the sum of their fees, exactly
            # (tallied apart, in integers at the fields' scales).
            if mantissa(Q, sc.qty) != self.qsum or mantissa(self.F, sc.fee) != self.fsum:
                bad.append(f"FI1: qty {Q}, fees {self.F}; the fills sum to {self.qsum}, {self.fsum} "
                           f"units")
            # FI2: flat => A = 0, C = 0; after one opening fill from flat (or a crossing, which
            # opens |Q'|): A = p, C = [|Q| p]_C.
            if s == 0:
                if A or C:
                    bad.append(f"FI2: flat with avg_price {A}, cost_basis {C}")
            elif self.first is not None:
                if A != self.first or C != round_half_even(abs(Q) * self.first, sc.cost):
                    bad.append(f"FI2: avg_price {A}, cost_basis {C} after one fill at {self.first}")
            # FI3: A lies between the lowest and the highest price of the fills that opened it.
            if s and (not self.lo <= A <= self.hi or C.numerator < 0):
                bad.append(f"FI3: avg_price {A} outside [{self.lo}, {self.hi}] (cost {C})")
            # FI4, where R's scale is at least C's: R - sC = -sum d [q p]_C, the fills' cash,
            # exactly: C and R move only by cash amounts and by C's own roundings, which R takes
            # back one for one (a reduction realizes [q p]_C - (C - C')).
            if sc.same_rc:
                LR = R - C if s > 0 else R + C if s < 0 else R
                n.i4_exact += 1
                if LR != self.cash:
                    bad.append(f"FI4: R - sC = {LR} but the fills' cash is {self.cash}")
            n.bounds += 4
            if s:
                aQ = -Q if s < 0 else Q
                # |A |Q| - Cx| <= (opens - 1) h_A |Q|
                if exceeds(A * aQ - Cx, (self.opens - 1) * aQ.numerator,
                           sc.half_avg * aQ.denominator):
                    bad.append(f"avg_price {A} is further than {self.opens - 1} half units from "
                               f"the exact average {float(Cx / aQ)}")
            elif Cx:
                bad.append(f"the exact model is flat with cost {Cx}")
            eC = C - Cx
            if exceeds(eC, self.since, sc.half_cost):
                bad.append(f"cost_basis {C} is further than {self.since} half units from the "
                           f"exact cost {float(Cx)}")
            if exceeds(eR - eC if s > 0 else eR + eC if s < 0 else eR, dnum, dden):
                bad.append(f"R - sC is further than {dnum}/{dden} from the exact model's "
                           f"({self.kC} roundings of C, {self.kR} of R)")
            if exceeds(eR, dnum + self.since * dc, dden):
                bad.append(f"realized_pnl {R} is further than {dnum + self.since * dc}/{dden} "
                           f"from the exact {float(self.Rx)}")
        if M is not None:
            x = Q * M
            if after_fill:  # FI5: U = [Q M - s C]_U (a mark computes it so; a fill must keep it)
                n.invariants += 1
                if self.U != round_half_even(x - C if s > 0 else x + C if s < 0 else x, sc.unreal):
                    bad.append(f"FI5: unrealized_pnl {self.U} != [Q M - s C]_U")
            n.bounds += 2
            eU = self.U - x  # U - Ux = U - Q M + s Cx
            eU = eU + Cx if s > 0 else eU - Cx if s < 0 else eU
            wc, wu, uden = sc.u_w
            if exceeds(eU, self.since * wc + wu, uden):
                bad.append(f"unrealized_pnl {self.U} is further than {self.since * wc + wu}/{uden} "
                           f"from the exact {float(self.U - eU)}")
            top = max(dden, uden)  # D + U's rounding, at the finer scale
            limit = dnum * (top // dden) + wu * (top // uden)
            if exceeds(eR + eU, limit, top):
                bad.append(f"realized + unrealized is further than {limit}/{top} from the exact")
        if bad:
            raise Mismatch("the reference's own state breaks: " + "; ".join(bad))


class Checker:
    """Checks records, in file order, against the reference: all of a file's, or those of some
    (namespace, instrument) pairs, which nothing crosses (see check_file)."""

    def __init__(self, scales):
        self.n = Counts()
        self.scales = scales  # ns -> Scales
        self.book = {}  # (ns, account, instrument) -> Position
        self.holders = {}  # (ns, instrument) -> [keys], in the order first filled

    def command(self, cmd, got, duplicate):
        """One record; `duplicate`: whether a fill's trade id was seen before in its namespace."""
        n = self.n
        n.commands += 1
        op = cmd.get("op")
        ns = cmd["ns"]
        sc = self.scales[ns]

        def dec(name, scale):
            v = parse_decimal(str(cmd[name]), scale, exact=False)
            if v is None:  # the decoder would refuse it; the test sends only valid decimals
                raise Mismatch(f"member {name} {cmd[name]!r} is not a decimal at scale {scale}")
            return v

        key = (ns, cmd.get("account"), cmd["instrument"])
        want_count = None
        if op == "fill":
            if duplicate:
                status = "duplicate"
                n.duplicates += 1
            else:
                status = "applied"
                n.fills += 1
                d = {"buy": 1, "sell": -1}[cmd["side"]]
                q, p = dec("qty", sc.qty), dec("price", sc.avg)
                phi = dec("fee", sc.fee) if "fee" in cmd else ZERO
                if q <= 0 or p < 0:
                    raise Mismatch(f"the test sent qty {q}, price {p}")
                pos = self.book.get(key)
                if pos is None:
                    pos = self.book[key] = Position(sc, n)
                    self.holders.setdefault((ns, key[2]), []).append(key)
                pos.fill(d, q, p, phi)
                pos.check()
            listed = [key]
        elif op == "mark":
            m = dec("price", sc.mark)
            if key[1] is not None:
                listed = [key]
                marked = [key] if key in self.book else []
                status = "applied" if marked else "not_found"
                want_count = len(marked)
                n.not_found += not marked
            else:
                listed = marked = list(self.holders.get((ns, key[2]), []))
                status, want_count = "applied", len(marked)
                n.marks_all += 1
            for k in marked:
                self.book[k].mark(m)
                self.book[k].check(after_fill=False)
            n.marks += status == "applied"
        else:
            raise Mismatch(f"unexpected op {op!r}")

        if got.get("status") != status:
            raise Mismatch(f"status: got {got.get('status')}, expected {status}")
        if status == "applied" and want_count is not None and got.get("count") != want_count:
            raise Mismatch(f"count: got {got.get('count')} positions marked, expected {want_count}")
        have = got.get("positions", {})
        if len(have) != len(listed) or any("|".join(k) not in have for k in listed):
            raise Mismatch(f"positions: got {sorted(have)}, "
                           f"expected {sorted('|'.join(k) for k in listed)}")
        for k in listed:
            name = "|".join(k)
            fields = have[name]
            pos = self.book.get(k)
            want = pos.fields() if pos is not None else {}
            if len(fields) != len(want) or any(f not in fields for f in want):
                raise Mismatch(f"{name}: fields set: got {sorted(fields)}, expected {sorted(want)}")
            for f, v in want.items():
                expected = pos.text(f, v)
                n.compared += 1
                if fields[f] != expected:
                    raise Mismatch(f"{name} field {f}: got {fields[f]}, expected {expected}")


def summary(n, positions, namespaces):
    return (f"fill reference: {n.commands} commands ({n.fills} fills: {n.openings} opening, "
            f"{n.reductions} reducing ({n.closes} to flat), {n.crossings} crossing; "
            f"{n.duplicates} duplicates; {n.marks} marks, {n.marks_all} of every account, "
            f"{n.not_found} of no position) on {positions} positions in {namespaces} namespaces; "
            f"{n.compared} field values equal to the reference; {n.invariants} invariant checks "
            f"(I4 {n.i4_exact} exact); {n.bounds} bounds against "
            f"the exact model; {n.roundings} roundings, {n.halves} of an exact half")


def check_part(lines, scales, part):
    """Checks the records at `part`, (line index, duplicate) pairs in file order. Returns (None
    or (line number, message), the counts, the positions seen)."""
    c = Checker(scales)
    for i, duplicate in part:
        cmd = None
        try:
            rec = json.loads(lines[i])
            cmd = rec["cmd"]
            c.command(cmd, rec["got"], duplicate)
        except Mismatch as e:
            return (i + 1, f"{json.dumps(cmd)}: {e}"), c.n.__dict__, len(c.book)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            return (i + 1, f"{json.dumps(cmd)}: malformed record: {e!r}"), c.n.__dict__, len(c.book)
    return None, c.n.__dict__, len(c.book)


def in_parallel(parts, work):
    """work(part) for each part, the first here and the others in forked children (a pipe each
    for the pickled result: no semaphores, nothing to install)."""
    children = []
    for part in parts[1:]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its result, or what broke, then out without cleanup
            os.close(r)
            try:
                result = ("ok", work(part))
            except BaseException as e:  # noqa: B902 - reported by the parent
                result = ("crash", repr(e))
            with os.fdopen(w, "wb") as out:
                pickle.dump(result, out)
            os._exit(0)
        os.close(w)
        children.append((pid, r))
    results = [work(parts[0])]
    for pid, r in children:
        with os.fdopen(r, "rb") as inp:
            data = inp.read()
        os.waitpid(pid, 0)
        if not data:
            raise RuntimeError("a checking child died without a result")
        kind, result = pickle.loads(data)
        if kind != "ok":
            raise RuntimeError(f"a checking child failed: {result}")
        results.append(result)
    return results


def check_file(path, jobs=None):
    """Checks FILE in `jobs` processes (default: the CPUs this process may use, at most 4).
    Nothing crosses a (namespace, instrument) pair once the duplicates are known: a fill touches
    its own position, a mark the instrument's positions in its namespace. Trade ids do cross
    them (a redelivered id may name another position), so a first pass, in file order, reads
    each command and settles which fills are duplicates; the pairs are then shared out, each
    pair's records checked in file order by one process, and the first difference reported is
    the earliest any process found."""
    with open(path) as fh:
        lines = fh.readlines()
    scales, first = {}, 0
    if lines and lines[0].startswith('{"namespaces"'):
        try:
            scales = {ns: Scales(sc) for ns, sc in json.loads(lines[0])["namespaces"].items()}
        except Mismatch as e:
            print(f"fill reference: line 1: {e}")
            return 1
        first = 1
    decoder = json.JSONDecoder()
    seen = set()  # (ns, trade id)
    shards = {}  # (ns, instrument) -> [(line index, duplicate)]
    for i in range(first, len(lines)):
        line = lines[i]
        try:  # the command alone where it comes first, as the C++ test writes it
            head = CMD_FIRST.match(line)
            cmd = decoder.raw_decode(line, head.end())[0] if head else json.loads(line)["cmd"]
            ns, op, tid = cmd["ns"], cmd.get("op"), cmd.get("trade_id")
            shard = shards.setdefault((ns, cmd["instrument"]), [])
        except (KeyError, TypeError, ValueError) as e:
            print(f"fill reference: line {i + 1}: malformed record: {e!r}")
            return 1
        if ns not in scales:
            scales[ns] = Scales({f: 18 for f in FIELDS})
        duplicate = False
        if op == "fill" and tid is not None:
            duplicate = (ns, str(tid)) in seen
            seen.add((ns, str(tid)))
        shard.append((i, duplicate))
    if jobs is None:
        jobs = min(4, len(os.sched_getaffinity(0)))
    parts = [[] for _ in range(max(1, min(jobs, len(shards))))]
    for shard in sorted(shards.values(), key=len, reverse=True):  # the largest to the least busy
        min(parts, key=len).extend(shard)
    results = in_parallel([sorted(p) for p in parts],
                          lambda part: check_part(lines, scales, part))
    errors = [e for e, _, _ in results if e is not None]
    if errors:
        line_no, message = min(errors)
        print(f"fill reference: line {line_no}: {message}")
        return 1
    n = Counts()
    for _, counts, _ in results:
        for k, v in counts.items():
            setattr(n, k, getattr(n, k) + v)
    print(summary(n, sum(p for _, _, p in results), len(scales)))
    return 0


def self_test():
    """Hand-checked cases: the reference against arithmetic done by hand."""
    F = Fraction  # F("100.5") is exact
    # Half to even, both signs, and not only at the last digit.
    assert round_half_even(F(5, 2), 0) == 2 and round_half_even(F(7, 2), 0) == 4
    assert round_half_even(F(-5, 2), 0) == -2 and round_half_even(F(-7, 2), 0) == -4
    assert round_half_even(F(251, 100), 0) == 3 and round_half_even(F(-251, 100), 0) == -3
    assert round_half_even(F(-249, 100), 0) == -2 and round_half_even(F(1, 3), 2) == F("0.33")
    assert round_half_even(F(2, 3), 2) == F("0.67") and round_half_even(F("0.125"), 2) == F("0.12")
    assert round_half_even(F("0.135"), 2) == F("0.14") and round_half_even(F(-1, 2), 0) == 0
    assert is_half(F("0.125"), 2) and not is_half(F("0.126"), 2) and not is_half(F(1, 3), 0)
    assert is_half(F("-2.5"), 0) and not is_half(F(2), 0)
    assert format_decimal(F(-5, 100), 3) == "-0.050" and format_decimal(F(5), 0) == "5"
    assert format_decimal(F(-5), 0) == "-5" and format_decimal(ZERO, 2) == "0.00"
    assert format_decimal(F(123, 10**18), 18) == "0.000000000000000123"
    assert parse_decimal("-0.050", 3) == F(-5, 100) and parse_decimal("0.05", 3) is None
    assert parse_decimal("+0.05", 3, exact=False) == F(5, 100) and parse_decimal("5", 0) == 5
    assert parse_decimal("0.0501", 3, exact=False) is None and parse_decimal("5.", 0) is None

    def fills(sc, *steps):
        """Applies (side, qty, price[, fee]) steps and ("mark", price) steps to a new position,
        checking its state after each."""
        p = Position(sc, Counts())
        for step in steps:
            if step[0] == "mark":
                p.mark(F(step[1]))
                p.check(after_fill=False)
            else:
                p.fill(1 if step[0] == "buy" else -1, F(step[1]), F(step[2]),
                       F(step[3]) if len(step) > 3 else ZERO)
                p.check()
        return p

    s18 = Scales({f: 18 for f in FIELDS})
    # The worked example: buy 10 @ 100, buy 10 @ 110, sell 5 @ 120 (fee 0.5); sell 20 @ 100.
    p = fills(s18, ("buy", 10, 100), ("buy", 10, 110))
    assert (p.Q, p.A, p.C, p.R) == (20, 105, 2100, 0)
    p = fills(s18, ("buy", 10, 100), ("buy", 10, 110), ("sell", 5, 120, "0.5"))
    assert (p.Q, p.A, p.C, p.R, p.F) == (15, 105, 1575, 75, F(1, 2))
    p = fills(s18, ("buy", 10, 100), ("buy", 10, 110), ("sell", 5, 120), ("sell", 20, 100))
    assert (p.Q, p.A, p.C, p.R) == (-5, 100, 500, 0)  # closes 15 at -5 each, 5 short at 100
    # Dust keeps its price: 1e-18 @ 123.456 has A = 123.456, C = [1.23456e-16] = 1.23e-16.
    p = fills(s18, ("buy", "1e-18", "123.456"))
    assert p.A == F("123.456") and p.C == F(123, 10**18)
    # C is the money: 10 @ 100, 10 @ 100.5, 10 @ 100 (cost 3005, A = 100.1666...667), marked
    # at 101.25: U = 30 x 101.25 - 3005 = 32.5 exactly, where 30 x (101.25 - A) would not be.
    p = fills(s18, ("buy", 10, 100), ("buy", 10, "100.5"), ("buy", 10, 100), ("mark", "101.25"))
    assert p.A == F("100.166666666666666667") and p.C == 3005 and p.U == F("32.5")
    # A short: sell 4 @ 50, buy 1 @ 45 (+5), buy 3 @ 60 (-30) -> flat, R = -25, A = C = 0.
    p = fills(s18, ("sell", 4, 50), ("buy", 1, 45))
    assert (p.Q, p.A, p.C, p.R) == (-3, 50, 150, 5)
    p = fills(s18, ("sell", 4, 50), ("buy", 1, 45), ("buy", 3, 60), ("mark", 70))
    assert (p.Q, p.A, p.C, p.R, p.U) == (0, 0, 0, -25, 0)
    # Crossing: long 3 @ 10, sell 5 @ 12 -> R = 6, short 2 at 12 (C = 24); marked at 11: U = 2.
    p = fills(s18, ("buy", 3, 10), ("sell", 5, 12), ("mark", 11))
    assert (p.Q, p.A, p.C, p.R, p.U) == (-2, 12, 24, 6, 2)
    # Scale 0 everywhere: ties to even in A (3/2 -> 2) and C (3 x 1/2 = 1.5 -> 2).
    s0 = Scales({f: 0 for f in FIELDS})
    p = fills(s0, ("buy", 1, 1), ("buy", 1, 2))
    assert p.A == 2 and p.C == 3
    p = fills(s0, ("buy", 1, 2), ("buy", 1, 3))
    assert p.A == 2 and p.C == 5  # 5/2 -> 2
    p = fills(s0, ("buy", 1, 1), ("buy", 1, 2), ("sell", 1, 5))  # R = [5 - (3 - 2)] = 4
    assert (p.Q, p.A, p.C, p.R) == (1, 2, 2, 4)
    # Mixed scales (qty 1, avg 1, cost 0, realized 0, fees 0): buy 0.5 @ 0.5 -> C = [0.25] = 0
    # but A = 0.5; sell 0.5 @ 1.5 (fee 1) -> R = [0.75 - 0] = 1.
    sm = Scales({"qty": 1, "avg_price": 1, "cost_basis": 0, "realized_pnl": 0, "fees": 0,
                 "mark_price": 1, "unrealized_pnl": 0})
    p = fills(sm, ("buy", "0.5", "0.5"))
    assert p.A == F("0.5") and p.C == 0
    p = fills(sm, ("buy", "0.5", "0.5"), ("sell", "0.5", "1.5", 1))
    assert (p.Q, p.A, p.C, p.R, p.F) == (0, 0, 0, 1, 1)
    # C moves by the cash, rounded once: C = 1, then buy 1 @ 0.5: C' = 1 + [0.5] = 1 (not
    # [1.5] = 2), the cash [1] + [0.5] = 1: FI4 holds exactly across the tie.
    p = fills(sm, ("buy", 1, 1), ("buy", 1, "0.5"))
    assert p.C == 1 and p.cash == -1
    # ... and R: C = 3 (buy 1 @ 3), sell 0.5 @ 1 -> C' = [1.5] = 2, R' = 0 + [[0.5] - (3 - 2)]
    # = [0 - 1] = -1, and R - C = -3 = the cash, -3 + [0.5].
    p = fills(sm, ("buy", 1, 3), ("sell", "0.5", 1))
    assert (p.C, p.R) == (2, -1) and p.R - p.C == p.cash
    # A file: the right records pass; with two wrong ones, in two (namespace, instrument)
    # shards, the earlier is reported, in one process or two.
    def record(ins, side, qty, price, got, tid=None, status="applied"):
        cmd = {"op": "fill", "ns": "t", "account": "a", "instrument": ins, "side": side,
               "qty": qty, "price": price}
        if tid:
            cmd["trade_id"] = tid
        return {"cmd": cmd, "got": {"status": status,
                                    "positions": {f"t|a|{ins}": dict(zip(FIELDS, got))}}}
    scales = {f: 2 for f in FIELDS}
    good = [{"namespaces": {"t": scales}},
            record("X", "buy", "1", "1.5", ("1.00", "1.50", "1.50", "0.00", "0.00"), "T1"),
            record("Y", "sell", "2", "0.25", ("-2.00", "0.25", "0.50", "0.00", "0.00"), "T2"),
            record("Y", "buy", "1", "9", ("-2.00", "0.25", "0.50", "0.00", "0.00"), "T1",
                   "duplicate"),  # T1 again in "t"
            record("X", "sell", "0.5", "2", ("0.50", "1.50", "0.75", "0.25", "0.00"), "T3")]
    bad = good[:3] + [record("Y", "buy", "1", "0", ("-1.00", "0.25", "0.25", "0.26", "0.00")),
                      record("X", "sell", "0.5", "2", ("0.50", "1.50", "0.75", "0.20", "0.00"))]
    with tempfile.TemporaryDirectory() as tmp:
        for records, want in ((good, "fill reference: 4 commands"),
                              (bad, "fill reference: line 4: ")):
            path = os.path.join(tmp, "records")
            with open(path, "w") as out:
                out.writelines(json.dumps(r) + "\n" for r in records)
            for jobs in (1, 2):
                text = io.StringIO()
                with contextlib.redirect_stdout(text):
                    code = check_file(path, jobs)
                assert text.getvalue().startswith(want), (jobs, text.getvalue())
                assert code == (0 if records is good else 1), (jobs, text.getvalue())
                assert records is good or "realized_pnl: got 0.26, expected 0.25" in text.getvalue()
    print("fill reference self-test: ok")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(check_file(sys.argv[1]))
