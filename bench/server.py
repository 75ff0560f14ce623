"""The PostgreSQL databases the benchmark moves studios into: made and dropped per run."""

from __future__ import annotations

import itertools
import os

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

# The same server the tests use (DATABASE_URL_TEST), through its maintenance database.
DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class ServerDatabases:
    """Creates databases named ``<prefix>_<n>`` and drops them ``WITH (FORCE)``."""

    def __init__(self, prefix: str) -> None:
        url = make_url(os.environ.get("DATABASE_URL_TEST") or DEFAULT_SERVER_URL)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        self.url = url
        self.prefix = prefix
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.numbers = itertools.count(1)
        self.made: list[str] = []

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(sql)

    def create(self) -> str:
        """A new empty database; its URL with the password, for a child process."""
        name = f"{self.prefix}_{next(self.numbers)}"
        self._execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def size(self, url: str) -> int:
        with self.admin.connect() as connection:
            return int(
                connection.exec_driver_sql(
                    "SELECT pg_database_size(%(name)s)", {"name": make_url(url).database}
                ).scalar_one()
            )

    def drop(self, url: str) -> None:
        name = make_url(url).database
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.made:
            self.made.remove(name)

    def close(self) -> None:
        for name in list(self.made):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()
