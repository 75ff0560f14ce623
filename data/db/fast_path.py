"""The at-head check of every app start: one row read through the app's own engine."""

from __future__ import annotations

import os
import stat
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from data.db.errors import DataLayerError
from data.db.file_modes import is_shared
from data.db.head import recorded_history
from data.db.outcome import UpgradeOutcome
from data.db.policy import read_only_options
from data.migration import raw_sqlite
from data.migration.raw_sqlite import SQLITE_MAGIC, is_wal_header, read_header, unvouched_side_files


def current_outcome(engine: Engine, db_path: str) -> UpgradeOutcome | None:
    """An outcome ``current`` when the database is at head, else ``None`` (the slow path).

    A stale record of the head (revision files it does not list) also goes to the slow
    path, which refuses it: "current" must never be said against a head that is out of date.
    """
    if recorded_history().problem is not None:
        return None
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        if not _plain_owned_writable_file(db_path):
            return None
        # Only a file already in WAL mode is opened here: the app engine switches a file to
        # WAL, which rewrites header bytes, and a file that may yet be refused must stay
        # byte-for-byte unchanged. Anything else goes to the runner, which classifies first.
        try:
            header = read_header(db_path, 20)
        except OSError:
            return None
        # An encrypted header says nothing without the key (not even the journal mode).
        encrypted = not header.startswith(SQLITE_MAGIC) and engine.dialect.driver == "pysqlcipher"
        if not encrypted and not is_wal_header(header):
            return None
        # A -wal or hot -journal nothing ties to this file would be replayed into it by the
        # first open: the runner keeps a copy of everything first, and says so.
        if unvouched_side_files(db_path):
            return None
        display = db_path
        # The version, and SQLite's schema cookie against the one the runner recorded when
        # it last committed (in user_version): one read, whatever the size of the file.
        query = _VERSION_AND_COOKIES
    else:
        encrypted = False
        display = engine.url.render_as_string(hide_password=True)
        # A server keeps no schema cookie: drift there is caught by the next upgrade's checks.
        query = _VERSION_ONLY
    if encrypted:
        found = _encrypted_rows(db_path)
        if found is None:
            return None
        rows = found
    else:
        try:
            with engine.connect() as connection:
                # A reading transaction: it never waits for another window's write.
                connection.execution_options(**read_only_options(engine))
                rows = list(connection.exec_driver_sql(query).all())
        except (DBAPIError, DataLayerError, engine.dialect.loaded_dbapi.Error):
            return None  # the runner looks closer, and refuses with the reason if it must
    head = recorded_history().head
    if len(rows) != 1 or rows[0][0] != head:
        return None
    if sqlite and rows[0][1] != rows[0][2]:
        return None  # changed since the runner's last commit: the runner verifies it in full
    return UpgradeOutcome("current", display, head, head)


_VERSION_ONLY = "SELECT version_num FROM alembic_version"
_VERSION_AND_COOKIES = (
    "SELECT version_num, (SELECT schema_version FROM pragma_schema_version), "
    "(SELECT user_version FROM pragma_user_version) FROM alembic_version"
)


def _encrypted_rows(db_path: str) -> list[Any] | None:
    """The version and cookies of an encrypted file, read through a raw keyed connection.

    Not through the app's engine: it switches the file to WAL, which rewrites page 1, and
    its journal mode cannot be read from the encrypted header first. Only a file already in
    WAL mode (as every file the data layer writes is left) is called current; anything else,
    a missing or wrong key included, goes to the runner, which refuses with the reason.
    """
    from data.db import keys

    try:
        key = keys.key_for(db_path)
        connection = raw_sqlite.connect(db_path, timeout=0, key=key.pragma())
    except DataLayerError:
        return None
    except raw_sqlite.DRIVER_ERRORS:
        return None
    try:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            return None
        return list(connection.execute(_VERSION_AND_COOKIES).fetchall())
    except raw_sqlite.DRIVER_ERRORS:
        return None
    finally:
        connection.close()


def _plain_owned_writable_file(db_path: str) -> bool:
    """A regular file this user can write, with its folder and side files, kept owner-only.

    A few system calls, no open(): a FIFO would block the open forever, and a file this user
    cannot write must not be called current (the first save would fail). Anything else
    (including a file readable by other accounts, which the runner tightens) goes to the
    runner, which refuses or repairs it with a message that fits.
    """
    try:
        found = os.stat(db_path)
    except OSError:
        return False
    if not stat.S_ISREG(found.st_mode) or is_shared(found.st_mode, found.st_uid):
        return False
    if not os.access(db_path, os.W_OK) or not os.access(
        os.path.dirname(db_path) or ".", os.W_OK | os.X_OK
    ):
        return False
    # SQLite opens these itself (a FIFO among them would block it); one lstat each when absent.
    for side in (db_path + "-wal", db_path + "-shm", db_path + "-journal"):
        try:
            side_mode = os.lstat(side).st_mode
        except FileNotFoundError:
            continue
        except OSError:
            return False
        if not stat.S_ISREG(side_mode) or not os.access(side, os.R_OK | os.W_OK):
            return False
    return True
