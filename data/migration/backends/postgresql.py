"""The runner's PostgreSQL side (multi-seat studios): one transaction, one advisory lock.

Several front-desk machines and a deploy script may start at once against one server. Each
takes the same advisory lock before it looks at the database, re-reads the state under it,
and does its work in one transaction (PostgreSQL's DDL is transactional), so the database
is created or upgraded exactly once. Backups of a server are the operator's job.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, MetaData, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from data.db.errors import (
    DatabaseBusyError,
    DatabaseUnreachableError,
    DataLayerError,
    MigrationFailedError,
)
from data.db.head import recorded_history
from data.migration import backends, guards
from data.migration.legacy import refuse_legacy_mismatch
from data.migration.pg_schema import pg_snapshot, pg_tables, scratch_schema
from data.migration.schema import Snapshot
from data.migration.scripts import script_directory
from data.migration.state import VERSION_TABLE, FileState
from data.models.base import NAMING_CONVENTION

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

log = logging.getLogger("data.migration.runner")

# One key for every InkLinkOS migration on a database: the runner's transaction-level lock
# and the command line's session-level lock on it exclude each other. (Advisory locks are
# per database. A pooler in transaction mode breaks the session-level one: point the deploy
# script's DATABASE_URL at the server itself.) The first 8 bytes of sha256("InkLinkOS
# migrations") as a signed int64: unlikely to collide with another program's key.
ADVISORY_LOCK_KEY = 66772767440182426
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired

NO_BACKUP_NOTE = "no backup made: backups of a server database are the operator's job"
SERVER_UNCHANGED = "The database was not changed."


def display_url(url: URL) -> str:
    """The URL as SQLAlchemy shows it by default: the password masked."""
    return url.render_as_string(hide_password=True)


def _scrub(text: str, url: URL) -> str:
    """Belt and braces: a driver message never carries the password, but make sure."""
    password = url.password
    return text.replace(str(password), "***") if password else text


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _is_lock_timeout(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == _LOCK_NOT_AVAILABLE


def _busy(display: str, timeout: float) -> DatabaseBusyError:
    return DatabaseBusyError(
        display,
        f"another InkLinkOS seat or a deploy has held its migration lock for more than "
        f"{timeout:.0f} seconds",
        "Wait for the other machine's start or the deploy to finish, then start again. "
        + SERVER_UNCHANGED,
    )


@contextlib.contextmanager
def _connection(url: URL, display: str) -> Iterator[Connection]:
    """A connection of its own (NullPool: closing it ends the server session and its locks)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        try:
            connection = engine.connect()
        except DBAPIError as exc:
            raise DatabaseUnreachableError(
                display,
                f"the server cannot be reached ({_scrub(_first_line(exc), url)})",
                "Check that the PostgreSQL server is running and that DATABASE_URL names it, "
                "its database, user and password.",
            ) from exc
        with connection:
            yield connection
    finally:
        engine.dispose()


@contextlib.contextmanager
def _failures_explained(
    url: URL, display: str, timeout: float, *, command_line: bool = False, read_only: bool = False
) -> Iterator[None]:
    """Turn what goes wrong inside the migration transaction into errors for people.

    On the command line, Alembic's own errors pass through: Alembic already says what to do.
    So does every error of a command that only reads: it is the caller's own.
    """
    try:
        yield
    except DataLayerError:
        raise
    except Exception as exc:
        if _is_lock_timeout(exc):
            raise _busy(display, timeout) from exc
        if read_only or (command_line and type(exc).__module__.startswith("alembic.")):
            raise
        raise MigrationFailedError(
            display,
            f"the upgrade failed: {_scrub(_first_line(exc), url)}",
            "Nothing was changed: every step was rolled back. Report this message to support.",
        ) from exc


def _set_lock_timeout(connection: Connection, timeout: float) -> None:
    # For this transaction only: the wait for the advisory lock, and for table locks that
    # the migration's DDL needs while other seats are working.
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(timeout * 1000)}ms'")


def read_state(connection: Connection) -> FileState:
    """Tables and recorded revisions of the current schema, read in the open transaction."""
    tables = pg_tables(connection)
    versions: tuple[str, ...] = ()
    if VERSION_TABLE in tables:
        versions = tuple(
            str(row[0])
            for row in connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
        )
    return FileState(exists=True, size=0, tables=tables, versions=versions)


