"""The Reader's waits for asyncio: what Reader.get_or_fetch_async(), wait_for_change_async(),
wait_for_changes_async() and changes_async() run (docs/read-through.md).

    r = poscache.Reader("positions")
    position, reason = await r.get_or_fetch_async("alpaca", "A1", "AAPL", timeout=0.25)
    async for change in r.changes_async():        # from the change ring's head, for ever
        await client.send(change)

The Reader's waits are futex waits in the kernel: they cannot be awaited, so each runs in a
thread of the event loop's default executor (loop.run_in_executor(None, ...)), without the GIL,
and the loop carries on meanwhile. A thread is held for the length of one wait: get_or_fetch's
whole `timeout`, the change waits at most _SLICE seconds at a time (so that a cancelled waiter
or a closing loop frees its thread within that). A service with many concurrent waiters sizes
the default executor for them (loop.set_default_executor(ThreadPoolExecutor(n))). What needs no
wait needs no thread: a fresh copy is read in the loop's own thread, and a change already there
is returned at once.

Falling behind the change ring: a ChangeStream that cannot follow yields what it read, then
raises ResyncNeeded (status "lapped": the writer overwrote changes before they were read;
"writer_restarted": a writer replaced one that died, changes may be missing;
"invalid_position": the position is past the ring's head). Its `next` is where to start again
once the state has been read again: the changes() contract. A writer that keeps no change ring
raises Error; a re-created segment raises Retired (call Reader.follow(), then read again)."""
from __future__ import annotations

import asyncio
import collections
import functools
from typing import TYPE_CHECKING, Any

from ._poscache import Error, FetchResult, Reader, Retired

if TYPE_CHECKING:
    from . import Change

__all__ = [
    "ChangeStream",
    "ResyncNeeded",
    "get_or_fetch",
    "wait_for_change",
    "wait_for_changes",
]

_SLICE = 0.25
"""The longest one executor wait of the change waits lasts, in seconds."""


class ResyncNeeded(Error):
    """A ChangeStream could not follow the change ring: `status` is "lapped", "writer_restarted"
    or "invalid_position". What it yielded before was valid; read the state again, then follow
    from `next` (Reader.changes_async(from_position=e.next))."""

    def __init__(self, status: str, next: int) -> None:
        super().__init__(f"the change ring cannot be followed from here ({status}): read the "
                         f"state again, then follow from position {next}")
        self.status = status
        self.next = next


async def get_or_fetch(reader: Reader, ns: str, account: str, instrument: str,
                       timeout: float = 1.0, force: bool = False) -> FetchResult:
    """Reader.get_or_fetch() as a coroutine: a fresh copy is read at once, in the loop's thread
    (reason "cached"); otherwise the ask and the wait run in the loop's executor. Cancelling it
    leaves that thread waiting out the timeout (the request stays asked)."""
    if not force:
        p = reader.get(ns, account, instrument)  # asks by the namespace's policy, as get() does
        if p is not None and not p.stale:
            return FetchResult((p, "cached"))
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, functools.partial(reader.get_or_fetch, ns, account, instrument, timeout, force))


async def _sliced(moved: Any, wait: Any, timeout: float) -> bool:
    """True as soon as moved() is, False after `timeout` seconds: waits of at most _SLICE in the
    executor."""
    if moved():
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, timeout)
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return False
        if await loop.run_in_executor(None, wait, min(left, _SLICE)):
            return True


async def wait_for_change(reader: Reader, seen: int, timeout: float) -> bool:
    """Reader.wait_for_change() as a coroutine: True once the change sequence differs from
    `seen`, False after `timeout` seconds."""
    return await _sliced(lambda: reader.change_sequence() != seen,
                         functools.partial(reader.wait_for_change, seen), timeout)


async def wait_for_changes(reader: Reader, from_: int, timeout: float) -> bool:
    """Reader.wait_for_changes() as a coroutine: True once the change ring's head moved from
    `from_`, False after `timeout` seconds."""
    return await _sliced(lambda: reader.change_position() != from_,
                         functools.partial(reader.wait_for_changes, from_), timeout)


class ChangeStream:
    """An async iterator over the change ring: each change as Reader.changes() gives it (a dict:
    position, kind, namespace, account, instrument, pattern, version, at_ns), in order, for ever
    (stop with break). It reads up to `max` at a time and waits for more in the executor.

    `from_position` None starts at the ring's head when the stream is made (not when it is first
    iterated): a change made after this call is yielded. `position` is where the next change
    not yet yielded is: a stream made from it later goes on from there. Raises ResyncNeeded,
    Error or Retired as the module says; then the stream is over."""

    def __init__(self, reader: Reader, from_position: int | None = None, max: int = 4096) -> None:
        if max < 1:
            raise ValueError("max must be at least 1")
        self.reader = reader
        self._next = reader.change_position() if from_position is None else from_position
        self._max = max
        self._batch: collections.deque[Change] = collections.deque()
        self._raise: BaseException | None = None
        self._over = False

    @property
    def position(self) -> int:
        """Where the next change not yet yielded is in the ring."""
        return self._batch[0]["position"] if self._batch else self._next

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> Change:
        while True:
            if self._batch:
                return self._batch.popleft()
            if self._raise is not None:
                error, self._raise = self._raise, None
                self._over = True
                raise error
            if self._over:
                raise StopAsyncIteration
            status, nxt, batch = self.reader.changes(self._next, self._max)
            self._batch.extend(batch)
            self._next = nxt
            if status == "ok":
                if not batch:
                    await wait_for_changes(self.reader, self._next, _SLICE)
            elif status in ("lapped", "writer_restarted", "invalid_position"):
                self._raise = ResyncNeeded(status, nxt)
            elif status == "retired":
                self._raise = Retired("the segment was re-created by its writer: call "
                                      "Reader.follow(), read the state again, then follow")
            else:  # unavailable
                self._raise = Error("the writer keeps no change ring (changes() answers "
                                    f"'{status}')")

    def __repr__(self) -> str:
        return f"<poscache.aio.ChangeStream at position {self.position}>"
