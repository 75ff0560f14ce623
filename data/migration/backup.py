"""Consistent copies of the database through SQLite's online backup API, and restoring one."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import re
from pathlib import Path

from data.db.errors import BackupError, DataLayerError
from data.db.file_modes import create_private_file, make_private_folder
from data.migration import raw_sqlite
from data.migration.file_lock import LOCK_TIMEOUT_SECONDS, migration_lock
from data.migration.sqlite_file import check_location, inspect_sqlite_file

log = logging.getLogger(__name__)

BACKUP_FOLDER = "backups"
KEEP_BACKUPS = 5


def backup_folder(db_path: Path) -> Path:
    """Where the backups of ``db_path`` are kept: beside it, in the data root."""
    return db_path.parent / BACKUP_FOLDER


def _backup_pattern(db_path: Path) -> re.Pattern[str]:
    # <stem>-<UTC stamp>-<label>.db, and nothing else: a neighbouring database's backups
    # (inklink-old-...) and the copies restore keeps aside are never listed or rotated.
    return re.compile(rf"{re.escape(db_path.stem)}-\d{{8}}T\d{{12}}Z-[\w.-]+\.db")


def list_backups(db_path: Path) -> list[Path]:
    """The backups made before upgrades of ``db_path``, newest first."""
    folder = backup_folder(db_path)
    if not folder.is_dir():
        return []
    pattern = _backup_pattern(db_path)
    return sorted((path for path in folder.iterdir() if pattern.fullmatch(path.name)), reverse=True)


def _copy(source: Path, target: Path) -> None:
    """Copy ``source`` to the new file ``target``, consistently, owner-only from the start.

    Written under a temporary name, flushed to disk and renamed when complete: a crash
    mid-copy never leaves something that looks like a backup.
    """
    partial = target.with_name(target.name + ".partial")
    for stale in target.parent.glob("*.partial*"):
        stale.unlink(missing_ok=True)
    try:
        if not create_private_file(partial):  # 0600 whatever the umask, before SQLite opens it
            raise FileExistsError(errno.EEXIST, "a partial backup is in the way", str(partial))
        src = raw_sqlite.connect(source)
        try:
            dst = raw_sqlite.connect(partial)
            try:
                raw_sqlite.backup(src, dst)
                # A copy left in WAL mode may not open read-only later: a backup is one file.
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        descriptor = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(partial, target)
        _sync_folder(target.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries, so a rename survives a power cut (a no-op on Windows)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def backup_database(db_path: Path, *, label: str, keep: int = KEEP_BACKUPS) -> Path:
    """Copy ``db_path`` into the backup folder and keep only the newest ``keep`` copies."""
    folder = backup_folder(db_path)
    target = folder / f"{db_path.stem}-{_stamp()}-{label or 'none'}.db"
    try:
        make_private_folder(folder)
        _copy(db_path, target)
    except raw_sqlite.IO_ERRORS as exc:
        raise BackupError(
            str(db_path),
            f"the backup before the upgrade could not be written to {target} ({exc})",
            "Free some disk space or fix the folder's permissions, then start again. "
            "The database was not changed.",
        ) from exc
    for old in list_backups(db_path)[keep:]:
        if old != target:
            old.unlink(missing_ok=True)
            log.info("removed old backup %s", old)
    log.info("backed up %s to %s", db_path, target)
    return target


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def restore_backup(backup: Path, db_path: Path, *, lock_timeout: float | None = None) -> Path:
    """Replace the database at ``db_path`` with ``backup``; return where the old one was kept.

    The backup is checked first (a SQLite file that passes its integrity check); the
    current database is copied aside into the backup folder (as ``<stem>-replaced-<stamp>.db``,
    never rotated away) before it is overwritten, and the whole restore holds the same lock
    as a migration.
    """
    display = str(db_path)
    try:
        state = inspect_sqlite_file(backup)  # refuses a file that is not a sound SQLite database
    except DataLayerError as exc:
        # Said of the backup, with advice that fits a backup (not "restore a backup").
        raise BackupError(
            display,
            f"the backup {backup} cannot be restored: {exc.found}",
            "Choose another backup (list_backups() lists them, newest first). The database "
            "was not changed.",
        ) from exc
    if not state.exists or state.size == 0:
        raise BackupError(display, f"the backup {backup} is empty or missing", "Choose another.")
    check_location(db_path)
    with migration_lock(db_path, LOCK_TIMEOUT_SECONDS if lock_timeout is None else lock_timeout):
        aside = backup_folder(db_path) / f"{db_path.stem}-replaced-{_stamp()}.db"
        try:
            make_private_folder(backup_folder(db_path))
            if db_path.exists() and db_path.stat().st_size > 0:
                _copy(db_path, aside)
            create_private_file(db_path)  # a restore that creates the database: owner-only
            src = raw_sqlite.connect(backup, read_only=True)
            try:
                dst = raw_sqlite.connect(db_path)
                try:
                    raw_sqlite.backup(src, dst)
                finally:
                    dst.close()
            finally:
                src.close()
        except raw_sqlite.IO_ERRORS as exc:
            raise BackupError(
                display,
                f"restoring {backup} failed ({exc})",
                f"The database before the restore is kept at {aside} if that file exists.",
            ) from exc
    log.info("restored %s from %s; the replaced database is at %s", db_path, backup, aside)
    return aside
