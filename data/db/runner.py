"""The one migration runner behind init_db() and ``alembic upgrade head``.

For anything that writes: take the lock beside the database, re-read its state, refuse what
must not be touched, check free space, back up, migrate in one transaction with foreign keys
off, verify, commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from filelock import FileLock, Timeout
from sqlalchemy import Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from data.db.backup import KEEP_BACKUPS, backup_database
from data.db.errors import (
    ADVICE_RETRY,
    ADVICE_UPDATE_APP,
    UNCHANGED,
    DatabaseBusyError,
    DatabaseNewerThanAppError,
    DatabaseNotWritableError,
    DataLayerError,
    LegacySchemaMismatchError,
    MigrationFailedError,
    NotEnoughDiskSpaceError,
    RevisionLintError,
    RevisionRecordError,
    SchemaVerificationError,
)
from data.db.head import (
    RECORD_COMMAND,
    RecordedHistory,
    exported_schema,
    migrations_dir,
    recorded_history,
)
from data.db.outcome import UpgradeOutcome
from data.db.policy import create_migration_engine
from data.db.schema import (
    Snapshot,
    differences,
    extras,
    sqlite_query,
    sqlite_snapshot,
)
from data.db.sqlite_file import VERSION_TABLE, FileState, check_location, inspect_sqlite_file

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

# How long a second window (or a deploy) waits for a running upgrade before giving up.
LOCK_TIMEOUT_SECONDS = float(os.environ.get("INKLINK_LOCK_TIMEOUT", "120"))
# A table rebuild needs two to three times the database's size; the backup needs one more.
DISK_SPACE_FACTOR = 4
DISK_SPACE_MARGIN = 1024 * 1024

ROLLED_BACK = "The upgrade was rolled back: nothing was changed. Report this message to support."

PlanKind = Literal["create", "current", "upgrade", "adopt"]


class RevisionProgress:
    """One revision applied, for a splash screen: ``number`` of ``total``."""

    __slots__ = ("description", "number", "revision", "total")

    def __init__(self, revision: str, description: str, number: int, total: int) -> None:
        self.revision = revision
        self.description = description
        self.number = number
        self.total = total

    def __repr__(self) -> str:
        return f"RevisionProgress({self.number}/{self.total} {self.revision}: {self.description})"


ProgressCallback = Callable[[RevisionProgress], None]


# --- Alembic, configured in code: no ini file ships with the app ---------------------------


def migrations_location() -> str:
    """The migration scripts: in the package when installed or frozen, else in the checkout."""
    return str(migrations_dir())


def require_recorded(display: str) -> RecordedHistory:
    """This code's recorded history, or a refusal when it disagrees with the revision files.

    Checked before anything is opened: with a stale record, "current" could be said of a
    database that is ahead, and a revision the record lacks would never be applied.
    """
    history = recorded_history()
    if history.problem is not None or not history.revisions:
        raise RevisionRecordError(
            display,
            f"this copy of InkLinkOS cannot tell its own head: {history.problem or 'no revisions'}",
            "Nothing was opened or changed. This is a build mistake: report it to the app's "
            "developers.",
        )
    return history


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` built in code, sharing ``connection`` with ``env.py``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_location())
    config.attributes["connection"] = connection
    return config


def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


# --- the lock --------------------------------------------------------------------------------


@contextlib.contextmanager
def migration_lock(db_path: Path, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """The inter-process lock beside the database: two app windows, or the app and a deploy."""
    lock_path = str(db_path) + ".lock"
    lock = FileLock(lock_path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise DatabaseBusyError(
            str(db_path),
            f"another process has been upgrading it for more than {timeout:.0f} seconds",
            "Wait for the other InkLinkOS window or update to finish. " + ADVICE_RETRY,
        ) from exc
    except OSError as exc:  # e.g. a lock file left by a deploy that ran as another user
        raise DatabaseNotWritableError(
            str(db_path),
            f"its lock file {lock_path} cannot be opened ({exc})",
            "Give this user write access to that file, or delete it while no InkLinkOS "
            "program or deploy is running. " + UNCHANGED,
        ) from exc
    try:
        yield
    finally:
        lock.release()


# --- classification --------------------------------------------------------------------------


def plan_for(display: str, state: FileState, known: Callable[[str], bool]) -> PlanKind:
    head = recorded_history().head
    if not state.user_tables and not state.versions:
        return "create"
    if not state.versions:  # tables, but no version recorded: made before migrations
        return "adopt"
    if len(state.versions) != 1:
        raise DatabaseNewerThanAppError(
            display,
            f"it records several revisions at once ({', '.join(state.versions)})",
            ADVICE_UPDATE_APP + " " + UNCHANGED,
        )
    (version,) = state.versions
    if version == head:
        return "current"
    if not known(version):
        raise DatabaseNewerThanAppError(
            display,
            f"it is at revision {version}, which this version of InkLinkOS does not know: "
            "the app is older than the database",
            ADVICE_UPDATE_APP + " " + UNCHANGED,
        )
    return "upgrade"


def known_revision_check(script: ScriptDirectory) -> Callable[[str], bool]:
    def known(revision: str) -> bool:
        try:
            return script.get_revision(revision) is not None
        except Exception:  # alembic raises several kinds for an unknown id
            return False

    return known


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


def refuse_legacy_mismatch(display: str, found: Snapshot, expected: Snapshot, kept: str) -> None:
    """Refuse tables made before migrations unless they are exactly the baseline schema."""
    problems = differences(found, expected)
    if problems:
        listing = "\n  - ".join(problems)
        raise LegacySchemaMismatchError(
            display,
            "its tables were not made by InkLinkOS's migrations and differ from the first "
            f"InkLinkOS schema:\n  - {listing}\n",
            kept + " Send this message to support; do not change the tables by hand.",
        )


def _check_legacy(display: str, db_path: Path) -> None:
    connection = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        found = sqlite_snapshot(
            lambda sql: connection.execute(sql).fetchall(), exclude=frozenset({VERSION_TABLE})
        )
    finally:
        connection.close()
    expected = promised_schema(display, recorded_history().baseline)
    refuse_legacy_mismatch(display, found, expected, UNCHANGED)


def _use_wal(db_path: Path) -> None:
    """Leave a file this runner wrote in the app's journal mode, so the next start is fast.

    The at-head fast path only opens files already in WAL mode (see fast_path.py); without
    this, the first start after ``create`` or ``alembic upgrade head`` would load Alembic.
    """
    try:
        connection = sqlite3.connect(db_path, timeout=2, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        finally:
            connection.close()
    except sqlite3.Error as exc:
        # The work is committed: never fail for this. The app's engine switches the file
        # to WAL on its first connection anyway; only the next start's fast path is lost.
        log.warning("could not switch %s to WAL mode yet: %s", db_path, exc)


def _check_disk_space(display: str, db_path: Path, size: int) -> None:
    needed = size * DISK_SPACE_FACTOR + DISK_SPACE_MARGIN
    free = shutil.disk_usage(db_path.parent).free
    if free < needed:
        raise NotEnoughDiskSpaceError(
            display,
            f"the upgrade needs about {needed // 1024} KiB free for a backup and table rebuilds, "
            f"and only {free // 1024} KiB are free",
            "Free some disk space, then start again. " + UNCHANGED,
        )


# --- the migration transaction ---------------------------------------------------------------


@contextlib.contextmanager
def _migration_transaction(
    url: URL,
    display: str,
    from_revision: str | None,
    *,
    command_line: bool = False,
    read_only: bool = False,
) -> Iterator[Connection]:
    """One connection, one ``BEGIN IMMEDIATE`` transaction: all of it commits, or none of it.

    On the command line, Alembic's own errors (``alembic check`` finding differences, an
    unknown revision argument) pass through: Alembic already says what to do. So does every
    error of a command that only reads (autogenerate, ``check``): it is the caller's own.
    """
    engine = create_migration_engine(url)
    try:
        with engine.connect() as connection:
            try:
                with connection.begin():
                    yield connection
            except DataLayerError:
                raise
            except OperationalError as exc:
                if "locked" not in str(exc):
                    raise _migration_failed(display, from_revision, exc) from exc
                raise DatabaseBusyError(
                    display,
                    "another program kept it locked for longer than the wait allowed",
                    ADVICE_RETRY + " Nothing was changed.",
                ) from exc
            except Exception as exc:
                if read_only or (command_line and type(exc).__module__.startswith("alembic.")):
                    raise
                raise _migration_failed(display, from_revision, exc) from exc
    finally:
        engine.dispose()


def _migration_failed(display: str, from_revision: str | None, exc: Exception) -> DataLayerError:
    return MigrationFailedError(
        display,
        f"the upgrade from revision {from_revision or 'none'} failed: {exc}",
        "Nothing was changed: every step was rolled back. Report this message to support; "
        "the app can use this database again after an update that fixes the upgrade.",
    )


_version_table = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def stamp_revision(connection: Connection, revision: str) -> None:
    """Record ``revision`` as Alembic would, without loading the scripts."""
    _version_table.create(connection, checkfirst=True)
    connection.execute(_version_table.delete())
    connection.execute(_version_table.insert().values(version_num=revision))


def create_schema(connection: Connection) -> None:
    """A new database: every table from the models and the head stamp, in one transaction."""
    from data.models import Base

    Base.metadata.create_all(connection)
    stamp_revision(connection, recorded_history().head)


def progress_hook(
    script: ScriptDirectory, from_revision: str | None, progress: ProgressCallback | None
) -> list[Callable[..., None]]:
    pending = list(script.iterate_revisions("heads", from_revision))
    total = len(pending)
    applied = [0]

    def on_version_apply(*, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        applied[0] += 1
        revision = str(step.up_revision_id)
        description = str(step.up_revision.doc or "")
        log.info("applied revision %s (%d of %d): %s", revision, applied[0], total, description)
        if progress is not None:
            progress(RevisionProgress(revision, description, applied[0], total))

    return [on_version_apply]


def refuse_unlinted(display: str, script: ScriptDirectory, from_revision: str | None) -> None:
    """Refuse before anything runs when a revision still to be applied fails the lint."""
    from data.db.revision_lint import lint_files

    pending = [Path(s.path) for s in script.iterate_revisions("heads", from_revision)]
    findings = lint_files(pending) if pending else []
    if findings:
        raise RevisionLintError(
            display,
            "a revision to be applied fails the migration lint:\n  - "
            + "\n  - ".join(str(finding) for finding in findings)
            + "\n",
            "Nothing was changed. Developers: fix the revision, or acknowledge a deliberate "
            "drop in its `acknowledged_drops` (README, 'Writing a migration').",
        )


def verify(
    connection: Connection, display: str, *, expect: str | None, exact: bool = False
) -> None:
    """Before commit: the version is ``expect``, foreign keys hold, and the schema is the
    one that revision promises (its exported schema; on a server, the chain replayed).

    Only what the promise declares must be there, unchanged; extra tables or columns are
    tolerated and logged. With ``exact`` (a database just made from the models) anything
    extra means the models lead the migrations.
    """
    versions = [
        row[0] for row in connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
    ]
    if versions != ([expect] if expect else []):
        raise SchemaVerificationError(
            display,
            f"after the upgrade it is at {versions or 'no revision'}, not at {expect}",
            ROLLED_BACK,
        )
    # PostgreSQL checks foreign keys on every statement; SQLite's are off while migrating.
    broken = (
        connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if connection.dialect.name == "sqlite"
        else []
    )
    if broken:
        sample = "; ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in broken[:5])
        raise SchemaVerificationError(
            display,
            f"the upgrade would leave {len(broken)} rows pointing at missing rows ({sample})",
            ROLLED_BACK,
        )
    if expect is None:
        return
    if connection.dialect.name == "postgresql":
        from data.db.pg_schema import pg_snapshot
        from data.db.server import promised_snapshot

        expected = promised_snapshot(connection, script_directory(), expect)
        found = pg_snapshot(connection, exclude=frozenset({VERSION_TABLE}))
    else:
        expected = promised_schema(display, expect)
        found = sqlite_snapshot(sqlite_query(connection), exclude=frozenset({VERSION_TABLE}))
    problems = differences(found, expected, allow_extra=not exact)
    if problems and exact:
        raise SchemaVerificationError(
            display,
            f"the models do not make the schema revision {expect} promises (the models and "
            "the migrations disagree):\n  - " + "\n  - ".join(problems) + "\n",
            "Nothing was created. Developers: write the revision for the model change "
            "(`alembic revision --autogenerate -m ...`, README 'Writing a migration').",
        )
    if problems:
        raise SchemaVerificationError(
            display,
            f"after the upgrade the schema is not the one revision {expect} promises:\n  - "
            + "\n  - ".join(problems),
            ROLLED_BACK,
        )
    for extra in extras(found, expected):
        log.info("%s has %s, which revision %s does not declare (kept)", display, extra, expect)


# --- the two entry points --------------------------------------------------------------------


def sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise ValueError(f"the runner needs a SQLite file, not {url.render_as_string()}")
    return Path(url.database)


def ensure_current(
    engine: Engine,
    progress: ProgressCallback | None = None,
    *,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    keep_backups: int = KEEP_BACKUPS,
) -> UpgradeOutcome:
    """Create or upgrade the database behind ``engine``; the slow path of init_db()."""
    if engine.dialect.name != "sqlite":
        from data.db.server import ensure_current_server

        return ensure_current_server(engine, progress, lock_timeout=lock_timeout)
    db_path = sqlite_path(engine.url)
    display = str(db_path)
    head = require_recorded(display).head
    check_location(db_path)
    with migration_lock(db_path, lock_timeout):
        # Re-read under the lock: another process may have done the work meanwhile.
        state = inspect_sqlite_file(db_path)
        if not state.user_tables and not state.versions:
            with _migration_transaction(engine.url, display, None) as connection:
                create_schema(connection)
                verify(connection, display, expect=head, exact=True)
            _use_wal(db_path)
            log.info("created %s at revision %s", display, head)
            return UpgradeOutcome("created", display, head)
        script = script_directory()
        plan = plan_for(display, state, known_revision_check(script))
        if plan == "current":
            return UpgradeOutcome("current", display, head, head)
        if plan == "adopt":
            _check_legacy(display, db_path)
        from_revision = state.versions[0] if state.versions else None
        refuse_unlinted(display, script, from_revision or recorded_history().baseline)
        _check_disk_space(display, db_path, state.size)
        backup = backup_database(db_path, label=from_revision or "legacy", keep=keep_backups)
        upgrade(engine.url, display, plan, from_revision, script, progress)
        _use_wal(db_path)
        outcome = UpgradeOutcome(
            "adopted" if plan == "adopt" else "upgraded",
            display,
            head,
            from_revision,
            backup,
        )
        log.info("%s", outcome.describe())
        return outcome


def upgrade(
    url: URL,
    display: str,
    plan: PlanKind,
    from_revision: str | None,
    script: ScriptDirectory,
    progress: ProgressCallback | None,
) -> None:
    """Adopt if needed, upgrade to head and verify, all in one transaction."""
    from alembic import command

    with _migration_transaction(url, display, from_revision) as connection:
        if plan == "adopt":
            from_revision = recorded_history().baseline
            stamp_revision(connection, from_revision)
        config = alembic_config(connection)
        config.attributes["on_version_apply"] = progress_hook(script, from_revision, progress)
        command.upgrade(config, "head")
        verify(connection, display, expect=recorded_history().head)


@contextlib.contextmanager
def command_line_migration(
    engine: Engine, script: ScriptDirectory, destination: str | Literal[False] | None
) -> Iterator[Connection]:
    """The connection ``env.py`` runs the ``alembic`` command in, under init_db()'s policy.

    ``destination`` is the revision an upgrade or downgrade goes to (``None`` for base), or
    ``False`` for commands that only read (``current``, ``check``, autogenerate).
    """
    if engine.dialect.name != "sqlite":
        from data.db.server import server_command_line_migration

        with server_command_line_migration(
            engine, script, writes=destination is not False
        ) as connection:
            yield connection
        return
    db_path = sqlite_path(engine.url)
    display = str(db_path)
    require_recorded(display)
    check_location(db_path)
    with migration_lock(db_path):
        state = inspect_sqlite_file(db_path)
        plan = plan_for(display, state, known_revision_check(script))
        from_revision = state.versions[0] if state.versions else None
        if plan == "adopt":
            _check_legacy(display, db_path)
        writes = destination is not False and (plan == "adopt" or destination != from_revision)
        if writes and state.user_tables:
            _check_disk_space(display, db_path, state.size)
            backup_database(db_path, label=from_revision or "legacy")
        with _migration_transaction(
            engine.url, display, from_revision, command_line=True, read_only=destination is False
        ) as connection:
            if plan == "adopt" and destination is not False:
                stamp_revision(connection, recorded_history().baseline)
            yield connection
            # Commands that only read (check, autogenerate) write nothing: nothing to verify.
            # What was written is verified against the schema its revision promises, never
            # against the models, which lead the migrations while a revision is written.
            if destination is not False and connection.dialect.has_table(connection, VERSION_TABLE):
                versions = [
                    r[0]
                    for r in connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
                ]
                verify(connection, display, expect=versions[0] if versions else None)
        if destination is not False:
            _use_wal(db_path)
