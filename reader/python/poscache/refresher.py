"""A refresher in Python: a process that knows a source (a broker API, a chain, a database) and
answers the writer's requests for the keys readers lack (docs/read-through.md).

It speaks the writer's JSON-lines protocol on its unix socket (/dev/shm/<segment>.sock), the
protocol of the C++ refresher (include/poscache/refresher.hpp), with the standard library only:

    from decimal import Decimal
    from poscache.refresher import Refresher

    with Refresher("positions", ["alpaca"], name="alpaca-api") as r:
        r.serve(lambda req: broker.position(req.account, req.instrument))

serve() maps what the fetch function returns: a mapping of fields is an upsert, None says the
source has no such position, a list is several positions (a whole account, or a rebuild), and an
exception is an error (the writer tries again, on another refresher if there is one).
AsyncRefresher does the same with `async def` fetch functions, a task per request, and serves()
turns a plain `fetch(account, instrument)` function into a refresher.

Values cross as exact decimal text: str, int and Decimal are taken; a float is refused
(TypeError), as the writer would refuse it: binary floating point cannot carry a decimal."""
from __future__ import annotations

import asyncio
import json
import logging
import selectors
import socket as _socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

from ._poscache import Error

__all__ = ["ERASE", "AsyncRefresher", "FetchRequest", "Refresher", "Served", "serves"]

_log = logging.getLogger("poscache.refresher")

Reason: TypeAlias = Literal["stale", "miss", "forced", "rebuild", "ahead"]
"""Why a key is asked for: a stale read, a miss, a forced request (Reader::request(),
get_or_fetch(force=true)), a rebuild of the whole namespace, or a refresh-ahead of a fresh copy
late in its stale_after."""

Value: TypeAlias = str | int | Decimal
"""A field's value as given: exact decimal text, an int, or a Decimal (never a float)."""

Fields: TypeAlias = Mapping[str, Value]

PositionItem: TypeAlias = tuple[str, str, Fields] | Mapping[str, Any]
"""One position of a positions() answer: (account, instrument, fields), or a dict with the
members account, instrument, fields and optionally seq and mode ("merge" or "replace")."""

Answer: TypeAlias = Fields | Sequence[PositionItem] | None
"""What a fetch function returns to serve(): fields (an upsert of the key asked), None (the
source has no such position), or a list of positions."""

# The writer refuses a socket line longer than 64 KiB (kMaxJsonLine): longer positions answers
# are sent as several lines, all but the last with "more": true.
_MAX_LINE = 60 * 1024
_POSITION_KEYS = frozenset({"account", "instrument", "fields", "seq", "mode"})


def _socket_path(segment: str, socket: str | None) -> str:
    return socket if socket else f"/dev/shm/{segment}.sock"


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """One request of the writer: fetch this key (or, for a rebuild, the whole namespace).

    `id` is the writer's request number, which every answer names; `attempt` counts the tries
    (a retry, after an error, a timeout or a refresher gone, comes with the same id and a higher
    attempt). A rebuild has no account nor instrument (empty strings)."""

    id: int
    reason: Reason
    ns: str
    account: str = ""
    instrument: str = ""
    attempt: int = 1

    @property
    def rebuild(self) -> bool:
        """True for a rebuild: answer with positions() (any key of the namespace)."""
        return self.reason == "rebuild"


# --- the lines: built and checked here, sent by either class ----------------------------------


def _text(field: str, value: object) -> str:
    """A value as the exact text the writer takes; TypeError or ValueError naming the field."""
    if not isinstance(field, str) or not field:
        raise TypeError(f"a field name is a non-empty str, not {field!r}")
    if isinstance(value, bool):  # an int to Python, never meant as one here
        raise TypeError(f"field {field!r}: {value!r} is a bool; give str, int or Decimal")
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"field {field!r}: {value} is not a finite decimal")
        return format(value, "f")  # never exponent notation
    if isinstance(value, float):
        raise TypeError(
            f"field {field!r}: {value!r} is a float; give a decimal as str, int or Decimal "
            "(a float cannot carry an exact decimal)"
        )
    raise TypeError(f"field {field!r}: a {type(value).__name__} is not a value; "
                    "give str, int or Decimal")


