"""The two SQLite connection policies: the app's, and the migration runner's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

# Wait this long for another writer (another window, the deploy script) before failing.
BUSY_TIMEOUT_MS = 30_000


def _take_over_transactions(dbapi_connection: Any) -> None:
    # Python 3.11's sqlite3 sends no BEGIN before DDL and breaks SAVEPOINT; with
    # isolation_level=None it sends nothing, and the "begin" listener emits a real BEGIN.
    dbapi_connection.isolation_level = None


def apply_app_policy(engine: Engine) -> None:
    """Foreign keys on, WAL, a busy timeout and write-locking transactions on every connection."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        _take_over_transactions(dbapi_connection)
        cursor = dbapi_connection.cursor()
        try:
            # First, so that the PRAGMAs below wait for a busy writer instead of failing.
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # SQLite ships with foreign keys off; per connection, outside any transaction.
            cursor.execute("PRAGMA foreign_keys = ON")
            # Readers no longer block the writer, so several windows can work at once.
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction
        # cannot wait on the busy handler when it upgrades, and fails with "database is locked".
        # Sent on the driver connection: every ORM session pays for this statement, and
        # SQLAlchemy's full execution path would cost more than the statement itself.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]


def apply_migration_policy(engine: Engine) -> None:
    """Foreign keys off for the whole upgrade, one write-locked transaction."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        _take_over_transactions(dbapi_connection)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # A table rebuild with foreign keys on cascades or fails; this PRAGMA is ignored
            # inside a transaction, so it is set here, before BEGIN. The runner runs
            # PRAGMA foreign_key_check before it commits instead.
            cursor.execute("PRAGMA foreign_keys = OFF")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_migration_engine(url: str | URL) -> Engine:
    """A short-lived engine for one migration run; SQLite gets the migration policy."""
    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        apply_migration_policy(engine)
    return engine
