"""PostgreSQL fixtures: a database per test run, a clean one per test, all dropped WITH (FORCE).

The server is ``DATABASE_URL_TEST`` (default: postgres on 127.0.0.1:5432, database ``test``,
used only to create and drop the run's databases). Without a server the tests are skipped
with the reason; with ``INKLINK_REQUIRE_POSTGRES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from data.db.pg_schema import pg_snapshot
from data.db.schema import Snapshot
from tests.conftest import subprocess_env

DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REQUIRE_ENV = "INKLINK_REQUIRE_POSTGRES"


def server_url() -> URL:
    url = make_url(os.environ.get("DATABASE_URL_TEST") or DEFAULT_SERVER_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def plain(url: URL) -> str:
    """The URL with its password, for a child process's DATABASE_URL (never for a message)."""
    return url.render_as_string(hide_password=False)


def pg_env(url: URL, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A child's environment: DATABASE_URL set, DB_PATH pointed at a file nobody creates."""
    return subprocess_env(tmp_path / "unused-sqlite.db", DATABASE_URL=plain(url), **extra)


def schema_of(url: URL) -> Snapshot:
    """The schema of the database at ``url``, through pg_catalog."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return pg_snapshot(connection)
    finally:
        engine.dispose()


def studio_at_head(url: URL) -> None:
    """A database the current app created, with one client in it."""
    from data.db.runner import ensure_current

    engine = create_engine(url, poolclass=NullPool)
    try:
        assert ensure_current(engine).action == "created"
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO clients (first_name, last_name, created_at, updated_at) "
                "VALUES ('Ada', 'Lovelace', now(), now())"
            )
    finally:
        engine.dispose()


def versions(url: URL) -> list[str]:
    """What alembic_version records, or [] without the table."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if not connection.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar():
                return []
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return [row[0] for row in rows]
    finally:
        engine.dispose()


class ServerDatabases:
    """Creates and drops this run's databases through the maintenance database, in AUTOCOMMIT."""

    def __init__(self, admin_url: URL, prefix: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.admin_url = admin_url
        self.prefix = prefix
        self._numbers = itertools.count(1)

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(sql)

    def create(self, name: str | None = None) -> URL:
        name = name or f"{self.prefix}_{next(self._numbers)}"
        self._execute(f'CREATE DATABASE "{name}"')
        return self.admin_url.set(database=name)

    def drop(self, url: URL) -> None:
        # FORCE: a child process (or a lock holder) may still be connected.
        self._execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')

    def drop_leftovers(self) -> None:
        with self.admin.connect() as connection:
            names = connection.exec_driver_sql(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %(prefix)s)",
                {"prefix": self.prefix},
            ).scalars()
            for name in list(names):
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> URL:
    """The maintenance URL, once it answers; else skip (or fail under CI)."""
    url = server_url()
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        reason = (
            f"PostgreSQL server {url.render_as_string()} is unreachable ({detail}); "
            "start it or set DATABASE_URL_TEST"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 and {reason}", pytrace=False)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def pg_databases(pg_server: URL) -> Iterator[ServerDatabases]:
    """This run's databases, named inklink_test_<pid>_<random>[_<n>]; all dropped at the end."""
    databases = ServerDatabases(pg_server, f"inklink_test_{os.getpid()}_{secrets.token_hex(4)}")
    try:
        yield databases
    finally:
        databases.drop_leftovers()
        databases.admin.dispose()


@pytest.fixture(scope="session")
def pg_run_database(pg_databases: ServerDatabases) -> Iterator[URL]:
    """The run's own database (tests that only need tables, and clean them up themselves)."""
    url = pg_databases.create(pg_databases.prefix)
    yield url
    pg_databases.drop(url)


@pytest.fixture
def pg_url(pg_databases: ServerDatabases) -> Iterator[URL]:
    """A fresh, empty database for one test."""
    url = pg_databases.create()
    yield url
    pg_databases.drop(url)


@pytest.fixture
def pg_engine(pg_url: URL) -> Iterator[Engine]:
    """The app's engine on a fresh, empty database."""
    from data.db.session import create_app_engine

    engine = create_app_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_connection(pg_url: URL) -> Iterator[Connection]:
    """A plain connection to the fresh database, for setting up and inspecting it."""
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.connect() as connection:
        yield connection
    engine.dispose()
