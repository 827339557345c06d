# The types of `import poscache`, written from the binding (reader/python/poscache_module.cpp,
# reader/python/producer_binding.cpp, reader/python/position_type.cpp) and held to it by
# tests/python/test_package.py: every name, class, method, argument and default is the module's.
from collections.abc import Coroutine, Sequence
from decimal import Decimal
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, final, type_check_only

# The asyncio forms' iterator (poscache/aio.py, pure Python with its types inline).
from .aio import ChangeStream

# The refresher client, pure Python with its types inline (poscache/refresher.py): re-exported
# (imported on first use), outside __all__, which names the extension module's API.
from .refresher import AsyncRefresher as AsyncRefresher
from .refresher import FetchRequest as FetchRequest
from .refresher import Refresher as Refresher
from .refresher import serves as serves

__version__: str
__all__ = [
    "Error",
    "FetchResult",
    "Full",
    "NoRedis",
    "Position",
    "Producer",
    "Reader",
    "Retired",
    "WriterBusy",
    "WriterDead",
    "__version__",
]

# The dicts that stats() and changes() return are typed below (TypedDicts for type checkers
# only: at run time they are plain dicts).

# A value as read: Decimal for a decimal field (exact, from its text), int for int64 and
# timestamp fields, str for text.
_Read = Decimal | int | str
# A value given: Decimal, str or int, crossing as its exact text. A float is refused (TypeError):
# binary floating point cannot carry a decimal exactly.
_Number = Decimal | str | int

class Error(RuntimeError):
    """No segment, no writer, a closed producer: the message names the cause."""

class WriterBusy(Error):
    """The slot stayed mid-write past the retry bound."""

class WriterDead(Error):
    """The slot is mid-write and the writer's heartbeat stopped."""

class Retired(Error):
    """The writer re-created the segment: call Reader.follow()."""

class Full(Error):
    """The producer's ring is full."""

class NoRedis(Error):
    """The writer does not mirror to Redis."""

