"""poscache.refresher for asyncio: AsyncRefresher, and the serves() decorator (which uses it
for an `async def` fetch function). Imported by poscache.refresher, which re-exports both: use
them from there."""
from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar

from ._poscache import Error
from .refresher import (
    Answer,
    FetchRequest,
    Fields,
    PositionItem,
    Refresher,
    _error_line,
    _failure_text,
    _flag_line,
    _log,
    _positions_lines,
    _Protocol,
    _result_lines,
    _upsert_line,
)

__all__ = ["AsyncRefresher", "Served", "serves"]


class AsyncRefresher(_Protocol):
    """Refresher for asyncio: the same answers as coroutines, and serve() running `async def
    fetch(req)` in a task per request, at most `concurrency` at once (more wait for a slot; the
    writer's own max_in_flight bounds what it sends).

        async with AsyncRefresher("positions", ["alpaca"], name="alpaca-api") as r:
            await r.serve(fetch)

    connect() (or `async with`) connects and registers; serve() connects if need be."""

    def __init__(self, segment: str = "poscache", namespaces: Iterable[str] = (), name: str = "",
                 socket: str | None = None, connect_timeout: float = 2.0,
                 concurrency: int = 64) -> None:
        super().__init__(segment, namespaces, name, socket, connect_timeout)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._send_lock: asyncio.Lock | None = None

    async def connect(self) -> None:
        """Connects (retrying until connect_timeout while the writer starts) and registers;
        raises poscache.Error naming what failed. Nothing if connected already."""
        if self._writer is not None:
            return
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                # A fetch line holds every request sent at once: no 64 KiB line limit here.
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self.path, limit=1 << 24)
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise Error(f"refresher: cannot connect to the writer's socket {self.path}: "
                                f"{e.strerror or e}") from None
                await asyncio.sleep(0.02)
        self._send_lock = asyncio.Lock()
        try:
            await self._send(self._registration())
            async with asyncio.timeout(self.connect_timeout):
                while self._registered is None:
                    self._take(await self._readline())
        except TimeoutError:
            await self.close()
            raise Error(f"refresher: the writer did not answer the registration on {self.path} "
                        f"within {self.connect_timeout} s") from None
        except BaseException:
            await self.close()
            raise

    async def _readline(self) -> bytes:
        if self._reader is None:
            raise Error("refresher: not connected (connect(), or async with)")
        try:
            line = await self._reader.readline()
        except OSError as e:
            raise Error(f"refresher: the writer has gone (recv: {e.strerror or e})") from None
        if not line:
            raise Error("refresher: the writer closed the connection")
        return line

    async def next(self, timeout: float | None = 1.0) -> list[FetchRequest]:
        """The next requests, waiting up to `timeout` seconds (None: until some come); [] on
        timeout. Raises Error when the writer has gone."""
        try:
            async with asyncio.timeout(timeout):
                while not self._requests:
                    self._take(await self._readline())
        except TimeoutError:
            pass
        return self._pop()

    async def _send(self, *lines: bytes) -> None:
        if self._writer is None or self._send_lock is None:
            raise Error("refresher: not connected (connect(), or async with)")
        async with self._send_lock:
            try:
                for line in lines:
                    self._writer.write(line)
                await self._writer.drain()
            except OSError as e:
                raise Error(f"refresher: the writer has gone (send: {e.strerror or e})") from None

    async def upsert(self, req: FetchRequest, fields: Fields,
                     mode: Literal["merge", "replace"] | None = None,
                     seq: int | None = None) -> None:
        """As Refresher.upsert()."""
        await self._send(_upsert_line(req, fields, mode, seq))

    async def absent(self, req: FetchRequest) -> None:
        """As Refresher.absent()."""
        await self._send(_flag_line(req, "absent"))

    async def erase(self, req: FetchRequest) -> None:
        """As Refresher.erase()."""
        await self._send(_flag_line(req, "erase"))

    async def error(self, req: FetchRequest, why: str) -> None:
        """As Refresher.error()."""
        await self._send(_error_line(req, why))

    async def positions(self, req: FetchRequest, positions: Iterable[PositionItem],
                        more: bool = False) -> None:
        """As Refresher.positions()."""
        await self._send(*_positions_lines(req, positions, more))

    async def answer(self, req: FetchRequest, result: Answer) -> None:
        """As Refresher.answer()."""
        await self._send(*_result_lines(req, result))

    async def _handle(self, req: FetchRequest,
                      fetch: Callable[[FetchRequest], Awaitable[Answer]],
                      slots: asyncio.Semaphore) -> None:
        try:
            try:
                lines = _result_lines(req, await fetch(req))
            except Exception as e:
                _log.debug("request %d (%s): fetch failed", req.id, req, exc_info=True)
                lines = [_error_line(req, _failure_text(e))]
            await self._send(*lines)
        except Error:
            pass  # the writer has gone: serve()'s reading says so
        finally:
            slots.release()

    async def serve(self, fetch: Callable[[FetchRequest], Awaitable[Answer]],
                    stop_event: asyncio.Event | threading.Event | None = None) -> None:
        """Answers requests with `await fetch(req)`, a task each, until `stop_event` is set
        (an asyncio.Event, or a threading.Event of another thread) or the writer goes (Error).
        Results map as in Refresher.serve(). Once stopped, the fetches under way finish and
        their answers are sent; cancelled, they are cancelled (the writer retries them)."""
        await self.connect()
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        stopped = asyncio.ensure_future(_wait_event(stop_event))
        reading: asyncio.Task[bytes] | None = None
        try:
            while True:
                for req in self._pop():
                    await slots.acquire()
                    task = asyncio.create_task(self._handle(req, fetch, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if stopped.done():
                    break
                if reading is None:
                    reading = asyncio.ensure_future(self._readline())
                await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if reading.done():
                    line, reading = reading.result(), None
                    self._take(line)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for t in (stopped, reading, *tasks):
                if t is not None and not t.done():
                    t.cancel()

    async def close(self) -> None:
        """Closes the connection: the writer retries this refresher's requests elsewhere."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def _wait_event(event: asyncio.Event | threading.Event | None) -> None:
    if event is None:
        await asyncio.Future()  # never
    elif isinstance(event, asyncio.Event):
        await event.wait()
    else:
        while not event.is_set():
            await asyncio.sleep(0.05)


# --- the decorator ------------------------------------------------------------------------------

P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


class Served(Protocol[P, R_co]):
    """A fetch function served by serves(): callable as it was, plus run() and start()."""

    namespace: str
    segment: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def run(self, stop_event: threading.Event | None = None, reconnect: bool = True) -> None:
        """Serves requests in this thread until `stop_event` is set."""

    def start(self, stop_event: threading.Event | None = None) -> threading.Thread:
        """Registers, then serves in a daemon thread, which it returns."""


def serves(namespace: str, segment: str = "poscache", name: str | None = None, *,
           socket: str | None = None, concurrency: int = 64,
           ) -> Callable[[Callable[P, R_co]], Served[P, R_co]]:
    """Makes `fetch(account, instrument)` the refresher of `namespace`, keyed by (namespace,
    account, instrument):

        @serves("alpaca", segment="positions")
        def position(account: str, instrument: str) -> dict[str, str] | None:
            p = broker.get_position(account, instrument)
            return None if p is None else {"qty": p.qty, "avg_price": p.avg_entry_price}

        position.start()          # a daemon thread; or position.run() to serve in this one

    The function returns what Refresher.serve()'s fetch returns (fields, None, or a list of
    the account's positions) and may raise (an error answer: the writer retries). An `async def`
    function is served by an AsyncRefresher, `concurrency` fetches at once; a plain one, one at
    a time. It stays callable as it was (it is returned itself, with run() and start() added).
    A rebuild (the whole namespace) is answered with an error: a key's function cannot give it.

    run(stop_event=None, reconnect=True) serves until `stop_event` is set; when the writer goes
    (a restart), it connects again every second (reconnect=False: raises Error). The first
    connection's failure raises at once. start(stop_event=None) registers first (raising
    Error in the caller if it cannot), then serves in a daemon thread and returns it."""
    label = name

    def decorate(fn: Callable[P, R_co]) -> Served[P, R_co]:
        refresher_name = label or getattr(fn, "__qualname__", "") or "refresher"
        is_async = inspect.iscoroutinefunction(fn)
        call: Callable[..., Any] = fn

        def no_rebuild(req: FetchRequest) -> NoReturn:
            raise LookupError(f"refresher '{refresher_name}' serves keys, not a rebuild of "
                              f"namespace '{req.ns}'")

        def fetch_sync(req: FetchRequest) -> Answer:
            if req.rebuild:
                no_rebuild(req)
            return call(req.account, req.instrument)

        async def fetch_async(req: FetchRequest) -> Answer:
            if req.rebuild:
                no_rebuild(req)
            return await call(req.account, req.instrument)

        def serve_once(stop: threading.Event | None, ready: Callable[[], None]) -> None:
            if not is_async:
                with Refresher(segment, [namespace], refresher_name, socket) as r:
                    ready()
                    r.serve(fetch_sync, stop)
                return

            async def main() -> None:
                async with AsyncRefresher(segment, [namespace], refresher_name, socket,
                                          concurrency=concurrency) as r:
                    ready()
                    await r.serve(fetch_async, stop)

            asyncio.run(main())

        def run_until(stop: threading.Event | None, reconnect: bool,
                      ready: Callable[[], None]) -> None:
            first = True

            def registered() -> None:
                nonlocal first
                if first:
                    first = False
                    ready()
                else:
                    _log.info("refresher '%s': registered again with the writer of %r",
                              refresher_name, segment)

            while stop is None or not stop.is_set():
                try:
                    serve_once(stop, registered)
                    break
                except Error as e:
                    if first or not reconnect:
                        raise
                    _log.warning("%s (refresher '%s' of segment %r); connecting again in 1 s",
                                 e, refresher_name, segment)
                    if stop is not None:
                        stop.wait(1.0)
                    else:
                        time.sleep(1.0)
            if first:  # stopped before it ever registered: start() must not wait for it
                first = False
                ready()

        def run(stop_event: threading.Event | None = None, reconnect: bool = True) -> None:
            run_until(stop_event, reconnect, lambda: None)

        def start(stop_event: threading.Event | None = None) -> threading.Thread:
            up = threading.Event()
            failure: list[BaseException] = []

            def body() -> None:
                try:
                    run_until(stop_event, True, up.set)
                except BaseException as e:
                    if not up.is_set():
                        failure.append(e)
                        up.set()
                        return
                    raise

            thread = threading.Thread(target=body, name=f"poscache-refresher-{refresher_name}",
                                      daemon=True)
            thread.start()
            up.wait()
            if failure:
                thread.join()
                raise failure[0]
            return thread

        served: Any = fn
        served.run = run
        served.start = start
        served.namespace = namespace
        served.segment = segment
        return served

    return decorate