def _fields(fields: Fields) -> dict[str, str]:
    if not isinstance(fields, Mapping):
        raise TypeError(f"fields must be a mapping of name to value, not a {type(fields).__name__}")
    if not fields:
        raise ValueError("fields must not be empty")
    return {k: _text(k, v) for k, v in fields.items()}


def _mode_seq(obj: dict[str, Any], mode: str | None, seq: int | None) -> None:
    if mode is not None:
        if mode not in ("merge", "replace"):
            raise ValueError(f"mode must be 'merge' or 'replace', not {mode!r}")
        obj["mode"] = mode
    if seq is not None:
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise TypeError(f"seq must be a non-negative int, not {seq!r}")
        obj["seq"] = seq


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _key_request(req: FetchRequest, what: str) -> None:
    if req.rebuild:
        raise ValueError(f"{what} answers a key's request; answer a rebuild with positions()")


def _upsert_line(req: FetchRequest, fields: Fields, mode: str | None, seq: int | None) -> bytes:
    _key_request(req, "upsert")
    obj: dict[str, Any] = {"op": "answer", "request": req.id, "upsert": _fields(fields)}
    _mode_seq(obj, mode, seq)
    return _line(obj)


def _flag_line(req: FetchRequest, kind: str) -> bytes:
    _key_request(req, kind)
    return _line({"op": "answer", "request": req.id, kind: True})


def _error_line(req: FetchRequest, why: str) -> bytes:
    return _line({"op": "answer", "request": req.id, "error": str(why) or "error"})


def _position(i: int, item: PositionItem) -> dict[str, Any]:
    try:
        if isinstance(item, Mapping):
            unknown = set(item) - _POSITION_KEYS
            if unknown:
                raise ValueError(f"unknown member {sorted(unknown)[0]!r} "
                                 "(account, instrument, fields, seq, mode)")
            if not {"account", "instrument", "fields"} <= set(item):
                raise ValueError("a position needs account, instrument and fields")
            account, instrument, fields = item["account"], item["instrument"], item["fields"]
            extra = (item.get("mode"), item.get("seq"))
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            account, instrument, fields = item
            extra = (None, None)
        else:
            raise TypeError("give (account, instrument, fields) or a dict with account, "
                            f"instrument and fields, not {item!r:.60}")
        if not isinstance(account, str) or not isinstance(instrument, str):
            raise TypeError("account and instrument are str")
        obj: dict[str, Any] = {"account": account, "instrument": instrument,
                               "fields": _fields(fields)}
        _mode_seq(obj, *extra)
        return obj
    except (TypeError, ValueError) as e:
        raise type(e)(f"position {i}: {e}") from None


def _positions_lines(req: FetchRequest, items: Iterable[PositionItem], more: bool) -> list[bytes]:
    """One line, or several under the writer's line limit (all but the last with "more")."""
    if isinstance(items, (str, bytes, Mapping)):
        raise TypeError("positions takes a list of positions")
    objs = [_position(i, p) for i, p in enumerate(items)]
    encoded = [json.dumps(o, separators=(",", ":")) for o in objs]
    head = '{"op":"answer","request":%d,"positions":[' % req.id
    chunks: list[list[str]]
    if len(head) + sum(len(e) + 1 for e in encoded) + 16 <= _MAX_LINE:
        chunks = [encoded]
    else:
        if not req.rebuild:
            # The writer decides a key's request by its last line: the asked key goes there.
            asked = [(o["account"], o["instrument"]) == (req.account, req.instrument)
                     for o in objs]
            encoded = ([e for e, a in zip(encoded, asked) if not a]
                       + [e for e, a in zip(encoded, asked) if a])
        chunks, size = [[]], len(head)
        for e in encoded:
            if chunks[-1] and size + len(e) + 16 > _MAX_LINE:
                chunks.append([])
                size = len(head)
            chunks[-1].append(e)
            size += len(e) + 1
    lines = []
    for k, chunk in enumerate(chunks):
        tail = ',"more":true}\n' if (more or k + 1 < len(chunks)) else "}\n"
        lines.append((head + ",".join(chunk) + "]" + tail).encode())
    return lines


ERASE = object()
"""Returned by a fetch function: the source says the position is gone; the writer erases it."""


