"""Consistent copies of the database through SQLite's online backup API, and restoring one."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
from pathlib import Path

from data.db.errors import BackupError
from data.db.sqlite_file import inspect_sqlite_file

log = logging.getLogger(__name__)

BACKUP_FOLDER = "backups"
KEEP_BACKUPS = 5


def backup_folder(db_path: Path) -> Path:
    """Where the backups of ``db_path`` are kept: beside it, in the data root."""
    return db_path.parent / BACKUP_FOLDER


def list_backups(db_path: Path) -> list[Path]:
    """The backups of ``db_path``, newest first."""
    folder = backup_folder(db_path)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{db_path.stem}-*.db"), reverse=True)


def _copy(source: Path, target: Path) -> None:
    """Copy ``source`` into the new file ``target`` (owner-only from the start), consistently."""
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # A copy left in WAL mode may not open read-only later; a backup is a plain file.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def backup_database(db_path: Path, *, label: str, keep: int = KEEP_BACKUPS) -> Path:
    """Copy ``db_path`` into the backup folder and keep only the newest ``keep`` copies."""
    folder = backup_folder(db_path)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{db_path.stem}-{stamp}-{label}.db"
    # Written under a temporary name and renamed when complete: a crash mid-copy never
    # leaves something that looks like a backup.
    partial = target.with_name(target.name + ".partial")
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        for stale in folder.glob(f"{db_path.stem}-*.db.partial"):
            stale.unlink(missing_ok=True)
        _copy(db_path, partial)
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(
            str(db_path),
            f"the backup before the upgrade could not be written to {target} ({exc})",
            "Free some disk space or fix the folder's permissions, then start again. "
            "The database was not changed.",
        ) from exc
    for old in list_backups(db_path)[keep:]:
        old.unlink(missing_ok=True)
        log.info("removed old backup %s", old)
    log.info("backed up %s to %s", db_path, target)
    return target


def restore_backup(backup: Path, db_path: Path, *, lock_timeout: float = 120.0) -> Path:
    """Replace the database at ``db_path`` with ``backup``; return where the old one was kept.

    The backup is checked first (a SQLite file that passes its integrity check); the
    current database is copied aside into the backup folder before it is overwritten, and
    the whole restore holds the same lock as a migration.
    """
    from data.db.runner import migration_lock

    display = str(db_path)
    inspect_sqlite_file(backup)  # refuses a file that is not a sound SQLite database
    if not backup.is_file() or backup.stat().st_size == 0:
        raise BackupError(
            display, f"the backup {backup} is empty or missing", "Choose another backup."
        )
    with migration_lock(db_path, lock_timeout):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = backup_folder(db_path) / f"{db_path.stem}-{stamp}-replaced.db"
        try:
            backup_folder(db_path).mkdir(mode=0o700, exist_ok=True)
            if db_path.exists() and db_path.stat().st_size > 0:
                _copy(db_path, aside)
            src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
            try:
                dst = sqlite3.connect(db_path, timeout=30)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
        except (OSError, sqlite3.Error) as exc:
            raise BackupError(
                display,
                f"restoring {backup} failed ({exc})",
                f"The database before the restore is kept at {aside} if it exists.",
            ) from exc
    log.info("restored %s from %s; the replaced database is at %s", db_path, backup, aside)
    return aside
