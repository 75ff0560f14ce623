"""The one migration runner behind init_db() and the ``alembic`` command, on every database.

The policy, once, for anything that writes: take the lock, re-read the state under it,
refuse what must not be touched, prepare (free space and a backup for a file), migrate in
one transaction, verify against the schema the revision promises, commit. What differs
between a SQLite file and a PostgreSQL server is asked of a backend (``backends/``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table

from data.db.errors import (
    ADVICE_RESTORE,
    ADVICE_UPDATE_APP,
    DatabaseCorruptError,
    DatabaseNewerThanAppError,
    RevisionLintError,
    RevisionRecordError,
    SchemaDriftError,
    SchemaVerificationError,
)
from data.db.head import RecordedHistory, recorded_history
from data.db.outcome import IntegrityReport, ProgressCallback, RevisionProgress, UpgradeOutcome
from data.migration import guards
from data.migration.backends import Backend, Session, backend_for
from data.migration.backup import KEEP_BACKUPS
from data.migration.file_lock import LOCK_TIMEOUT_SECONDS, migration_lock
from data.migration.legacy import refuse_legacy_mismatch
from data.migration.schema import differences, extras
from data.migration.scripts import (
    alembic_config,
    known_revision_check,
    migrations_location,
    script_directory,
)
from data.migration.state import VERSION_TABLE, FileState

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

__all__ = [
    "LOCK_TIMEOUT_SECONDS",
    "ProgressCallback",
    "RevisionProgress",
    "alembic_config",
    "check_whole_database",
    "command_line_migration",
    "create_schema",
    "ensure_current",
    "known_revision_check",
    "migration_lock",
    "migrations_location",
    "plan_for",
    "refuse_drift",
    "refuse_legacy_mismatch",
    "require_recorded",
    "script_directory",
    "stamp_revision",
    "verify",
]

log = logging.getLogger(__name__)

ROLLED_BACK = "The upgrade was rolled back: nothing was changed. Report this message to support."

PlanKind = Literal["create", "current", "upgrade", "adopt"]


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


class StepClock:
    """Where an upgrade's time went, step by step, in ms (logged; the bench prints it)."""

    STEPS = ("lock", "classification", "backup", "migrate", "checks", "verify", "commit")

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.ms: dict[str, float] = dict.fromkeys(self.STEPS, 0.0)

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.ms[step] = self.ms.get(step, 0.0) + (now - self.last) * 1000
        self.last = now

    def log(self, display: str) -> None:
        shown = ", ".join(f"{step} {ms:.0f}" for step, ms in self.ms.items())
        log.info("%s: steps in ms: %s", display, shown, extra={"steps": dict(self.ms)})


# --- classification --------------------------------------------------------------------------


def plan_for(
    display: str,
    state: FileState,
    known: Callable[[str], bool],
    unchanged: str = "The file was not changed.",
) -> PlanKind:
    head = recorded_history().head
    if not state.user_tables and not state.versions:
        return "create"
    if not state.versions:  # tables, but no version recorded: made before migrations
        return "adopt"
    if len(state.versions) != 1:
        raise DatabaseNewerThanAppError(
            display,
            f"it records several revisions at once ({', '.join(state.versions)})",
            ADVICE_UPDATE_APP + " " + unchanged,
        )
    (version,) = state.versions
    if version == head:
        return "current"
    if not known(version):
        raise DatabaseNewerThanAppError(
            display,
            f"it is at revision {version}, which this version of InkLinkOS does not know: "
            "the app is older than the database",
            ADVICE_UPDATE_APP + " " + unchanged,
        )
    return "upgrade"


def refuse_unlinted(display: str, script: ScriptDirectory, from_revision: str | None) -> None:
    """Refuse before anything runs when a revision still to be applied fails the lint."""
    from data.migration.revision_lint import lint_files

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


# --- the migration transaction ---------------------------------------------------------------

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
    if guards.active_in_chain(recorded_history().revisions):
        guards.sync(connection)
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


