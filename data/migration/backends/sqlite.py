"""The runner's SQLite side (one studio, one file): a file lock, classification, backups.

The file is classified through a plain connection that sets nothing, so a refused file stays
byte-for-byte unchanged; the migration runs on its own engine under the migration policy
(foreign keys off, ``BEGIN IMMEDIATE``), in one transaction.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from data.db.errors import (
    ADVICE_RESTORE,
    ADVICE_RETRY,
    UNCHANGED,
    DatabaseBusyError,
    DatabaseCorruptError,
    DataLayerError,
    MigrationFailedError,
    NotEnoughDiskSpaceError,
    RevisionRecordError,
)
from data.db.file_modes import create_private_file, tighten
from data.db.head import RECORD_COMMAND, exported_schema, recorded_history
from data.db.keys import DatabaseKey
from data.db.outcome import IntegrityReport
from data.db.policy import create_migration_engine
from data.migration import backends, raw_sqlite
from data.migration.backup import (
    backup_database,
    backup_folder,
    keep_before_recovery,
)
from data.migration.file_lock import migration_lock
from data.migration.legacy import refuse_legacy_mismatch
from data.migration.prior_check import PriorStateCheck
from data.migration.scheduled_backup import last_good_copy, second_place_from_environment
from data.migration.schema import Snapshot, quote_identifier, sqlite_query, sqlite_snapshot
from data.migration.sqlite_file import (
    SCHEMA_TABLE,
    check_location,
    inspect_sqlite_file,
    integrity_problems,
    refuse_damaged,
    side_files,
    whole_file_problems,
)
from data.migration.state import VERSION_TABLE, FileState
from data.migration.touched import Scope, Tracker

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

log = logging.getLogger("data.migration.runner")

# A table rebuild needs two to three times the database's size; the backup needs one more.
DISK_SPACE_FACTOR = 4
DISK_SPACE_MARGIN = 1024 * 1024


def sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise ValueError(f"the runner needs a SQLite file, not {url.render_as_string()}")
    return Path(url.database)


def promised_schema(display: str, revision: str) -> Snapshot:
    """The SQLite schema ``revision`` promises: its exported ``schemas/<revision>.json``."""
    promised: Snapshot | None = exported_schema(revision)
    if promised is None:
        raise RevisionRecordError(
            display,
            f"this copy of InkLinkOS has no exported schema for revision {revision}",
            f"Nothing was changed. Developers: run `{RECORD_COMMAND}` and commit "
            "migrations/schemas/.",
        )
    return promised


def _migration_failed(display: str, from_revision: str | None, exc: Exception) -> DataLayerError:
    return MigrationFailedError(
        display,
        f"the upgrade from revision {from_revision or 'none'} failed: {exc}",
        "Nothing was changed: every step was rolled back. Report this message to support; "
        "the app can use this database again after an update that fixes the upgrade.",
    )


# Where the migration connection keeps its Tracker (``Connection.info``).
TRACKER_KEY = "inklink_touched"
# Where it keeps the check of the touched tables' state before the upgrade, in WAL mode.
CHECKER_KEY = "inklink_prior_check"
ROLLED_BACK_UNCHANGED = "The upgrade was rolled back: the database was not changed."


def _is_damage(exc: BaseException) -> bool:
    """SQLite found a damaged page (SQLITE_CORRUPT, "database disk image is malformed")."""
    original = getattr(exc, "orig", None) or exc
    name = getattr(original, "sqlite_errorname", "")
    return name.startswith("SQLITE_CORRUPT") or "malformed" in str(original)


@contextlib.contextmanager
def migration_transaction(
    url: URL,
    display: str,
    from_revision: str | None,
    *,
    command_line: bool = False,
    read_only: bool = False,
    key: DatabaseKey | None = None,
) -> Iterator[Connection]:
    """One connection, one ``BEGIN IMMEDIATE`` transaction: all of it commits, or none of it.

    ``key`` opens an encrypted file's reader beside the upgrade (``prior_check.py``).

    On the command line, Alembic's own errors (``alembic check`` finding differences, an
    unknown revision argument) pass through: Alembic already says what to do. So does every
    error of a command that only reads (autogenerate, ``check``): it is the caller's own.
    """
    engine = create_migration_engine(url)
    try:
        with engine.connect() as connection:
            # Before the first statement is prepared: it names every table written.
            tracker = Tracker()
            tracker.install(connection.connection.driver_connection)
            connection.info[TRACKER_KEY] = tracker
            checker: PriorStateCheck | None = None
            try:
                with connection.begin():
                    tracker.start(sqlite_query(connection))
                    if not read_only and _in_wal_mode(connection):
                        checker = PriorStateCheck(
                            Path(str(url.database)), tracker.tables_before(), key=key
                        )
                        tracker.on_touch = checker.touch
                        connection.info[CHECKER_KEY] = checker
                    yield connection
            except DataLayerError:
                raise
            except Exception as exc:
                if _is_damage(exc):
                    raise DatabaseCorruptError(
                        display,
                        f"the file is damaged where the upgrade reads or writes it ({exc})",
                        ADVICE_RESTORE + " " + ROLLED_BACK_UNCHANGED,
                    ) from exc
                if isinstance(exc, OperationalError) and "locked" in str(exc):
                    raise DatabaseBusyError(
                        display,
                        "another program kept it locked for longer than the wait allowed",
                        ADVICE_RETRY + " Nothing was changed.",
                    ) from exc
                if read_only or (command_line and type(exc).__module__.startswith("alembic.")):
                    raise
                raise _migration_failed(display, from_revision, exc) from exc
            finally:
                if checker is not None:
                    checker.stop()
    finally:
        engine.dispose()


def _in_wal_mode(connection: Connection) -> bool:
    """Only in WAL mode does a reader see the state before the upgrade while it writes.

    Asked of the migration connection (an encrypted file's header cannot tell)."""
    mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    return str(mode).lower() == "wal"


def use_wal(db_path: Path, key: DatabaseKey | None = None) -> None:
    """Leave a file this runner wrote in the app's journal mode, so the next start is fast.

    The at-head fast path only opens files already in WAL mode (see fast_path.py); without
    this, the first start after ``create`` or ``alembic upgrade head`` would load Alembic.
    """
    try:
        connection = raw_sqlite.connect(db_path, timeout=2, key=key.pragma() if key else None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        finally:
            connection.close()
    except raw_sqlite.DRIVER_ERRORS as exc:
        # The work is committed: never fail for this. The app's engine switches the file
        # to WAL on its first connection anyway; only the next start's fast path is lost.
        log.warning("could not switch %s to WAL mode yet: %s", db_path, exc)


def check_disk_space(display: str, db_path: Path, size: int) -> None:
    needed = size * DISK_SPACE_FACTOR + DISK_SPACE_MARGIN
    free = shutil.disk_usage(db_path.parent).free
    if free < needed:
        raise NotEnoughDiskSpaceError(
            display,
            f"the upgrade needs about {needed // 1024} KiB free for a backup and table rebuilds, "
            f"and only {free // 1024} KiB are free",
            "Free some disk space, then start again. " + UNCHANGED,
        )


def owned_files(db_path: Path) -> list[Path]:
    """Every file the data layer keeps for ``db_path``: the database, its side files, the
    lock, the backups (and their folder); each must be owner-only."""
    folder = backup_folder(db_path)
    found = [db_path, *side_files(db_path), Path(str(db_path) + ".lock"), folder]
    with contextlib.suppress(OSError):
        found.extend(sorted(folder.iterdir()))
    return found


class FileSession(backends.Session):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.path = backend.path
        self.kept: Path | None = None

    def read_state(self) -> FileState:
        # A -wal or hot -journal nothing ties to this file is replayed into it by the first
        # open, whatever database it came from: keep everything as it is first.
        replayed = raw_sqlite.unvouched_side_files(self.path)
        if replayed:
            self.kept = keep_before_recovery(self.path)
            self.note = (
                f"SQLite found {', '.join(p.name for p in replayed)} beside the database "
                "(left by a crash, or copied there from elsewhere) and applied it; the "
                f"database as it was before, with its side files, is kept in {self.kept}. "
                "If clients or payments are missing, contact support before working on."
            )
        # An encrypted file's key is found by the classification itself (which also
        # finishes a key change a crash interrupted).
        return inspect_sqlite_file(self.path, quick_check=False)

    def refuse_damaged(self) -> None:
        refuse_damaged(self.path, self.backend.file_key())

    def check_legacy(self, script: ScriptDirectory) -> None:
        key = self.backend.file_key()
        connection = raw_sqlite.connect(self.path, key=key.pragma() if key else None)
        try:
            found = sqlite_snapshot(
                lambda sql: connection.execute(sql).fetchall(), exclude=frozenset({VERSION_TABLE})
            )
        finally:
            connection.close()
        display = self.backend.display
        expected = promised_schema(display, recorded_history().baseline)
        refuse_legacy_mismatch(display, found, expected, UNCHANGED)

    def prepare_to_write(self, state: FileState, label: str) -> tuple[Path | None, str]:
        if not state.user_tables:
            return None, ""
        check_disk_space(self.backend.display, self.path, state.size)
        backup = backup_database(
            self.path, label=label, keep=self.backend.keep_backups, key=self.backend.file_key()
        )
        return backup, ""

    def transaction(
        self, from_revision: str | None, *, command_line: bool = False, read_only: bool = False
    ) -> contextlib.AbstractContextManager[Connection]:
        if not read_only:
            # A new database is created here, owner-only, before SQLite would create it with
            # the umask's mode (its -wal and -shm then copy the database's mode).
            create_private_file(self.path)
        return migration_transaction(
            self.backend.engine.url,
            self.backend.display,
            from_revision,
            command_line=command_line,
            read_only=read_only,
            key=None if read_only else self.backend.file_key(),
        )

    def after_commit(self) -> None:
        use_wal(self.path, self.backend.file_key())
        tighten(owned_files(self.path))


class Backend(backends.Backend):
    """A SQLite file: the lock beside it, a backup in ``backups/`` before every upgrade."""

    unchanged = UNCHANGED

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.path = sqlite_path(engine.url)

    @property
    def display(self) -> str:
        return str(self.path)

    def file_key(self) -> DatabaseKey | None:
        """The key raw connections open the file with: none for a plain SQLite file."""
        return None

    def new_session(self) -> FileSession:
        return FileSession(self)

    def check_location(self) -> None:
        check_location(self.path)

    @contextlib.contextmanager
    def session(
        self, timeout: float, *, command_line: bool = False, writes: bool = True
    ) -> Iterator[backends.Session]:
        with migration_lock(self.path, timeout):
            # Under the lock, before anything else: whatever an older version, a deploy's
            # umask or a copy left readable by other accounts is made owner-only (and logged).
            tighten(owned_files(self.path))
            session = self.new_session()
            try:
                yield session
            except DataLayerError as exc:
                if session.kept is None or type(exc).__init__ is not DataLayerError.__init__:
                    raise
                # "The file was not changed" is no longer true: SQLite applied a side file.
                raise type(exc)(
                    exc.database,
                    exc.found,
                    exc.action.replace(UNCHANGED, "").strip()
                    + f" Before this, SQLite applied a side file found beside the database; "
                    f"the database as it was, with its side files, is kept in {session.kept}.",
                ) from exc

    def record_schema(self, connection: Connection) -> None:
        # SQLite bumps schema_version at every schema change; user_version is the
        # application's own header field (unused otherwise, and setting it, or switching the
        # journal mode, leaves schema_version alone). Recording one in the other, in the
        # transaction that changed the schema, lets every start compare them in one read.
        version = int(connection.exec_driver_sql("PRAGMA schema_version").scalar_one())
        connection.exec_driver_sql(f"PRAGMA user_version = {version}")

    def check_whole(self) -> IntegrityReport:
        try:
            key = self.file_key()
            problems = whole_file_problems(self.path, key=key)
        except DataLayerError as exc:  # an encrypted file's key is not to be had
            return IntegrityReport("not checked", self.display, (f"{exc.found}",))
        except raw_sqlite.IO_ERRORS as exc:
            return IntegrityReport("not checked", self.display, (f"it cannot be read: {exc}",))
        if not problems:
            return IntegrityReport("ok", self.display)
        log.error("%s is damaged: %s", self.display, "; ".join(problems[:3]))
        return IntegrityReport(
            "damaged",
            self.display,
            tuple(problems),
            last_good_copy(self.path, key, second_place_from_environment()),
        )

    def scope(self, connection: Connection, *, everything: bool = False) -> Scope:
        tracker = connection.info.get(TRACKER_KEY)
        if everything or not isinstance(tracker, Tracker):  # or a connection not ours
            return Tracker().scope(sqlite_query(connection))
        return tracker.scope(sqlite_query(connection))

    def integrity_problems(self, connection: Connection) -> list[str]:
        # In WAL mode, each touched table as it was before the upgrade, checked beside it by
        # a reader (prior_check.py): the pages the upgrade read or kept. A table the upgrade
        # made has no past; it, and every touched table of a file in another journal mode, is
        # checked through the open transaction, as it would be committed.
        scope = self.scope(connection)
        checker = connection.info.get(CHECKER_KEY)
        tracker = connection.info.get(TRACKER_KEY)
        driver: raw_sqlite.Connection = connection.connection.driver_connection  # type: ignore[assignment]
        if isinstance(checker, PriorStateCheck) and isinstance(tracker, Tracker):
            before = tracker.tables_before()
            problems = checker.finish(t for t in scope.integrity if t in before)
            now = [t for t in scope.integrity if t not in before]
        else:
            problems = integrity_problems(driver, SCHEMA_TABLE)
            now = scope.integrity
        for table in now:
            problems.extend(f"{table}: {problem}" for problem in integrity_problems(driver, table))
        return problems

    def foreign_key_violations(
        self, connection: Connection, *, everything: bool = False
    ) -> list[tuple[Any, ...]]:
        # Foreign keys are off while migrating: this is where they are checked, on every
        # table the upgrade touched and the children of those whose rows may have moved.
        found: list[tuple[Any, ...]] = []
        for table in self.scope(connection, everything=everything).foreign_keys:
            found.extend(
                tuple(row)
                for row in connection.exec_driver_sql(
                    f"PRAGMA foreign_key_check({quote_identifier(table)})"
                )
            )
        return found

    def promised_schema(self, connection: Connection, revision: str) -> Snapshot:
        return promised_schema(self.display, revision)

    def live_schema(self, connection: Connection) -> Snapshot:
        return sqlite_snapshot(sqlite_query(connection), exclude=frozenset({VERSION_TABLE}))