def promised_snapshot(connection: Connection, script: ScriptDirectory, revision: str) -> Snapshot:
    """The schema the chain up to ``revision`` creates on this server, built and rolled back.

    A server's promised schema (what a migrated database is verified against) is the chain
    replayed in a scratch schema, rendered by the same server. The revisions run through a
    bare MigrationContext, not through ``command.upgrade``: this also runs inside ``env.py``,
    where a nested Alembic command would tear down the outer command's context.
    """
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    chain = reversed(list(script.iterate_revisions(revision, "base")))
    with scratch_schema(connection):
        # Unqualified DDL lands in the scratch schema, first on the search path.
        # Constraints a revision leaves unnamed get the names env.py's run gives them.
        context = MigrationContext.configure(
            connection, opts={"target_metadata": MetaData(naming_convention=NAMING_CONVENTION)}
        )
        applied: list[str] = []
        with Operations.context(context):
            for step in chain:
                step.module.upgrade()
                applied.append(step.revision)
                if guards.active_in_chain(applied):
                    guards.sync(connection)
        return pg_snapshot(connection, exclude=frozenset({VERSION_TABLE}))


class ServerSession(backends.Session):
    """A turn inside the one transaction that holds the lock (or follows the session lock)."""

    def __init__(self, connection: Connection, display: str) -> None:
        self.connection = connection
        self.display = display

    def read_state(self) -> FileState:
        return read_state(self.connection)

    def check_legacy(self, script: ScriptDirectory) -> None:
        found = pg_snapshot(self.connection, exclude=frozenset({VERSION_TABLE}))
        expected = promised_snapshot(self.connection, script, recorded_history().baseline)
        refuse_legacy_mismatch(self.display, found, expected, SERVER_UNCHANGED)

    def prepare_to_write(self, state: FileState, label: str) -> tuple[Path | None, str]:
        log.info("%s: %s", self.display, NO_BACKUP_NOTE)
        return None, NO_BACKUP_NOTE

    def transaction(
        self, from_revision: str | None, *, command_line: bool = False, read_only: bool = False
    ) -> contextlib.AbstractContextManager[Connection]:
        # The session's transaction is the migration's: DDL on a server is transactional.
        return contextlib.nullcontext(self.connection)


class Backend(backends.Backend):
    """A PostgreSQL server database, shared by several seats and deploys."""

    unchanged = SERVER_UNCHANGED

    @property
    def display(self) -> str:
        return display_url(self.engine.url)

    @contextlib.contextmanager
    def session(
        self, timeout: float, *, command_line: bool = False, writes: bool = True
    ) -> Iterator[backends.Session]:
        url, display = self.engine.url, self.display
        with _connection(url, display) as connection:
            if not command_line:
                with _failures_explained(url, display, timeout), connection.begin():
                    _set_lock_timeout(connection, timeout)
                    # Held until this transaction ends; every seat and the deploy queue here.
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
                    yield ServerSession(connection, display)
                return
            # The command line: a session-level lock on the same key, taken in a transaction
            # of its own (Alembic's run is the next one); the two kinds exclude each other.
            with (
                _failures_explained(url, display, timeout, command_line=True),
                connection.begin(),
            ):
                _set_lock_timeout(connection, timeout)
                connection.exec_driver_sql(f"SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})")
            # The lock outlives that transaction; it ends with the session (the connection is
            # not pooled) or with the unlock below.
            try:
                with (
                    _failures_explained(
                        url, display, timeout, command_line=True, read_only=not writes
                    ),
                    connection.begin(),
                ):
                    _set_lock_timeout(connection, timeout)
                    yield ServerSession(connection, display)
            finally:
                with contextlib.suppress(DBAPIError):
                    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})")
                    connection.commit()

    def foreign_key_violations(
        self, connection: Connection, *, everything: bool = False
    ) -> list[tuple[Any, ...]]:
        # PostgreSQL checks foreign keys on every statement: none can be left behind.
        return []

    def promised_schema(self, connection: Connection, revision: str) -> Snapshot:
        return promised_snapshot(connection, script_directory(), revision)

    def live_schema(self, connection: Connection) -> Snapshot:
        return pg_snapshot(connection, exclude=frozenset({VERSION_TABLE}))
