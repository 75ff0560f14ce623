"""What differs between kinds of database, behind one small interface the runner drives.

The runner owns the policy once: lock, re-read under the lock, classify, refuse, back up,
migrate in one transaction, verify, commit. A backend answers how that is done on its kind of
database (Alembic's per-dialect ``DefaultImpl`` is the model): how to lock, read the state,
check a legacy schema, prepare for writing (free space, a backup, or a note why none), open
the migration transaction, and what to verify against.

A backend is the module ``data.migration.backends.<dialect>_<driver>`` or, failing that,
``data.migration.backends.<dialect>``, exposing ``Backend``: adding one is one new module.
"""

from __future__ import annotations

import contextlib
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from data.db.outcome import IntegrityReport
from data.migration.backup import KEEP_BACKUPS
from data.migration.schema import Snapshot
from data.migration.state import FileState

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory


class Session(ABC):
    """One locked turn at a database: everything from the re-read to the commit."""

    #: Something the app should show whatever the outcome (a side file SQLite applied).
    note: str = ""
    #: The recovery key of a database this turn created encrypted with a key it made.
    recovery_key: str | None = None

    @abstractmethod
    def read_state(self) -> FileState:
        """Tables and recorded revisions, read under the lock (refusing an unusable database)."""

    def refuse_damaged(self) -> None:  # noqa: B027 (a server checks its own pages)
        """Refuse, writing nothing, a database any page of which is damaged: for a start
        that writes no upgrade (an upgrade checks what it touched, before it commits)."""

    @abstractmethod
    def check_legacy(self, script: ScriptDirectory) -> None:
        """Refuse tables made before migrations unless they are exactly the baseline schema."""

    @abstractmethod
    def prepare_to_write(self, state: FileState, label: str) -> tuple[Path | None, str]:
        """Before the first write: free space, a backup; returns (backup path, note)."""

    @abstractmethod
    def transaction(
        self, from_revision: str | None, *, command_line: bool = False, read_only: bool = False
    ) -> contextlib.AbstractContextManager[Connection]:
        """The migration's one transaction: all of it commits when the block ends, or none."""

    def after_commit(self) -> None:  # noqa: B027 (most backends need nothing here)
        """Anything to leave the database in after a commit that wrote (nothing by default)."""


class Backend(ABC):
    """One kind of database: a SQLite file, a PostgreSQL server."""

    #: How a refusal says the database was left as it was.
    unchanged: str

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: How many backups made before upgrades to keep, where the backend makes them.
        self.keep_backups = KEEP_BACKUPS

    @property
    @abstractmethod
    def display(self) -> str:
        """The database as messages name it (a path, or a URL with the password masked)."""

    def check_location(self) -> None:  # noqa: B027 (a server has no location to check)
        """Refuse, before locking, a place that can never hold the database."""

    @abstractmethod
    def session(
        self, timeout: float, *, command_line: bool = False, writes: bool = True
    ) -> contextlib.AbstractContextManager[Session]:
        """The lock, held for the whole turn."""

    def record_schema(self, connection: Connection) -> None:  # noqa: B027 (optional)
        """Last, before a commit that wrote: note the schema just verified, so a later start
        can tell cheaply whether it was changed outside the migrations (nothing by default:
        a server keeps no such cookie)."""

    def integrity_problems(self, connection: Connection) -> list[str]:
        """Damage found, before commit, in what the open transaction touched (none by
        default: a server checks its own pages)."""
        return []

    def check_whole(self) -> IntegrityReport:
        """Every page checked, writing nothing: the check that runs after start."""
        return IntegrityReport(
            "not checked", self.display, ("a database server checks its own pages",)
        )

    @abstractmethod
    def foreign_key_violations(
        self, connection: Connection, *, everything: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows pointing at missing rows, in what the open transaction touched and the
        tables that point into it, or in ``everything``: (table, rowid, parent) each."""

    @abstractmethod
    def promised_schema(self, connection: Connection, revision: str) -> Snapshot:
        """The schema ``revision`` promises, as this kind of database stores it."""

    @abstractmethod
    def live_schema(self, connection: Connection) -> Snapshot:
        """The schema as it is, in the open transaction."""


def backend_for(engine: Engine) -> Backend:
    """The backend of ``engine``'s kind of database."""
    dialect = engine.dialect.name
    for name in (f"{dialect}_{engine.dialect.driver}", dialect):
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        backend: Backend = module.Backend(engine)
        return backend
    raise ValueError(f"no migration backend for {dialect} databases")