@final
class Position:
    """A position as read: a copy, exact values. Made by a Reader only."""

    @property
    def ns(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def instrument(self) -> str: ...
    @property
    def status(self) -> Literal["ok", "stale"]: ...
    @property
    def stale(self) -> bool: ...
    @property
    def version(self) -> int: ...
    @property
    def source_seq(self) -> int: ...
    @property
    def created_at_ns(self) -> int: ...
    @property
    def updated_at_ns(self) -> int: ...
    @property
    def age_ns(self) -> int: ...
    @property
    def age(self) -> float:
        """Seconds since the last change."""
    @property
    def fields(self) -> dict[str, _Read]:
        """Every field the position holds (built on first use, then kept)."""
    def __getitem__(self, field: str) -> _Read:
        """That field alone; KeyError if the position holds no value for it."""
    def __contains__(self, field: str) -> bool: ...

@type_check_only
class ReaderStats(TypedDict):
    segment: str
    generation: int
    state: str  # initializing | ready | closed | retired
    capacity: int
    change_seq: int
    live: int
    inserts: int
    updates: int
    evictions: int
    expirations: int
    erases: int
    invalidations: int
    rejects: int
    index_rebuilds: int
    repairs: int
    tombstones: int
    namespace_live: dict[str, int]
    counting: bool
    not_counting_because: NotRequired[str]  # only when counting is False
    writer_pid: int
    writer_alive: bool
    heartbeat_age_ns: int

@type_check_only
class Change(TypedDict):
    position: int
    kind: Literal[
        "inserted",
        "updated",
        "erased",
        "evicted",
        "expired",
        "invalidated_account",
        "invalidated_namespace",
        "invalidated_glob",
        "invalidated_all",
    ]
    namespace: str | None  # None: a pattern over every namespace
    account: NotRequired[str]
    instrument: NotRequired[str]
    pattern: NotRequired[str]
    version: int
    at_ns: int

_ChangesStatus = Literal[
    "ok", "lapped", "writer_restarted", "invalid_position", "unavailable", "retired"
]

# --- read-through (docs/read-through.md) ----------------------------------------------------------

_FetchReason = Literal[
    "cached",  # the copy was fresh: nothing asked (get()'s cost)
    "fetched",  # asked, and a fresh copy (the answer, or a producer's write) came within the timeout
    "absent",  # the source has no such position (answered now, or remembered for negative_ttl)
    "timeout",  # no answer within the timeout: the stale copy, or None
    "failed",  # every try erred or timed out, or a producer's write superseded the answer
    "no_refresher",  # no refresher serves the namespace: the copy as it is
    "unavailable",  # this Reader has no request channel (refresh_unavailable_because), ring full
]
# Why a key is asked for (request()'s reason; pending()'s reason also "rebuild").
_AskReason = Literal["forced", "stale", "miss", "ahead"]
_RequestStatus = Literal[
    "asked",  # in this Reader's request ring: the writer will take it
    "pending",  # not asked again: a request for the key is in flight
    "remembered",  # not asked: answered "absent" less than negative_ttl ago
    "full",  # this Reader's ring was full: not asked (counted)
    "no_refresher",  # no refresher serves the namespace
    "unavailable",  # this Reader has no request channel
]
_PendingState = Literal[
    "none", "pending", "answered", "absent", "erased", "failed", "superseded", "no_refresher"
]

@final
class FetchResult(NamedTuple):
    """Reader.get_or_fetch()'s answer, a tuple with names: `position, reason = r.get_or_fetch(...)`.
    (At run time a struct sequence, as os.stat_result.)"""

    position: Position | None
    """The copy as of the return: fresh, stale (no answer in time: check .stale), or None."""
    reason: _FetchReason

@type_check_only
class PendingInfo(TypedDict):
    state: _PendingState
    reason: Literal["stale", "miss", "forced", "rebuild", "ahead"]
    since_ns: int  # CLOCK_REALTIME: asked (pending) or decided (the others); 0 for none

@type_check_only
class RefreshRequests(TypedDict):
    stale: int
    miss: int
    forced: int
    rebuild: int
    ahead: int

@type_check_only
class RefreshOutcomes(TypedDict):
    pending: int
    answered: int
    absent: int
    erased: int
    failed: int
    superseded: int
    no_refresher: int

@type_check_only
class RefreshStats(TypedDict):
    requests: RefreshRequests  # as they reached the writer, by reason
    deduplicated: int  # requests for a key already in flight (or just answered)
    in_flight: int
    outcomes: RefreshOutcomes  # by what became of them
    errors: int
    timeouts: int
    refused: int
    bad_requests: int
    refreshers: int  # registered now
    ring_full: int  # readers' asks that found their ring full
    rebuilds_running: int
    rebuild_positions: int

class Reader:
    """Maps a segment read-only; reads never block the writer."""

    def __init__(self, segment: str, writer_silent_after: float | None = None) -> None:
        """Raises Error naming the cause (no segment, no permission, a layout mismatch).
        writer_silent_after: seconds the writer may be silent before a read stuck mid-write
        asks whether it lives (WriterDead only if it is gone); None: the environment's
        POSCACHE_READER_SILENT_AFTER_MS, else ten heartbeats and at least 0.1."""
    def get(self, ns: str, account: str, instrument: str) -> Position | None:
        """The Position, or None if there is none. Raises WriterBusy, WriterDead, Retired;
        ValueError for a namespace the segment lacks or a bad key (a part empty, too long, or
        with a character no key has, such as ':' or NUL: the message names the part)."""
    def get_many(self, keys: Sequence[tuple[str, str, str]]) -> list[Position | None]:
        """A Position or None per (ns, account, instrument) key, in order."""
    def positions_of(self, account: str) -> list[Position]:
        """The account's positions (snapshot(), or a scan if it stays busy); Retired if the
        writer re-created the segment."""
    def snapshot(self, account: str) -> list[Position]:
        """Every position of the account as of one moment; [] if it has none."""
    def scan(
        self,
        namespace: str | None = None,
        account: str | None = None,
        glob: str | None = None,
    ) -> list[Position]:
        """Every position matching (a walk of the whole table: for tools, not per order).
        Retired if the writer re-created the segment (its slots are the old generation's)."""
    def stats(self) -> ReaderStats: ...
    def namespaces(self) -> list[str]: ...
    def change_sequence(self) -> int: ...
    def wait_for_change(self, seen: int, timeout: float) -> bool:
        """Blocks (without the GIL) until the change sequence moves past `seen`; False on
        timeout. timeout: seconds >= 0, or inf to wait without end; NaN or a negative number
        raise ValueError. Signals are handled every 50 ms: Ctrl-C interrupts the wait."""
    def change_position(self) -> int:
        """The change ring's head: where a new follower starts."""
    def changes(
        self, from_: int, max: int = 4096
    ) -> tuple[_ChangesStatus, int, list[Change]]:
        """(status, next, changes) from ring position `from_`."""
    def wait_for_changes(self, from_: int, timeout: float) -> bool:
        """Blocks (without the GIL) until the change ring moves past `from_`; False on
        timeout. timeout as wait_for_change()'s."""
    def follow(self) -> bool:
        """Maps the segment the writer re-created; False if none is there."""
    def close(self) -> None:
        """Unmaps the segment now; any later use raises ValueError (closing twice is harmless).
        A wait in another thread ends with that error within 50 ms."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    def __enter__(self) -> Reader:
        """`with poscache.Reader(segment) as r:` closes it when the block ends."""
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> bool: ...
    # --- read-through: asking the writer's refreshers for what the segment lacks ---------------
    def get_or_fetch(
        self, ns: str, account: str, instrument: str, timeout: float = 1.0, force: bool = False
    ) -> FetchResult:
        """A fresh copy at get()'s cost (reason "cached"); otherwise asks the refreshers (one
        request per key in flight, whoever asks) and waits, without the GIL, until the answer or
        `timeout` seconds: then the copy as it is (stale, or None) and why. `force`: fetch even a
        fresh copy and wait for the answer. Raises as get() does; ValueError for a negative
        timeout."""
    def request(
        self, ns: str, account: str, instrument: str, reason: _AskReason = "forced"
    ) -> _RequestStatus:
        """Asks for a refresh of the key without waiting (no system call), as get() asks by the
        namespace's policy; "forced" asks even for a fresh copy or one answered absent lately.
        ValueError for a bad key or reason."""
    def pending(self, ns: str, account: str, instrument: str) -> PendingInfo:
        """What the writer published about the key's last request."""
    def refresh_stats(self) -> RefreshStats | None:
        """The writer's read-through counters; None without a request channel."""
    @property
    def refresh_available(self) -> bool:
        """Whether this Reader takes part in read-through (the writer served it when the Reader
        opened, and a request ring was free); get_or_fetch() answers "unavailable" if not."""
    @property
    def refresh_unavailable_because(self) -> str:
        """Why it does not ("" when it does)."""
    # --- the asyncio forms (poscache/aio.py): each wait runs in the event loop's default
    # executor, never blocking the loop --------------------------------------------------------
    def get_or_fetch_async(
        self, ns: str, account: str, instrument: str, timeout: float = 1.0, force: bool = False
    ) -> Coroutine[Any, Any, FetchResult]:
        """get_or_fetch() to await: a fresh copy at once, else the wait in the executor."""
    def wait_for_change_async(self, seen: int, timeout: float) -> Coroutine[Any, Any, bool]:
        """wait_for_change() to await."""
    def wait_for_changes_async(self, from_: int, timeout: float) -> Coroutine[Any, Any, bool]:
        """wait_for_changes() to await."""
    def changes_async(self, from_position: int | None = None, max: int = 4096) -> ChangeStream:
        """`async for change in r.changes_async():` every change from `from_position` (None: the
        ring's head now), as changes() gives them, for ever. Raises poscache.aio.ResyncNeeded
        when it falls behind (lapped, writer_restarted, invalid_position: read the state again,
        then follow from its `next`), Error without a change ring, Retired."""

