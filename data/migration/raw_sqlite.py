"""The one place that opens a plain SQLite connection outside SQLAlchemy.

Classification, backups, restores, the legacy check and the journal-mode switch all read or
copy the file through these functions, so every one of them opens it the same way (and an
encrypted file, later, with its key). A plain connection sets nothing: no PRAGMA, and
``isolation_level=None`` so the driver sends no BEGIN of its own.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path

# What callers catch from the driver: every error a plain connection can raise.
DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
# The same with the errors of the file system, for code that also opens, copies or renames.
IO_ERRORS: tuple[type[Exception], ...] = (OSError, *DRIVER_ERRORS)
# The driver's "this file is not a database / is damaged" family, within DRIVER_ERRORS.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.DatabaseError,)

Connection = sqlite3.Connection

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100
# Byte 18 of the header: 2 when the file is in WAL mode.
_WRITE_VERSION_OFFSET = 18
_WAL_FORMAT = 2


def connect(path: Path | str, *, timeout: float = 30.0, read_only: bool = False) -> Connection:
    """A plain connection to ``path``; read-only ones never create or change the file.

    A read-write open lets SQLite recover a hot journal left by a crash; nothing else is
    written until the caller writes. ``timeout`` is how long a statement waits for a lock.
    """
    if read_only:
        uri = Path(path).absolute().as_uri() + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


def backup(source: Connection, target: Connection) -> None:
    """Copy ``source`` into ``target`` page by page, consistently (SQLite's online backup API)."""
    source.backup(target)


def is_busy(exc: BaseException) -> bool:
    """The driver gave up waiting for another connection's lock."""
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# Opening a FIFO for reading blocks until a writer comes: never wait on one.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def read_header(path: Path | str, size: int = HEADER_SIZE) -> bytes:
    """The first ``size`` bytes of a regular file, read without SQLite (raises OSError).

    Opened without blocking and refused unless it is a regular file (a FIFO, a socket or a
    device is not a database, and reading one can wait forever).
    """
    descriptor = os.open(path, _OPEN_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.read(descriptor, size)
    finally:
        os.close(descriptor)


def is_access_denied(exc: BaseException) -> bool:
    """The driver could not open or write the file for lack of permission (not damage)."""
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, sqlite3.Error) and name.startswith(
        ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")
    )


def is_wal_header(header: bytes) -> bool:
    """A SQLite header of a file in WAL mode."""
    return (
        len(header) > _WRITE_VERSION_OFFSET
        and header[:16] == SQLITE_MAGIC
        and header[_WRITE_VERSION_OFFSET] == _WAL_FORMAT
    )