def verify(
    backend: Backend,
    connection: Connection,
    *,
    expect: str | None,
    exact: bool = False,
    clock: StepClock | None = None,
    everything: bool = False,
) -> None:
    """Before commit: the version is ``expect``, foreign keys hold, and the schema is the
    one that revision promises (its exported schema; on a server, the chain replayed).

    Integrity and foreign keys are checked where the transaction wrote (and in the tables
    pointing into what it rewrote); with ``everything``, foreign keys in every table (a file
    adopted from before migrations was never checked by this code). Only what the promise
    declares must be there, unchanged; extra tables or columns are tolerated and logged.
    With ``exact`` (a database just made from the models) anything extra means the models
    lead the migrations.
    """
    display = backend.display
    versions = [
        row[0] for row in connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
    ]
    if versions != ([expect] if expect else []):
        raise SchemaVerificationError(
            display,
            f"after the upgrade it is at {versions or 'no revision'}, not at {expect}",
            ROLLED_BACK,
        )
    if clock is not None:
        clock.mark("verify")
    # Scoped to what the transaction touched: the whole file is checked after start. The
    # references first: the integrity of the touched tables may still be being checked
    # beside the upgrade meanwhile.
    broken = backend.foreign_key_violations(connection, everything=everything)
    damage = backend.integrity_problems(connection)
    if damage:
        raise DatabaseCorruptError(
            display,
            "the file is damaged where the upgrade wrote (SQLite integrity check: "
            + "; ".join(damage[:3])
            + ")",
            ADVICE_RESTORE + " The upgrade was rolled back: the database was not changed.",
        )
    if broken:
        sample = "; ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in broken[:5])
        raise SchemaVerificationError(
            display,
            f"the upgrade would leave {len(broken)} rows pointing at missing rows ({sample})",
            ROLLED_BACK,
        )
    if clock is not None:
        clock.mark("checks")
    if expect is None:
        return
    expected = backend.promised_schema(connection, expect)
    found = backend.live_schema(connection)
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


def refuse_drift(backend: Backend, connection: Connection, revision: str) -> None:
    """Refuse a database whose schema lacks or changed what ``revision`` promises.

    Run when the database may have been changed outside the migrations since the runner
    last committed (on SQLite, its schema cookie moved). Extra tables, columns or indexes
    are tolerated, as after an upgrade; anything promised that is missing or different is
    refused with the list, and nothing is written.
    """
    expected = backend.promised_schema(connection, revision)
    found = backend.live_schema(connection)
    problems = differences(found, expected, allow_extra=True)
    if problems:
        raise SchemaDriftError(
            backend.display,
            f"its schema was changed outside InkLinkOS's migrations and no longer has what "
            f"revision {revision} promises:\n  - " + "\n  - ".join(problems) + "\n",
            "The app will not use it until what is missing is back, because the rules the "
            "database no longer enforces may already be broken by saved rows. Contact support "
            "with this message (restoring a backup would lose what was saved since). "
            + backend.unchanged,
        )


def verify_unchanged_schema(
    backend: Backend, session: Session, state: FileState, revision: str
) -> None:
    """At head, when the schema may have changed since the last commit: verify it in full,
    then record it, so the next start is cheap again (a VACUUM, or a restore, moves SQLite's
    cookie without changing the schema). A file from an older version has no record yet:
    it is verified once, the same way.
    """
    if not state.schema_unverified:
        return
    with session.transaction(revision) as connection:
        refuse_drift(backend, connection, revision)
        backend.record_schema(connection)
    log.info("%s: schema verified against revision %s and recorded", backend.display, revision)


# --- after start: the whole file ------------------------------------------------------------


def check_whole_database(engine: Engine) -> IntegrityReport:
    """Every page of the database behind ``engine`` checked, writing nothing.

    The check an upgrade no longer makes on its critical path: on SQLite, ``PRAGMA
    quick_check`` over the whole file (about 10 ms per MB, through a reading connection that
    never holds up a save in WAL mode); damage comes back with the last backup that passes
    the same check. A server checks its own pages.
    """
    started = time.perf_counter()
    report = backend_for(engine).check_whole()
    report.seconds = time.perf_counter() - started
    return report


# --- the two entry points --------------------------------------------------------------------