@type_check_only
class ProducerStats(TypedDict):
    pushed: int
    applied: int
    synced: int
    rejected: int
    full: int
    attached: bool
    redis: bool
    reconnects: int
    last_error: str
    dropped: bool

_Outcome = Literal["pending", "applied", "duplicate", "stale", "not_found", "rejected", "unknown"]

class Producer:
    """A ring of this process's, attached to the writer. Every push returns its sequence; with
    timeout None (or 0) a full ring raises Full at once, otherwise the push waits that many
    seconds for room. Bad input raises ValueError naming the field."""

    def __init__(self, segment: str, name: str, capacity: int = 4096) -> None: ...
    def upsert(
        self,
        ns: str,
        account: str,
        instrument: str,
        fields: dict[str, _Number],
        seq: int = 0,
        replace: bool = False,
        timeout: float | None = None,
    ) -> int: ...
    def fill(
        self,
        ns: str,
        account: str,
        instrument: str,
        side: Literal["buy", "sell"],
        qty: _Number,
        price: _Number,
        fee: _Number = "0",
        trade_id: str | None = None,
        timeout: float | None = None,
    ) -> int: ...
    def mark(
        self,
        ns: str,
        instrument: str,
        price: _Number,
        account: str | None = None,
        timeout: float | None = None,
    ) -> int: ...
    def add(
        self,
        ns: str,
        account: str,
        instrument: str,
        field: str,
        by: int,
        timeout: float | None = None,
    ) -> int: ...
    def reset(
        self, ns: str, account: str, instrument: str, field: str, timeout: float | None = None
    ) -> int: ...
    def erase(
        self, ns: str, account: str, instrument: str, timeout: float | None = None
    ) -> int: ...
    def invalidate(
        self,
        account: str | None = None,
        ns: str | None = None,
        glob: str | None = None,
        all: bool = False,
        timeout: float | None = None,
    ) -> int:
        """One of: account (with ns or not), ns, glob, all=True."""
    def wait_applied(self, seq: int, timeout: float) -> bool:
        """True once readers see message `seq`, False on timeout; Error if the ring was dropped."""
    def batch(self, commands: Sequence[dict[str, Any]], timeout: float | None = None) -> int:
        """Commands as dicts ({"op": "fill", "ns": ..., ...}: upsert, fill, mark, add, reset,
        erase), applied all or nothing. outcome(seq) is the batch's, outcome(seq + 1 + i)
        command i's."""
    def outcome(self, seq: int) -> _Outcome: ...
    def refusal(self, seq: int) -> str | None:
        """Why the writer rejected message `seq`; None if it did not."""
    def wait_synced(self, seq: int, timeout: float) -> bool:
        """True once message `seq` is in Redis; NoRedis if the writer does not mirror."""
    def stats(self) -> ProducerStats: ...
    def close(self) -> None: ...