def _result_lines(req: FetchRequest, result: object) -> list[bytes]:
    """serve()'s mapping of a fetch function's return value to answer lines."""
    if result is None:
        if req.rebuild:
            return _positions_lines(req, [], False)
        # The source has no such position: `absent` (remembered for negative_ttl). A copy the
        # cache holds stays (a producer may own it); return ERASE to remove it.
        return [_flag_line(req, "absent")]
    if result is ERASE:
        return [_flag_line(req, "erase")]
    if isinstance(result, Mapping):
        return [_upsert_line(req, result, None, None)]
    if isinstance(result, (list, tuple)):
        return _positions_lines(req, result, False)
    raise TypeError(f"a fetch function returns fields (a mapping), None or a list of positions, "
                    f"not a {type(result).__name__}")


def _failure_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _Protocol:
    """What both classes read from the writer: requests, and the replies to answers."""

    def __init__(self, segment: str, namespaces: Iterable[str], name: str, socket: str | None,
                 connect_timeout: float) -> None:
        if isinstance(namespaces, str):
            namespaces = [namespaces]
        self.namespaces: list[str] = list(namespaces)
        if not self.namespaces or not all(isinstance(n, str) and n for n in self.namespaces):
            raise ValueError("a refresher serves at least one namespace (a list of names)")
        self.segment = segment
        self.name = name
        self.path = _socket_path(segment, socket)
        self.connect_timeout = connect_timeout
        self.refused = 0
        """Answers the writer refused (an answer it could not use; the try counts as an error)."""
        self.last_refusal = ""
        """The writer's reason for the last refused answer."""
        self.applied = 0
        """Positions the writer applied from this refresher's answers."""
        self.dropped = 0
        """Positions of answers the writer dropped: written since the request (superseded)."""
        self._requests: list[FetchRequest] = []
        self._registered: bool | None = None  # None: no reply yet

    def _registration(self) -> bytes:
        reg: dict[str, Any] = {"op": "refresher", "namespaces": self.namespaces}
        if self.name:
            reg["name"] = self.name
        return _line(reg)

    def _take(self, raw: bytes) -> None:
        """One line from the writer: requests are queued, replies counted."""
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("op") == "fetch":
            for q in msg.get("requests") or ():
                try:
                    self._requests.append(FetchRequest(
                        id=int(q["request"]), reason=q.get("reason", "miss"), ns=q.get("ns", ""),
                        account=q.get("account", ""), instrument=q.get("instrument", ""),
                        attempt=int(q.get("attempt", 1))))
                except (KeyError, TypeError, ValueError):
                    continue
            return
        status = msg.get("status")
        if status is None:
            return
        if self._registered is None:  # the first reply is the registration's
            self._registered = status == "applied"
            if not self._registered:
                raise Error(f"refresher: the writer refused the registration on {self.path}: "
                            f"{msg.get('error', raw.decode(errors='replace').strip())}")
            return
        if status == "rejected":
            self.refused += 1
            self.last_refusal = str(msg.get("error", ""))
        else:
            self.applied += int(msg.get("applied", 0) or 0)
            self.dropped += int(msg.get("dropped", 0) or 0)

    def _pop(self) -> list[FetchRequest]:
        out, self._requests = self._requests, []
        return out

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name or '(unnamed)'} of segment {self.segment!r} "
                f"serving {', '.join(self.namespaces)}>")


