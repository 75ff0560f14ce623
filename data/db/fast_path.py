"""The at-head check of every app start: one row read through the app's own engine."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from data.db.errors import DataLayerError
from data.db.head import recorded_history
from data.db.outcome import UpgradeOutcome
from data.db.policy import read_only_options
from data.migration.raw_sqlite import is_wal_header, read_header


def current_outcome(engine: Engine, db_path: str) -> UpgradeOutcome | None:
    """An outcome ``current`` when the database is at head, else ``None`` (the slow path).

    A stale record of the head (revision files it does not list) also goes to the slow
    path, which refuses it: "current" must never be said against a head that is out of date.
    """
    if recorded_history().problem is not None:
        return None
    if engine.dialect.name == "sqlite":
        # Only a file already in WAL mode is opened here: the app engine switches a file to
        # WAL, which rewrites header bytes, and a file that may yet be refused must stay
        # byte-for-byte unchanged. Anything else goes to the runner, which classifies first.
        try:
            header = read_header(db_path, 20)
        except OSError:
            return None
        if not is_wal_header(header):
            return None
        display = db_path
    else:
        display = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            # A reading transaction: it never waits for another window's write.
            connection.execution_options(**read_only_options(engine))
            versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except (DBAPIError, DataLayerError, engine.dialect.loaded_dbapi.Error):
        return None  # the runner looks closer, and refuses with the reason if it must
    head = recorded_history().head
    if len(versions) != 1 or versions[0][0] != head:
        return None
    return UpgradeOutcome("current", display, head, head)
