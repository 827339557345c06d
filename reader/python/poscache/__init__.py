"""poscache: read positions from a shared-memory segment, feed its writer.

The code is the extension module poscache._poscache (reader/python/*.cpp); this package
re-exports it, and its stubs (__init__.pyi, with py.typed) give type checkers the API.

The refresher client (poscache.refresher: Refresher, AsyncRefresher, FetchRequest, serves;
docs/read-through.md) is pure Python, imported on first use: a process that only reads does not
import asyncio for it. So is poscache.aio, what the Reader's *_async methods run (imported by
their first call). `__all__` stays the extension module's names, which
tests/python/test_package.py holds the stubs to."""
from ._poscache import (
    Error,
    FetchResult,
    Full,
    NoRedis,
    Position,
    Producer,
    Reader,
    Retired,
    WriterBusy,
    WriterDead,
    __version__,
)

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

# poscache.Refresher and the others: from poscache.refresher, on first use (PEP 562).
_REFRESHER = ("AsyncRefresher", "FetchRequest", "Refresher", "serves")


def __getattr__(name: str) -> object:
    if name in _REFRESHER:
        from . import refresher

        value = getattr(refresher, name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module 'poscache' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_REFRESHER))
