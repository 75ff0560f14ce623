"""The SQLite connection policies (the app's, the migration runner's) and reading transactions."""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from data.db.errors import DatabaseBusyError

log = logging.getLogger(__name__)

# How long a connection waits for another window's write before giving up (seconds).
BUSY_TIMEOUT_ENV = "INKLINK_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT_SECONDS = 30.0

# The execution option that marks a reading transaction (ReadSessionLocal, the at-head check).
READ_ONLY_OPTION = "inklink_read_only"
# The migration connection's page cache, in KiB.
MIGRATION_CACHE_KIB = 16384
# Per DBAPI connection (pool record info): whether PRAGMA query_only is on right now.
_QUERY_ONLY = "inklink_query_only"


def busy_timeout_seconds() -> float:
    """``INKLINK_BUSY_TIMEOUT`` in seconds, or the default when unset or not a number >= 0."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses NaN
        log.warning(
            "%s=%r is not a number of seconds; waiting %.0f s",
            BUSY_TIMEOUT_ENV,
            raw,
            DEFAULT_BUSY_TIMEOUT_SECONDS,
        )
        return DEFAULT_BUSY_TIMEOUT_SECONDS
    return seconds


def busy_timeout_ms() -> int:
    return int(busy_timeout_seconds() * 1000)


def read_only_options(engine: Engine) -> dict[str, Any]:
    """The execution options of a reading transaction on ``engine``'s kind of database."""
    options: dict[str, Any] = {READ_ONLY_OPTION: True}
    if engine.dialect.name == "postgresql":
        # The server refuses any write in the transaction (SET TRANSACTION READ ONLY).
        options["postgresql_readonly"] = True
    return options


def is_reading(connection: Connection) -> bool:
    return bool(connection.get_execution_options().get(READ_ONLY_OPTION, False))


def busy_error(database: str, waited_seconds: float) -> DatabaseBusyError:
    return DatabaseBusyError(
        database,
        f"another window or program kept it busy saving for more than {waited_seconds:g} seconds",
        "Nothing was saved. Try again in a moment; if it keeps happening, close other "
        f"InkLinkOS windows and tools using it ({BUSY_TIMEOUT_ENV} sets how long to wait).",
    )


def _take_over_transactions(dbapi_connection: Any) -> None:
    # Python 3.11's sqlite3 sends no BEGIN before DDL and breaks SAVEPOINT; with
    # isolation_level=None it sends nothing, and the "begin" listener emits a real BEGIN.
    dbapi_connection.isolation_level = None


def apply_app_policy(engine: Engine) -> None:
    """Foreign keys on, WAL, a busy timeout; writing transactions take the write lock at
    BEGIN, reading ones (``READ_ONLY_OPTION``) never wait for a writer and cannot write."""
    timeout_ms = busy_timeout_ms()
    database = str(engine.url.database)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        _take_over_transactions(dbapi_connection)
        cursor = dbapi_connection.cursor()
        try:
            # First, so that the PRAGMAs below wait for a busy writer instead of failing.
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            # SQLite ships with foreign keys off; per connection, outside any transaction.
            cursor.execute("PRAGMA foreign_keys = ON")
            # Readers no longer block the writer, nor the writer the readers, so several
            # windows can work at once.
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # Sent on the driver connection: every ORM session pays for these statements, and
        # SQLAlchemy's full execution path would cost more than the statements themselves.
        record = connection.connection
        driver = record.driver_connection
        assert driver is not None
        reading = is_reading(connection)
        try:
            if reading != record.info.get(_QUERY_ONLY, False):
                # query_only is a connection setting, switched only when the kind of
                # transaction changes: a reading transaction cannot write, even through
                # raw SQL, and a pooled connection never carries it into a writing one.
                driver.execute(f"PRAGMA query_only = {'ON' if reading else 'OFF'}")
                record.info[_QUERY_ONLY] = reading
            # A reader's deferred BEGIN reads the last committed snapshot (WAL) and never
            # waits for a writer. A writer's IMMEDIATE takes the write lock up front: a
            # deferred read-then-write transaction cannot wait on the busy handler when it
            # upgrades, and fails at once with "database is locked".
            driver.execute("BEGIN" if reading else "BEGIN IMMEDIATE")
        except connection.dialect.loaded_dbapi.Error as exc:
            # Raised outside SQLAlchemy's execution path, so handle_error never sees it.
            if "locked" in str(exc) or "busy" in str(exc):
                raise busy_error(database, timeout_ms / 1000) from exc
            raise


def apply_migration_policy(engine: Engine) -> None:
    """Foreign keys off for the whole upgrade, one write-locked transaction."""
    timeout_ms = busy_timeout_ms()

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        _take_over_transactions(dbapi_connection)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            # A table rebuild with foreign keys on cascades or fails; this PRAGMA is ignored
            # inside a transaction, so it is set here, before BEGIN. The runner runs
            # PRAGMA foreign_key_check before it commits instead.
            cursor.execute("PRAGMA foreign_keys = OFF")
            # 16 MiB of page cache instead of 2: checking a rebuilt table's references looks
            # up a parent for every row. (Index builds sort in runs this large, which on a
            # 1M-row table took twice SQLite's default: rebuild_table sorts in 2 MB.)
            # A fixed amount: the upgrade's memory does not grow with the file.
            cursor.execute(f"PRAGMA cache_size = -{MIGRATION_CACHE_KIB}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def apply_server_policy(engine: Engine) -> None:
    """Every session of a PostgreSQL server answers in UTC.

    psycopg hands a ``timestamptz`` back in the session's time zone. The guards let a server
    keep any moment of years 1 to 9999 in UTC, and on a server set to New York the first
    moment of year 1 comes back in year 0, which Python cannot represent: the row could be
    written but never read again. In UTC every stored moment reads back as itself.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Outside any transaction, so a rollback never undoes it (SQLAlchemy's recipe).
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET TIME ZONE 'UTC'")
        finally:
            cursor.close()
            dbapi_connection.autocommit = autocommit


def create_migration_engine(url: str | URL) -> Engine:
    """A short-lived engine for one migration run; SQLite gets the migration policy, a server
    answers in UTC."""
    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        apply_migration_policy(engine)
    elif engine.dialect.name == "postgresql":
        apply_server_policy(engine)
    return engine
