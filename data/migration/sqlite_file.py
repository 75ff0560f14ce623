"""Look at a SQLite file without changing it: header, integrity, tables, Alembic version."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from data.db.errors import (
    ADVICE_RESTORE,
    ADVICE_RETRY,
    UNCHANGED,
    DatabaseBusyError,
    DatabaseCorruptError,
    DatabaseNotWritableError,
    NotADatabaseError,
)
from data.db.policy import busy_timeout_seconds
from data.migration import raw_sqlite
from data.migration.raw_sqlite import HEADER_SIZE, SQLITE_MAGIC
from data.migration.state import VERSION_TABLE, FileState

__all__ = ["VERSION_TABLE", "FileState", "check_location", "inspect_sqlite_file"]


def check_location(path: Path) -> None:
    """Refuse a path that can never hold the database: a folder, or one we cannot write."""
    display = str(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise DatabaseNotWritableError(
            display,
            f"it cannot be reached ({exc.strerror})",
            "Check that this user may open the folder, or set DB_PATH to a file elsewhere.",
        ) from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise NotADatabaseError(
            display,
            "the path is a folder, not a database file",
            "Set DB_PATH to a file path such as .../inklink.db. " + UNCHANGED,
        )
    if mode is not None and not stat.S_ISREG(mode):
        raise NotADatabaseError(display, "the path is not a regular file", UNCHANGED)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseNotWritableError(
            display,
            f"its folder {parent} cannot be created ({exc.strerror})",
            "Choose a folder this user can write, through DB_PATH.",
        ) from exc
    # The lock, the journal and the backups all live beside the file.
    if not os.access(parent, os.W_OK | os.X_OK) or (
        mode is not None and not os.access(path, os.W_OK)
    ):
        raise DatabaseNotWritableError(
            display,
            f"this user ({_user()}) cannot write it or its folder {parent}",
            "Give this user write access to the folder, or set DB_PATH to a folder it can write. "
            + UNCHANGED,
        )


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):  # pragma: no cover - Windows
        return os.environ.get("USERNAME", "unknown")


def inspect_sqlite_file(path: Path, *, quick_check: bool = True) -> FileState:
    """Classify ``path`` through a plain connection that sets nothing, writing nothing.

    Opening read-write lets SQLite roll back a hot journal left by a crash; nothing else is
    written. Raises NotADatabaseError or DatabaseCorruptError for a file that must not be touched.
    """
    display = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return FileState(exists=False, size=0, tables=frozenset(), versions=())
    except OSError as exc:
        raise DatabaseNotWritableError(
            display, f"it cannot be read ({exc.strerror})", UNCHANGED
        ) from exc
    if size == 0:
        return FileState(exists=True, size=0, tables=frozenset(), versions=())
    try:
        header = raw_sqlite.read_header(path)
    except OSError as exc:
        raise DatabaseNotWritableError(
            display, f"it cannot be read ({exc.strerror})", UNCHANGED
        ) from exc
    if len(header) < HEADER_SIZE or not header.startswith(SQLITE_MAGIC):
        raise NotADatabaseError(
            display,
            "this file is not a SQLite database",
            "Check that DB_PATH names the InkLinkOS database (inklink.db); if this file is "
            "something else, move it away and start again. " + UNCHANGED,
        )
    if not _recovery_pending(path):
        # With a journal or WAL beside it, a crash mid-checkpoint may have left the file
        # shorter than its header says; SQLite recovers that when it opens the file.
        _check_length(display, header, size)
    waited = busy_timeout_seconds()
    try:
        connection = raw_sqlite.connect(path, timeout=waited)
    except raw_sqlite.DRIVER_ERRORS as exc:
        raise DatabaseNotWritableError(display, f"it cannot be opened ({exc})", UNCHANGED) from exc
    try:
        if quick_check:
            problems = [
                " ".join(str(row[0]).split())
                for row in connection.execute("PRAGMA quick_check").fetchall()
            ]
            if problems != ["ok"]:
                raise DatabaseCorruptError(
                    display,
                    "the file is damaged (SQLite integrity check: " + "; ".join(problems[:3]) + ")",
                    ADVICE_RESTORE + " " + UNCHANGED,
                )
        tables = frozenset(
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        )
        versions: tuple[str, ...] = ()
        if VERSION_TABLE in tables:
            versions = tuple(
                row[0] for row in connection.execute(f"SELECT version_num FROM {VERSION_TABLE}")
            )
    except raw_sqlite.DATABASE_ERRORS as exc:
        if raw_sqlite.is_busy(exc):
            raise DatabaseBusyError(
                display,
                f"another program kept it locked for more than {waited:g} seconds",
                ADVICE_RETRY + " " + UNCHANGED,
            ) from exc
        raise DatabaseCorruptError(
            display, f"the file is damaged ({exc})", ADVICE_RESTORE + " " + UNCHANGED
        ) from exc
    finally:
        connection.close()
    return FileState(exists=True, size=size, tables=tables, versions=versions)


def _recovery_pending(path: Path) -> bool:
    for suffix in ("-wal", "-journal"):
        try:
            if path.with_name(path.name + suffix).stat().st_size > 0:
                return True
        except OSError:
            continue
    return False


def _check_length(display: str, header: bytes, size: int) -> None:
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    change_counter = header[24:28]
    valid_for = header[92:96]
    pages = int.from_bytes(header[28:32], "big")
    # The in-header page count is only trustworthy when its version-valid-for stamp matches.
    expected = page_size * pages if change_counter == valid_for and pages else page_size
    if page_size < 512 or size % page_size or size < expected:
        raise DatabaseCorruptError(
            display,
            f"the file is truncated ({size} bytes, expected at least {expected})",
            ADVICE_RESTORE + " " + UNCHANGED,
        )
