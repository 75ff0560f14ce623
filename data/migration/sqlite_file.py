"""Look at a SQLite file without changing it: header, integrity, tables, Alembic version."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from data.db import keys
from data.db.errors import (
    ADVICE_KEY,
    ADVICE_RESTORE,
    ADVICE_RETRY,
    UNCHANGED,
    DatabaseBusyError,
    DatabaseCorruptError,
    DatabaseKeyError,
    DatabaseNotWritableError,
    NotADatabaseError,
)
from data.db.file_modes import make_private_folder
from data.db.policy import busy_timeout_seconds
from data.migration import raw_sqlite
from data.migration.raw_sqlite import HEADER_SIZE, SQLITE_MAGIC
from data.migration.schema import quote_identifier
from data.migration.state import VERSION_TABLE, FileState

__all__ = [
    "VERSION_TABLE",
    "FileState",
    "check_location",
    "inspect_sqlite_file",
    "integrity_problems",
    "refuse_damaged",
    "side_files",
]


# Both cookies in one read: SQLite's schema version, and the one the runner recorded.
SCHEMA_COOKIE_QUERY = "SELECT * FROM pragma_schema_version, pragma_user_version"

# The files SQLite keeps beside the database while it is open or after a crash.
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")

ADVICE_ACCESS = (
    "Give this user write access to it, or start InkLinkOS as the user who owns it. Do not "
    "restore a backup or delete anything: the file may hold changes not saved anywhere else. "
)


def side_files(path: Path) -> list[Path]:
    """The side files SQLite may keep beside ``path`` (present or not)."""
    return [path.with_name(path.name + suffix) for suffix in SIDE_FILE_SUFFIXES]


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "something other than a regular file"


def check_location(path: Path) -> None:
    """Refuse, before anything opens it, a path that can never hold the database.

    A folder, a FIFO, a socket or a device (opening one can block forever), a link to
    nothing, and a database, side file (``-wal``, ``-shm``, ``-journal``) or folder this
    user cannot write: each is refused with what fits it, never "damaged".
    """
    display = str(path)
    mode: int | None = None
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                raise NotADatabaseError(
                    display,
                    f"the path is a link to {os.readlink(path)}, which does not exist",
                    "Point DB_PATH at the database file itself, or put back the file the link "
                    "names. " + UNCHANGED,
                ) from None
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
        raise NotADatabaseError(
            display,
            f"the path is {_kind(mode)}, not a database file",
            "Set DB_PATH to a database file such as .../inklink.db. " + UNCHANGED,
        )
    parent = path.parent
    try:
        make_private_folder(parent)
    except OSError as exc:
        raise DatabaseNotWritableError(
            display,
            f"its folder {parent} cannot be created ({exc.strerror})",
            "Choose a folder this user can write, through DB_PATH.",
        ) from exc
    # The lock, the journal and the backups all live beside the file.
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DatabaseNotWritableError(
            display,
            f"this user ({_user()}) cannot write its folder {parent}",
            "Give this user write access to the folder, or set DB_PATH to a folder it can write. "
            + UNCHANGED,
        )
    if mode is not None and not os.access(path, os.W_OK):
        raise DatabaseNotWritableError(
            display,
            f"this user ({_user()}) cannot write it (it belongs to {_owner(path)})",
            ADVICE_ACCESS + UNCHANGED,
        )
    for side in side_files(path):
        try:
            side_mode = os.lstat(side).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DatabaseNotWritableError(
                display, f"its side file {side} cannot be reached ({exc.strerror})", UNCHANGED
            ) from exc
        if not stat.S_ISREG(side_mode):
            raise NotADatabaseError(
                display,
                f"its side file {side} is {_kind(side_mode)}, which SQLite cannot use",
                "Move that side file away (it holds no data), then start again. " + UNCHANGED,
            )
        if not os.access(side, os.R_OK | os.W_OK):
            raise DatabaseNotWritableError(
                display,
                f"this user ({_user()}) cannot write its side file {side} (it belongs to "
                f"{_owner(side)}; SQLite keeps changes there until they are written into the "
                "database)",
                ADVICE_ACCESS + UNCHANGED,
            )


def _owner(path: Path) -> str:
    try:
        uid = path.stat().st_uid
    except OSError:
        return "another user"
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # pragma: no cover - Windows, or an unnamed uid
        return f"user id {uid}"


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):  # pragma: no cover - Windows
        return os.environ.get("USERNAME", "unknown")


SCHEMA_TABLE = "sqlite_master"


def integrity_problems(connection: raw_sqlite.Connection, table: str | None = None) -> list[str]:
    """What ``PRAGMA quick_check`` finds, over the whole file or one table and its indexes
    (an empty list when it answers "ok")."""
    pragma = "PRAGMA quick_check"
    if table is not None:
        pragma += f"({quote_identifier(table)})"
    problems = [" ".join(str(row[0]).split()) for row in connection.execute(pragma).fetchall()]
    return [] if problems == ["ok"] else problems


def inspect_sqlite_file(
    path: Path, *, quick_check: bool = True, key: keys.DatabaseKey | None = None
) -> FileState:
    """Classify ``path`` through a plain connection that sets nothing, writing nothing.

    ``quick_check`` checks every page of the file; without it only the schema table is
    checked (what an upgrade does not touch is checked after start instead).

    Opening read-write lets SQLite roll back a hot journal left by a crash; nothing else is
    written. Raises NotADatabaseError or DatabaseCorruptError for a file that must not be
    touched, and DatabaseKeyError for an encrypted one whose key is missing or wrong (an
    encrypted file is opened with ``key``, or else the one ``data.db.keys`` finds for it).
    """
    display = str(path)
    try:
        found = path.stat()
    except FileNotFoundError:
        return FileState(exists=False, size=0, tables=frozenset(), versions=())
    except OSError as exc:
        raise DatabaseNotWritableError(
            display, f"it cannot be read ({exc.strerror})", UNCHANGED
        ) from exc
    if not stat.S_ISREG(found.st_mode):
        # Before any open(): reading a FIFO waits forever for a writer.
        raise NotADatabaseError(
            display, f"the path is {_kind(found.st_mode)}, not a database file", UNCHANGED
        )
    size = found.st_size
    if size == 0:
        return FileState(exists=True, size=0, tables=frozenset(), versions=())
    try:
        header = raw_sqlite.read_header(path)
    except OSError as exc:
        raise DatabaseNotWritableError(
            display, f"it cannot be read ({exc.strerror})", UNCHANGED
        ) from exc
    encrypted = keys.header_looks_encrypted(header, size)
    given_key = key is not None
    # Not plain SQLite and not whole pages: no file SQLCipher wrote as it is, but one of its
    # files cut short (a copy that stopped, a full disk) still opens with its key, and must
    # be called damaged (restore a backup), never "not a database, move it away".
    cut_short = False
    if not encrypted and (len(header) < HEADER_SIZE or not header.startswith(SQLITE_MAGIC)):
        key = key or _key_if_any(path)
        if key is None or header.startswith(SQLITE_MAGIC):
            raise _not_a_database(display)
        encrypted = cut_short = True
    if encrypted:
        # Refused here, before any open, when no key is to be had: nothing is written.
        key = key or keys.key_for(path)
    elif not _recovery_pending(path):
        # With a journal or WAL beside it, a crash mid-checkpoint may have left the file
        # shorter than its header says; SQLite recovers that when it opens the file.
        # (An encrypted header is unreadable without the key: SQLite checks it then.)
        _check_length(display, header, size)
    waited = busy_timeout_seconds()
    try:
        connection = raw_sqlite.connect(
            path, timeout=waited, key=key.pragma() if encrypted and key else None
        )
    except raw_sqlite.DRIVER_ERRORS as exc:
        raise DatabaseNotWritableError(
            display, f"it cannot be opened ({exc})", ADVICE_ACCESS + UNCHANGED
        ) from exc
    try:
        if cut_short:
            try:
                connection.execute("PRAGMA schema_version").fetchone()
            except raw_sqlite.DATABASE_ERRORS as exc:
                # "Not a database": the key does not open page 1 either (handled below).
                # Anything else: page 1 opened (it is ours) and SQLite saw the damage.
                if raw_sqlite.is_not_a_database(exc) or raw_sqlite.is_busy(exc):
                    raise
            raise DatabaseCorruptError(
                display,
                f"the file is truncated ({size} bytes, not a whole number of pages)",
                ADVICE_RESTORE + " " + UNCHANGED,
            )
        # The whole file, or only the schema table the classification reads: an upgrade
        # checks what it touched before it commits, and the whole file is checked after
        # start (runner.check_whole_database), off the upgrade's critical path.
        problems = integrity_problems(connection, None if quick_check else SCHEMA_TABLE)
        if problems:
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
        # The schema cookie (bumped by SQLite at every schema change) against the one the
        # runner recorded in user_version when it last committed: see record_schema_cookie().
        schema_version, recorded = connection.execute(SCHEMA_COOKIE_QUERY).fetchone()
    except raw_sqlite.DATABASE_ERRORS as exc:
        if cut_short and raw_sqlite.is_not_a_database(exc):
            raise _not_a_database(display) from exc  # the key does not open it either
        if encrypted and raw_sqlite.is_not_a_database(exc):
            # Checked on the first read of page 1, before anything could be written.
            pending = None if given_key else keys.pending_key(path)
            if pending is not None and pending != key:
                # A key change stopped between the file and the keyring: the new key opens it.
                state = inspect_sqlite_file(path, quick_check=quick_check, key=pending)
                keys.promote_pending(path, pending)
                return state
            raise DatabaseKeyError(
                display,
                "the key found for it does not open it: it was encrypted with another key "
                f"(or it is not an InkLinkOS database at all; {keys.KEY_ENV} or the keyring "
                "gave the key)",
                ADVICE_KEY,
            ) from exc
        if raw_sqlite.is_busy(exc):
            raise DatabaseBusyError(
                display,
                f"another program kept it locked for more than {waited:g} seconds",
                ADVICE_RETRY + " " + UNCHANGED,
            ) from exc
        if raw_sqlite.is_access_denied(exc):
            raise DatabaseNotWritableError(
                display,
                f"this user ({_user()}) cannot write it or a file beside it ({exc})",
                ADVICE_ACCESS + UNCHANGED,
            ) from exc
        raise DatabaseCorruptError(
            display, f"the file is damaged ({exc})", ADVICE_RESTORE + " " + UNCHANGED
        ) from exc
    finally:
        connection.close()
    return FileState(
        exists=True,
        encrypted=encrypted,
        size=size,
        tables=tables,
        versions=versions,
        schema_unverified=schema_version != recorded,
    )


def whole_file_problems(
    path: Path, *, read_only: bool = False, key: keys.DatabaseKey | None = None
) -> list[str]:
    """Every page of ``path`` checked (``PRAGMA quick_check``), writing nothing.

    The live database is opened read-write with ``query_only`` (a read-only open of a file in
    WAL mode fails when its ``-shm`` cannot be made); a backup, one file, read-only. In WAL
    mode this reader never holds up a writer. An encrypted file (or its backup, which has
    its key and salt) is opened with ``key``. Raises OSError or a driver error when the
    file cannot be read at all.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):  # before any open(): a FIFO would block
        raise OSError(f"{path} is not a regular file")
    connection = raw_sqlite.connect(
        path,
        timeout=busy_timeout_seconds(),
        read_only=read_only,
        key=key.pragma() if key else None,
    )
    try:
        connection.execute("PRAGMA query_only = ON")
        try:
            return integrity_problems(connection)
        except raw_sqlite.DATABASE_ERRORS as exc:
            if raw_sqlite.is_busy(exc) or raw_sqlite.is_access_denied(exc):
                raise
            return [str(exc)]  # "file is not a database", "disk image is malformed"
    finally:
        connection.close()


