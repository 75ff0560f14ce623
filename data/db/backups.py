"""Backups for the app and the ``backup``/``list-backups``/``restore`` commands.

``backup_if_due()`` is what the app calls at start and at close: when nothing is due it
reads one small JSON file (the record beside the database) and returns, without opening the
database or importing the migration engine. When one is due it returns once the copy is on
disk, under a name no listing takes for a backup; a daemon thread verifies it, and only
then records, mirrors and rotates (``on_done``, ``BackupReport.wait()``,
``wait_for_backups()`` at close). It never raises: what went wrong is in the report's
``warnings``, for the app to show.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.db.backup_due import copies_path, report_if_not_due
from data.db.backup_due import done as _done
from data.db.backup_due import second_place as _second_place
from data.db.errors import BackupError, DataLayerError
from data.db.outcome import BackupCallback, BackupReport

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from data.db.outcome import UpgradeOutcome
    from data.migration.schedule import BackupPolicy
    from data.migration.scheduled_backup import ListedBackup

log = logging.getLogger(__name__)

# The verifications this process has running: wait_for_backups() joins them.
_workers: set[threading.Thread] = set()
_workers_lock = threading.Lock()


def backup_if_due(
    db_path: str | os.PathLike[str],
    *,
    engine: Engine | None = None,
    second_place: str | os.PathLike[str] | None = None,
    policy: BackupPolicy | None = None,
    now: float | None = None,
    force: bool = False,
    wait: bool = False,
    on_done: BackupCallback | None = None,
) -> BackupReport:
    """Make a verified backup of the database when one is due (``force``: now, whatever).

    Returns once the copy is on disk (``report.pending``); a daemon thread then verifies it,
    and only a verified copy is recorded, copied to the second place and counted by
    retention. ``on_done(final_report)`` is called exactly once: from that thread when it
    ends, or before this returns when nothing was left to it; ``report.wait()`` returns the
    same final report; ``wait=True`` returns it (the verification in this thread). A copy
    whose process exits first stays unverified, never counted, until the next call.

    ``db_path`` is the SQLite file (for a server, ``engine`` is its engine and ``db_path``
    the default file's path, whose folder holds the copies). ``second_place`` defaults to
    ``INKLINK_BACKUP_DIR``; ``now`` to the system clock (``time.time()``). Never raises
    ``DataLayerError`` nor ``OSError``: problems are the report's ``warnings``.
    """
    if not force:
        not_due = report_if_not_due(
            db_path,
            engine=engine,
            second_place_given=second_place,
            every_seconds=policy.every_seconds if policy is not None else None,
            now=time.time() if now is None else now,
            on_done=on_done,
        )
        if not_due is not None:
            return not_due
    try:
        path = Path(db_path).absolute()
    except OSError as exc:  # a relative path and no current folder (it was deleted)
        return _done(_not_made(Path(db_path), exc), on_done)
    place = _second_place(second_place)
    copies = copies_path(engine, path)
    from data.migration.schedule import DEFAULT_POLICY

    try:
        report, finish = _make(path, copies, engine, place, policy or DEFAULT_POLICY, now, force)
    except Exception as exc:  # a backup never stops the app
        return _done(_not_made(copies, exc), on_done)
    if finish is None:
        return _done(report, on_done)
    if wait:
        return _done(_finished(report, finish), on_done)
    done = threading.Event()
    report.hand_over(done)

    def verify() -> None:
        try:
            final = _finished(report, finish)
            report.finish(final)
            _done(final, on_done)
        finally:
            with _workers_lock:
                _workers.discard(threading.current_thread())

    # A daemon: closing the app's window never waits on it (wait_for_backups() does); a
    # copy it leaves unverified is verified by the next call, and never counted before.
    worker = threading.Thread(target=verify, name="inklink-backup-verify", daemon=True)
    with _workers_lock:
        _workers.add(worker)
    worker.start()
    return report


def wait_for_backups(timeout: float | None = None) -> bool:
    """Wait for this process's backups being verified (call at close, before exiting);
    False when ``timeout`` passed first (what is left is verified by the next call)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _workers_lock:
        running = list(_workers)
    for worker in running:
        worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    with _workers_lock:
        return not any(w.is_alive() for w in running)


def _not_made(copies: Path, exc: Exception) -> BackupReport:
    report = BackupReport(str(copies), due=True)
    if isinstance(exc, (DataLayerError, OSError)):
        report.warn(str(exc))
        log.warning("no backup of %s was made: %s", copies, exc)
    else:
        report.warn(f"no backup was made: unexpected {type(exc).__name__}: {exc}")
        log.exception("no backup of %s was made", copies, exc_info=exc)
    return report


def _finished(report: BackupReport, finish: Callable[[BackupReport], BackupReport]) -> BackupReport:
    """The verification's final report; what goes wrong there is a warning in it."""
    try:
        return finish(report)
    except Exception as exc:
        final = BackupReport(report.database, report.due)
        final.made, final.unchanged, final.pending = report.made, report.unchanged, report.pending
        if isinstance(exc, DataLayerError):
            final.warn(str(exc))
            log.warning("backups of %s not verified: %s", report.database, exc)
        elif isinstance(exc, OSError):
            final.warn(f"{exc} (a copy not verified is not counted; the next backup verifies it)")
            log.warning("backups of %s not verified: %s", report.database, exc)
        else:
            final.warn(f"the backup was not verified: unexpected {type(exc).__name__}: {exc}")
            log.exception("backups of %s not verified", report.database, exc_info=exc)
        return final


def backup_now(db_path: str | os.PathLike[str], **options: Any) -> BackupReport:
    """A verified backup now (``backup_if_due(..., force=True)``)."""
    return backup_if_due(db_path, force=True, **options)


Finish = Callable[[BackupReport], BackupReport]


def _make(
    path: Path,
    copies: Path,
    engine: Engine | None,
    place: Path | None,
    policy: BackupPolicy,
    now: float | None,
    force: bool,
) -> tuple[BackupReport, Finish | None]:
    """The copy, on disk; and what verifies it (None when nothing is left to do)."""
    from data.migration.scheduled_backup import finish_backups, make_backup, sqlite_copier

    key = None
    if engine is not None and engine.dialect.name != "sqlite":
        copier = _server_copier(engine)
    else:
        if engine is not None and getattr(engine.pool, "checkedout", lambda: 0)():
            # Reading the file's header from Python (its key's salt) would drop the POSIX
            # locks the app's open connections hold on it; idle ones are closed first.
            report = BackupReport(str(path), due=True)
            report.warn(
                "the backup was put off: the database is in use. Call backup_if_due() at "
                "start or close, when no session is open."
            )
            return report, None
        if engine is not None:
            engine.dispose()  # idle pooled connections: none holds a lock while it is read
        from data.db import keys

        if not path.is_file():
            raise BackupError(
                str(path), "there is no database file to back up", "Start the app once."
            )
        from data.migration.sqlite_file import inspect_sqlite_file

        key = keys.key_for(path) if keys.looks_encrypted(path) else None
        # Refuses, with its own message, a file that is no database or whose key is wrong
        # (the whole-file check is the copy's, after it is written).
        inspect_sqlite_file(path, quick_check=False, key=key)
        copier = sqlite_copier(path, key)
    report = make_backup(
        copies,
        copier=copier,
        key=key,
        now=now,
        policy=policy,
        second_place=place,
        only_if_due=not force,
    )
    if not report.due and report.pending is None:
        return report, None

    def finish(started: BackupReport) -> BackupReport:
        return finish_backups(copies, started, key=key, policy=policy, second_place=place)

    return report, finish


def _server_copier(engine: Engine) -> Any:
    """A server's copy: a portable SQLite file at head, made by the server move's verified
    export (``data.db.move.export_database``), under a temporary name until it is whole."""
    from data.db.move import export_database

    def copy(target: Path) -> None:
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        export_database(engine, partial)
        os.replace(partial, target)

    return copy


def list_backups_everywhere(
    db_path: str | os.PathLike[str],
    *,
    engine: Engine | None = None,
    second_place: str | os.PathLike[str] | None = None,
) -> list[ListedBackup]:
    """Every backup beside the database and in the second place, newest first."""
    from data.migration.scheduled_backup import list_everywhere

    return list_everywhere(
        copies_path(engine, Path(db_path).absolute()), _second_place(second_place)
    )


def unverified_everywhere(
    db_path: str | os.PathLike[str], *, engine: Engine | None = None
) -> list[Path]:
    """Copies made and not verified yet (left by a process that exited, or being verified
    now): never listed as backups, never restored; the next backup call verifies them."""
    from data.migration.scheduled_backup import unverified_copies

    return unverified_copies(copies_path(engine, Path(db_path).absolute()))


class RestoreOutcome:
    """What a restore did: which backup, where the replaced file is kept, and the upgrade."""

    def __init__(
        self,
        restored: ListedBackup,
        database: str,
        kept_aside: Path | None,
        upgrade: UpgradeOutcome,
    ) -> None:
        self.restored = restored
        self.database = database
        self.kept_aside = kept_aside
        self.upgrade = upgrade

    def describe(self) -> str:
        lines = [
            f"Restored {self.database} from {self.restored.path} (made {self.restored.made_at})."
        ]
        if self.kept_aside is not None:
            lines.append(f"The database as it was is kept at {self.kept_aside}.")
        lines.append(self.upgrade.describe())
        return "\n".join(lines)


def restore_and_upgrade(
    choice: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    *,
    second_place: str | os.PathLike[str] | None = None,
    lock_timeout: float | None = None,
    set_aside_unreadable: bool = False,
) -> RestoreOutcome:
    """Restore the backup ``choice`` names (a path, a listed name, ``latest`` or a date),
    also when the database file is gone, then bring it to head with the runner.

    Raises DataLayerError (the database unchanged) when the backup is not listed, not what
    its manifest says, unsound, or encrypted without its key at hand; or when the current
    file looks encrypted and no key at hand opens it, unless ``set_aside_unreadable`` (it is
    then renamed aside as it is: the caller says no window has it open).
    """
    from data.migration.scheduled_backup import choose, restore_verified

    path = Path(db_path).absolute()
    chosen = choose(path, _second_place(second_place), os.fspath(choice))
    aside = restore_verified(
        chosen, path, lock_timeout=lock_timeout, set_aside_unreadable=set_aside_unreadable
    )
    upgrade = _bring_to_head(path)
    return RestoreOutcome(chosen, str(path), aside if aside.exists() else None, upgrade)


def _bring_to_head(path: Path) -> UpgradeOutcome:
    from sqlalchemy.engine import URL

    from data.db import keys
    from data.db.policy import apply_app_policy
    from data.migration.runner import ensure_current

    if keys.looks_encrypted(path):
        from data.db.cipher import cipher_url

        url = cipher_url(str(path))
    else:
        url = URL.create("sqlite", database=str(path))
    from sqlalchemy import create_engine

    engine = create_engine(url)
    apply_app_policy(engine)
    try:
        return ensure_current(engine)
    finally:
        engine.dispose()