def ensure_current(
    engine: Engine,
    progress: ProgressCallback | None = None,
    *,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    keep_backups: int = KEEP_BACKUPS,
) -> UpgradeOutcome:
    """Create or upgrade the database behind ``engine``; the slow path of init_db()."""
    clock = StepClock()
    backend = backend_for(engine)
    backend.keep_backups = keep_backups
    display = backend.display
    head = require_recorded(display).head
    backend.check_location()
    with backend.session(lock_timeout) as session:
        clock.mark("lock")
        # Re-read under the lock: another process may have done the work meanwhile.
        state = session.read_state()
        if not state.user_tables and not state.versions:
            with session.transaction(None) as connection:
                create_schema(connection)
                verify(backend, connection, expect=head, exact=True)
                backend.record_schema(connection)
            session.after_commit()
            log.info("created %s at revision %s", display, head)
            return UpgradeOutcome(
                "created", display, head, note=session.note, recovery_key=session.recovery_key
            )
        script = script_directory()
        plan = plan_for(display, state, known_revision_check(script), backend.unchanged)
        if plan != "upgrade":
            # Not an upgrade: nothing of this start will be checked before a commit, so
            # every page is checked now (a file made before migrations, a start the fast
            # path could not vouch for). An upgrade checks what it touches instead.
            session.refuse_damaged()
        if plan == "current":
            verify_unchanged_schema(backend, session, state, head)
            return UpgradeOutcome("current", display, head, head, note=session.note)
        if plan == "adopt":
            session.check_legacy(script)
        from_revision = state.versions[0] if state.versions else None
        start = from_revision or recorded_history().baseline
        refuse_unlinted(display, script, start)
        clock.mark("classification")
        backup, note = session.prepare_to_write(state, from_revision or "legacy")
        clock.mark("backup")
        from alembic import command  # only now: Alembic stays off the at-head path

        with session.transaction(from_revision) as connection:
            if plan == "adopt":
                stamp_revision(connection, start)
            config = alembic_config(connection)
            config.attributes["on_version_apply"] = progress_hook(script, start, progress)
            command.upgrade(config, "head")
            clock.mark("migrate")
            verify(backend, connection, expect=head, clock=clock, everything=plan == "adopt")
            backend.record_schema(connection)
            clock.mark("verify")
        session.after_commit()
        clock.mark("commit")
    clock.log(display)
    notes = " ".join(n for n in (session.note, note) if n)
    outcome = UpgradeOutcome(
        "adopted" if plan == "adopt" else "upgraded", display, head, from_revision, backup, notes
    )
    log.info("%s", outcome.describe())
    return outcome


@contextlib.contextmanager
def command_line_migration(
    engine: Engine,
    script: ScriptDirectory,
    destination: str | Literal[False] | None,
    *,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    show_recovery_key: Callable[[str], None] | None = None,
) -> Iterator[Connection]:
    """The connection ``env.py`` runs the ``alembic`` command in, under init_db()'s policy.

    ``destination`` is the revision an upgrade or downgrade goes to (``None`` for base), or
    ``False`` for commands that only read (``current``, ``check``, autogenerate).
    ``show_recovery_key`` is given the recovery key of a database this command created
    encrypted with a key it made (shown once; never logged).
    """
    backend = backend_for(engine)
    display = backend.display
    require_recorded(display)
    backend.check_location()
    read_only = destination is False
    with backend.session(lock_timeout, command_line=True, writes=not read_only) as session:
        state = session.read_state()
        plan = plan_for(display, state, known_revision_check(script), backend.unchanged)
        from_revision = state.versions[0] if state.versions else None
        if plan != "upgrade":
            session.refuse_damaged()  # as init_db(): an upgrade checks what it touches
        if plan == "adopt":
            session.check_legacy(script)
        if not read_only and (plan == "adopt" or destination != from_revision):
            session.prepare_to_write(state, from_revision or "legacy")
        with session.transaction(
            from_revision, command_line=True, read_only=read_only
        ) as connection:
            if plan == "adopt" and not read_only:
                stamp_revision(connection, recorded_history().baseline)
            if plan == "current" and state.schema_unverified and not read_only:
                refuse_drift(backend, connection, recorded_history().head)
            yield connection
            # Commands that only read (check, autogenerate) write nothing: nothing to verify.
            # What was written is verified against the schema its revision promises, never
            # against the models, which lead the migrations while a revision is written.
            if not read_only and connection.dialect.has_table(connection, VERSION_TABLE):
                versions = [
                    r[0]
                    for r in connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
                ]
                verify(
                    backend,
                    connection,
                    expect=versions[0] if versions else None,
                    everything=plan == "adopt",
                )
            if not read_only:
                backend.record_schema(connection)
        if not read_only:
            session.after_commit()
        if session.recovery_key is not None and show_recovery_key is not None:
            show_recovery_key(session.recovery_key)
