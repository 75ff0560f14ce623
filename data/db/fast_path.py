"""The at-head check of every app start: one row read through the app's own engine."""

from __future__ import annotations

import os
import stat

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from data.db.errors import DataLayerError
from data.db.file_modes import is_shared
from data.db.head import recorded_history
from data.db.outcome import UpgradeOutcome
from data.db.policy import read_only_options
from data.migration.raw_sqlite import is_wal_header, read_header, unvouched_side_files


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
        if not is_wal_header(header):
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
        display = engine.url.render_as_string(hide_password=True)
        # A server keeps no schema cookie: drift there is caught by the next upgrade's checks.
        query = _VERSION_ONLY
    try:
        with engine.connect() as connection:
            # A reading transaction: it never waits for another window's write.
            connection.execution_options(**read_only_options(engine))
            rows = connection.exec_driver_sql(query).all()
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
