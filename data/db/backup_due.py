"""The not-due check an app makes at every start and close, kept apart from the backups.

Imported alone when nothing is due (``data.db.session.backup_if_due``): it reads the small
record beside the database and answers, without importing ``data.db.backups`` (whose
threads, copies and verifications a start without a due backup never needs) nor opening the
database. Any doubt answers "maybe due": ``data.db.backups`` decides, under its lock.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.db.outcome import BackupCallback, BackupReport

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger("data.db.backups")

SECOND_PLACE_ENV = "INKLINK_BACKUP_DIR"
RECORD_SUFFIX = ".backups.json"  # data.migration.backup.RECORD_SUFFIX, without importing it
DEFAULT_EVERY_SECONDS = 8 * 3600.0  # data.migration.schedule.DEFAULT_POLICY.every_hours
PENDING = "unverified"  # data.migration.scheduled_backup.PENDING


def second_place(given: str | os.PathLike[str] | None) -> Path | None:
    """The second place: ``given``, else ``INKLINK_BACKUP_DIR``; None when neither is set."""
    raw = os.fspath(given) if given is not None else os.environ.get(SECOND_PLACE_ENV, "")
    raw = raw.strip()
    if not raw:
        return None
    try:
        return Path(raw).expanduser().absolute()
    except (RuntimeError, OSError):  # "~someone/..." of no user here, or no current folder:
        return Path(raw)  # a folder not found, a warning later


def copies_path(engine: Engine | None, db_path: Path) -> Path:
    """The name a database's copies and record go by: the file itself, or for a server
    ``server-<database>.db`` in the data folder (the copies are portable SQLite files)."""
    if engine is None or engine.dialect.name == "sqlite":
        return db_path
    return db_path.parent / f"server-{engine.url.database or 'default'}.db"


def not_due(record_file: Path, now: float, every: float, place: Path | None) -> bool:
    """The cheap check: the record's newest verified scheduled copy is recent (and in the
    second place when one is set). Any doubt answers False: the slow path decides."""
    try:
        record = json.loads(record_file.read_bytes())
        newest: dict[str, Any] | None = None
        for entry in record["copies"]:
            if entry.get("kind") == PENDING:
                return False  # a copy left unverified: the slow path verifies it
            if (
                entry.get("kind") == "scheduled"
                and entry.get("verified")
                and (newest is None or entry["seq"] > newest["seq"])
            ):
                newest = entry
        if newest is None:
            return False
        # The record writes ISO times with their UTC offset (data.migration.schedule.iso).
        last = dt.datetime.fromisoformat(newest.get("checked_at") or newest["made_at"])
        if not 0 <= now - last.timestamp() < every:
            return False
        if place is not None:
            mirrored = newest.get("second_place") or {}
            return bool(mirrored.get("folder") == str(place))
        return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def report_if_not_due(
    db_path: str | os.PathLike[str],
    *,
    engine: Engine | None,
    second_place_given: str | os.PathLike[str] | None,
    every_seconds: float | None,
    now: float,
    on_done: BackupCallback | None,
) -> BackupReport | None:
    """The report of a call with nothing due (``on_done`` called with it), or None: maybe
    due, for ``data.db.backups.backup_if_due`` to decide."""
    try:
        copies = copies_path(engine, Path(db_path).absolute())
    except OSError:  # a relative path and no current folder: the slow path says so
        return None
    every = DEFAULT_EVERY_SECONDS if every_seconds is None else every_seconds
    record = copies.with_name(copies.name + RECORD_SUFFIX)
    if not not_due(record, now, every, second_place(second_place_given)):
        return None
    return done(BackupReport(str(copies), due=False), on_done)


def done(report: BackupReport, on_done: BackupCallback | None) -> BackupReport:
    """``on_done(report)``, whose failure is logged, never the backup's."""
    if on_done is not None:
        try:
            on_done(report)
        except Exception:  # the app's callback: logged, never the backup's failure
            log.exception("the on_done callback of a backup of %s failed", report.database)
    return report
