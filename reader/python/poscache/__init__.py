"""poscache: read positions from a shared-memory segment, feed its writer.

The code is the extension module poscache._poscache (reader/python/*.cpp); this package
re-exports it, and its stubs (__init__.pyi, with py.typed) give type checkers the API."""
from ._poscache import (
    Error,
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