def refuse_damaged(path: Path, key: keys.DatabaseKey | None = None) -> None:
    """Refuse, before anything is written, a file any page of which is damaged.

    Every page is read (about 10 ms per MB): the runner does this only for a file it will
    not upgrade (a start it must vouch for, a file made before migrations); an upgrade checks
    what it touched instead, and the whole file is checked after start.
    """
    display = str(path)
    connection = raw_sqlite.connect(
        path, timeout=busy_timeout_seconds(), key=key.pragma() if key else None
    )
    try:
        problems = integrity_problems(connection)
    except raw_sqlite.DATABASE_ERRORS as exc:
        if raw_sqlite.is_busy(exc):
            raise DatabaseBusyError(
                display, "another program kept it locked", ADVICE_RETRY + " " + UNCHANGED
            ) from exc
        problems = [str(exc)]
    finally:
        connection.close()
    if problems:
        raise DatabaseCorruptError(
            display,
            "the file is damaged (SQLite integrity check: " + "; ".join(problems[:3]) + ")",
            ADVICE_RESTORE + " " + UNCHANGED,
        )


def _not_a_database(display: str) -> NotADatabaseError:
    return NotADatabaseError(
        display,
        "this file is not a SQLite database",
        "Check that DB_PATH names the InkLinkOS database (inklink.db); if this file is "
        "something else, move it away and start again. " + UNCHANGED,
    )


def _key_if_any(path: Path) -> keys.DatabaseKey | None:
    """The key ``data.db.keys`` would give an encrypted file at ``path``, or None."""
    try:
        return keys.key_for(path)
    except DatabaseKeyError:
        return None


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