class Refresher(_Protocol):
    """A refresher connected to the writer of `segment`, serving `namespaces`.

    Connects (retrying until `connect_timeout` seconds, while the writer starts) and registers;
    raises poscache.Error naming what failed, the writer's refusal included. `socket` overrides
    /dev/shm/<segment>.sock. One thread calls next() (or serve()); the answers may be sent from
    any thread (each is one line, sent whole). A context manager: close() at the end."""

    def __init__(self, segment: str = "poscache", namespaces: Iterable[str] = (), name: str = "",
                 socket: str | None = None, connect_timeout: float = 2.0) -> None:
        super().__init__(segment, namespaces, name, socket, connect_timeout)
        self._buf = b""
        self._send_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._sock = self._connect()
        try:
            self._sock.sendall(self._registration())
            deadline = time.monotonic() + connect_timeout
            while self._registered is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self._fill(left):
                    raise Error(f"refresher: the writer did not answer the registration on "
                                f"{self.path} within {connect_timeout} s")
        except BaseException:
            self.close()
            raise

    def _connect(self) -> _socket.socket:
        deadline = time.monotonic() + self.connect_timeout
        while True:
            s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                self._selector.register(s, selectors.EVENT_READ)
                return s
            except OSError as e:
                s.close()
                if time.monotonic() >= deadline:
                    raise Error(f"refresher: cannot connect to the writer's socket {self.path}: "
                                f"{e.strerror or e}") from None
                time.sleep(0.02)

    def _fill(self, timeout: float | None) -> bool:
        """Reads what arrives within `timeout` and takes its whole lines; False if nothing."""
        if self._sock is None:
            raise Error("refresher: closed")
        if not self._selector.select(timeout):
            return False
        try:
            data = self._sock.recv(1 << 16)
        except OSError as e:
            raise Error(f"refresher: the writer has gone (recv: {e.strerror or e})") from None
        if not data:
            raise Error("refresher: the writer closed the connection")
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            self._take(raw)
        return True

    def next(self, timeout: float | None = 1.0) -> list[FetchRequest]:
        """The next requests (the writer sends several at once when it has them), waiting up to
        `timeout` seconds (None: until some come); [] on timeout. Reads the replies to earlier
        answers on the way (refused, last_refusal). Raises Error when the writer has gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._requests:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._fill(left) and left is not None and time.monotonic() >= deadline:
                break
        return self._pop()

    def _send(self, *lines: bytes) -> None:
        if self._sock is None:
            raise Error("refresher: closed")
        with self._send_lock:
            try:
                for line in lines:
                    self._sock.sendall(line)
            except OSError as e:
                raise Error(f"refresher: the writer has gone (send: {e.strerror or e})") from None

    def upsert(self, req: FetchRequest, fields: Fields,
               mode: Literal["merge", "replace"] | None = None, seq: int | None = None) -> None:
        """Answers with the asked key's fields (merged into the position, or replacing it with
        mode="replace"; `seq` is the source's sequence, as a producer's upsert takes)."""
        self._send(_upsert_line(req, fields, mode, seq))

    def absent(self, req: FetchRequest) -> None:
        """The source has no such position (remembered by the writer for negative_ttl)."""
        self._send(_flag_line(req, "absent"))

    def erase(self, req: FetchRequest) -> None:
        """The source says the position is gone: the writer erases it."""
        self._send(_flag_line(req, "erase"))

    def error(self, req: FetchRequest, why: str) -> None:
        """This try failed (`why` goes to the writer's log): it is retried, maybe elsewhere."""
        self._send(_error_line(req, why))

    def positions(self, req: FetchRequest, positions: Iterable[PositionItem],
                  more: bool = False) -> None:
        """Several positions: for a key's request, of its namespace and account (a whole account
        at once, as broker APIs answer); for a rebuild, any of the namespace. `more`: other
        answers follow for the same request (a rebuild's progress). A list too long for one
        line goes as several."""
        self._send(*_positions_lines(req, positions, more))

    def answer(self, req: FetchRequest, result: Answer) -> None:
        """Sends what serve() sends for `result`: fields: upsert; a list: positions; None: the
        source has none (absent for a miss, erase for a key the cache may hold: stale, ahead,
        forced; an empty rebuild)."""
        self._send(*_result_lines(req, result))

    def serve(self, fetch: Callable[[FetchRequest], Answer],
              stop_event: threading.Event | None = None) -> None:
        """Answers requests with `fetch(req)` until `stop_event` is set (checked at least every
        quarter of a second) or the writer goes (Error). What fetch returns is sent as answer()
        sends it; an exception it raises is sent as an error (its text), and the writer tries
        again. One request at a time: use AsyncRefresher to fetch many at once."""
        while stop_event is None or not stop_event.is_set():
            for req in self.next(0.25):
                try:
                    lines = _result_lines(req, fetch(req))
                except Exception as e:  # the source's failure, or a result that cannot be sent
                    _log.debug("request %d (%s): fetch failed", req.id, req, exc_info=True)
                    lines = [_error_line(req, _failure_text(e))]
                self._send(*lines)

    def close(self) -> None:
        """Closes the connection: the writer retries this refresher's requests elsewhere."""
        sock, self._sock = getattr(self, "_sock", None), None
        if sock is not None:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._selector.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# The asyncio half (poscache/refresher_async.py), imported last: it builds on the above.
from .refresher_async import AsyncRefresher, Served, serves  # noqa: E402
