# The types of `import poscache`, written from the binding (reader/python/poscache_module.cpp,
# reader/python/producer_binding.cpp, reader/python/position_type.cpp) and held to it by
# tests/python/test_package.py: every name, class, method, argument and default is the module's.
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal, NotRequired, TypedDict, final, type_check_only

# The refresher client, pure Python with its types inline (poscache/refresher.py): re-exported
# (imported on first use), outside __all__, which names the extension module's API.
from .refresher import AsyncRefresher as AsyncRefresher
from .refresher import FetchRequest as FetchRequest
from .refresher import Refresher as Refresher
from .refresher import serves as serves

__version__: str
__all__ = [
    "Error",
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

class Reader:
    """Maps a segment read-only; reads never block the writer."""

    def __init__(self, segment: str) -> None:
        """Raises Error naming the cause (no segment, no permission, a layout mismatch)."""
    def get(self, ns: str, account: str, instrument: str) -> Position | None:
        """The Position, or None if there is none. Raises WriterBusy, WriterDead, Retired;
        ValueError for a namespace the segment lacks or a bad key."""
    def get_many(self, keys: Sequence[tuple[str, str, str]]) -> list[Position | None]:
        """A Position or None per (ns, account, instrument) key, in order."""
    def positions_of(self, account: str) -> list[Position]: ...
    def snapshot(self, account: str) -> list[Position]:
        """Every position of the account as of one moment; [] if it has none."""
    def scan(
        self,
        namespace: str | None = None,
        account: str | None = None,
        glob: str | None = None,
    ) -> list[Position]:
        """Every position matching (a walk of the whole table: for tools, not per order)."""
    def stats(self) -> ReaderStats: ...
    def namespaces(self) -> list[str]: ...
    def change_sequence(self) -> int: ...
    def wait_for_change(self, seen: int, timeout: float) -> bool:
        """Blocks (without the GIL) until the change sequence moves past `seen`; False on
        timeout."""
    def change_position(self) -> int:
        """The change ring's head: where a new follower starts."""
    def changes(
        self, from_: int, max: int = 4096
    ) -> tuple[_ChangesStatus, int, list[Change]]:
        """(status, next, changes) from ring position `from_`."""
    def wait_for_changes(self, from_: int, timeout: float) -> bool:
        """Blocks (without the GIL) until the change ring moves past `from_`; False on
        timeout."""
    def follow(self) -> bool:
        """Maps the segment the writer re-created; False if none is there."""

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
