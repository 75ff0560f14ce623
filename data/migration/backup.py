"""Consistent copies of the database through SQLite's online backup API, and restoring one.

What the data layer made is written down in a record beside the database
(``<name>.backups.json``, e.g. ``inklink.db.backups.json``): each copy's file name, when it was
made (UTC), the revision, its size and a fingerprint of the source file. Listing and rotation
trust the record, never file names or modification times: a file in ``backups/`` that the
record does not name is never listed nor deleted.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import time
from collections.abc import Callable
from glob import escape as glob_escape
from pathlib import Path
from types import EllipsisType
from typing import Any

from data.db import keys
from data.db.errors import (
    ADVICE_UPDATE_APP,
    UNCHANGED,
    BackupError,
    DatabaseBusyError,
    DatabaseNewerThanAppError,
    DataLayerError,
)
from data.db.file_modes import create_private_file, make_private_folder
from data.migration import raw_sqlite
from data.migration.file_lock import LOCK_TIMEOUT_SECONDS, migration_lock
from data.migration.sqlite_file import check_location, inspect_sqlite_file
from data.migration.verified_copy import write_json

log = logging.getLogger(__name__)

BACKUP_FOLDER = "backups"
KEEP_BACKUPS = 5
RECORD_SUFFIX = ".backups.json"
RECORD_FORMAT = 1
# A copy made before an upgrade, listed and rotated; a database a restore replaced, kept
# (never listed, never rotated).
BACKUP, REPLACED = "backup", "replaced"
# A file written this recently cannot be told unchanged by its modification time: the
# clock that stamps files ticks in milliseconds (2 s on FAT), so a second write within the
# same tick would leave the stamp as it was. Such a fingerprint is not recorded.
SETTLE_SECONDS = 2.0

Fingerprint = dict[str, Any]


def backup_folder(db_path: Path) -> Path:
    """Where the backups of ``db_path`` are kept: beside it, in the data root."""
    return db_path.parent / BACKUP_FOLDER


def record_path(db_path: Path) -> Path:
    """The record of the copies made of ``db_path``: beside it, one per database."""
    return db_path.with_name(db_path.name + RECORD_SUFFIX)


# --- the record ------------------------------------------------------------------------------


def _empty_record(db_path: Path) -> dict[str, Any]:
    return {"format": RECORD_FORMAT, "database": db_path.name, "next_seq": 1, "copies": []}


def _read_record(db_path: Path, *, to_write: bool = False) -> dict[str, Any]:
    """The record, or an empty one. A damaged record is never trusted (nothing it names is
    listed or deleted); before a new one replaces it, it is kept aside, never lost."""
    path = record_path(db_path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("copies"), list):
            raise ValueError("not a record of backups")
        if not isinstance(record.get("next_seq"), int):
            raise ValueError("no sequence number")
        return record
    except FileNotFoundError:
        return _empty_record(db_path)
    except (OSError, ValueError) as exc:
        log.warning("the backup record %s cannot be read (%s)", path, exc)
        if to_write:
            kept = path.with_name(f"{path.name}.damaged-{_stamp()}")
            os.replace(path, kept)
            log.warning("kept the unreadable backup record as %s", kept)
        return _empty_record(db_path)


def _write_record(db_path: Path, record: dict[str, Any]) -> None:
    """Write the record whole or not at all (``write_json``), its folder flushed after."""
    path = record_path(db_path)
    write_json(path, record)
    _sync_folder(path.parent)


def _recorded(db_path: Path, kind: str) -> list[dict[str, Any]]:
    """The record's entries of ``kind`` whose file is still there as made, newest first.

    Ordered by the sequence in which they were made, which is the order of their recorded
    ``made_at`` unless the clock was moved back meanwhile: then the copy made last still
    comes first (a wrong clock never keeps a stale copy on top).
    """
    folder = backup_folder(db_path)
    found = []
    for entry in _read_record(db_path)["copies"]:
        if entry.get("kind") != kind:
            continue
        try:
            if (folder / entry["file"]).stat().st_size != entry["size"]:
                continue  # another file now bears the name: not what was made
        except (OSError, KeyError, TypeError):
            continue
        found.append(entry)
    return sorted(found, key=lambda entry: int(entry.get("seq", 0)), reverse=True)


def list_backups(db_path: Path) -> list[Path]:
    """The backups the data layer made of ``db_path`` (before upgrades), newest first."""
    folder = backup_folder(db_path)
    return [folder / str(entry["file"]) for entry in _recorded(db_path, BACKUP)]


def recorded_backups(db_path: Path) -> list[dict[str, Any]]:
    """The record's entries for ``list_backups(db_path)``, newest first: ``file``, ``made_at``
    (UTC), ``revision``, ``size`` and whatever else was recorded."""
    return _recorded(db_path, BACKUP)


# --- the fingerprint -------------------------------------------------------------------------


def source_fingerprint(db_path: Path) -> Fingerprint | None:
    """What tells, without reading the database, that it is unchanged since a backup.

    The file's identity (device, inode), size, modification and status-change times and the
    header's file change counter, and the same for a ``-wal`` or ``-journal`` beside it
    holding frames (a WAL's header carries its checkpoint sequence and salts, which change
    when it is reused). Every commit changes one of these: in WAL mode it appends or rewrites
    WAL frames (and a checkpoint rewrites the file). None when any of them was written less
    than SETTLE_SECONDS ago, since a second write in the same clock tick would not show.
    """
    now_ns = time.time_ns()
    try:
        status = db_path.stat()
        header = raw_sqlite.read_header(db_path)
    except OSError:
        return None
    stamps = [status.st_mtime_ns]
    fingerprint: Fingerprint = {
        "device": status.st_dev,
        "inode": status.st_ino,
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
        "ctime_ns": status.st_ctime_ns,
        "change_counter": int.from_bytes(header[24:28], "big"),
    }
    for suffix in ("-wal", "-journal"):
        side = db_path.with_name(db_path.name + suffix)
        try:
            side_status = side.stat()
            side_header = raw_sqlite.read_header(side, 32) if side_status.st_size else b""
        except FileNotFoundError:
            continue
        except OSError:
            return None
        if not side_status.st_size:
            continue  # an empty WAL (a reader's) holds nothing
        stamps.append(side_status.st_mtime_ns)
        fingerprint[suffix[1:]] = {
            "inode": side_status.st_ino,
            "size": side_status.st_size,
            "mtime_ns": side_status.st_mtime_ns,
            "header": side_header.hex(),
        }
    if now_ns - max(stamps) < SETTLE_SECONDS * 1e9:
        return None
    return fingerprint


# --- making copies ---------------------------------------------------------------------------


def _copy(
    source: Path,
    target: Path,
    key: keys.DatabaseKey | None = None,
    *,
    take_the_lock: bool = True,
) -> None:
    """Copy ``source`` to the new file ``target``, consistently, owner-only from the start.

    The file's bytes are copied holding its write lock (``raw_sqlite.copy_file``); a caller
    that already holds that lock on another connection (a restore) passes
    ``take_the_lock=False`` and gets the backup API, which reads through the lock.

    Written under a temporary name, flushed to disk and renamed when complete: a crash
    mid-copy never leaves something that looks like a backup. An encrypted ``source`` (its
    ``key`` given) gives an encrypted copy under the same key and the same salt, so the
    copy has the database's identity: the keyring entry and the recovery key open it too
    (the bytes copied are the encrypted pages, salt included).
    """
    partial = target.with_name(target.name + ".partial")
    # Only this database's own leftovers: the folder may hold another database's copy in
    # progress (its lock is its own).
    for stale in target.parent.glob(f"{glob_escape(source.stem)}-*.partial*"):
        stale.unlink(missing_ok=True)
    source_key = key.pragma() if key else None
    try:
        if not create_private_file(partial):  # 0600 whatever the umask, before SQLite opens it
            raise FileExistsError(errno.EEXIST, "a partial backup is in the way", str(partial))
        if take_the_lock:
            if not raw_sqlite.copy_file(source, partial, key=source_key):
                log.info("%s: copied through the backup API (its WAL could not be emptied)", source)
        else:  # the caller holds the source's write lock on another connection
            src = raw_sqlite.connect(source, key=source_key)
            try:
                raw_sqlite.backup_into(src, partial, key=raw_sqlite.copy_key(source, source_key))
            finally:
                src.close()
        dst = raw_sqlite.connect(partial, key=source_key)
        try:
            # A copy left in WAL mode may not open read-only later: a backup is one file.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
        # Opened for writing: Windows flushes (FlushFileBuffers) only a writable handle.
        descriptor = os.open(partial, os.O_RDWR | getattr(os, "O_BINARY", 0))
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


def _add_to_record(db_path: Path, target: Path, kind: str, **fields: Any) -> dict[str, Any]:
    """Record a copy just renamed into place; returns its entry.

    Entries are dicts kept as read: fields a newer version adds (row counts, verification)
    survive this version's rewrites.
    """
    record = _read_record(db_path, to_write=True)
    entry: dict[str, Any] = {
        "file": target.name,
        "kind": kind,
        "seq": record["next_seq"],
        "made_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "size": target.stat().st_size,
        **fields,
    }
    record["next_seq"] += 1
    record["copies"].append(entry)
    _write_record(db_path, record)
    return entry


def _rotate(db_path: Path, keep: int, made: Path) -> None:
    """Delete recorded backups beyond the newest ``keep``; nothing the record does not name."""
    folder = backup_folder(db_path)
    doomed = {entry["file"] for entry in _recorded(db_path, BACKUP)[keep:]} - {made.name}
    if not doomed:
        return
    for name in sorted(doomed):
        (folder / name).unlink(missing_ok=True)
        log.info("removed old backup %s", folder / name)
    record = _read_record(db_path, to_write=True)
    record["copies"] = [
        entry
        for entry in record["copies"]
        if not (entry.get("kind") == BACKUP and entry.get("file") in doomed)
    ]
    _write_record(db_path, record)


def backup_database(
    db_path: Path,
    *,
    label: str,
    keep: int = KEEP_BACKUPS,
    key: keys.DatabaseKey | EllipsisType | None = ...,
) -> Path:
    """Copy ``db_path`` into the backup folder, record it, keep only the newest ``keep``.

    When the file is unchanged since the newest recorded backup (same fingerprint), that
    backup is returned and nothing is copied or rotated: a start that fails the same way
    every time never pushes older history out. ``label`` is the revision the file is at.
    An encrypted database is copied encrypted, under the same key and salt. ``key`` is its
    key, or None for a plain file; not given, it is found as ``restore_backup`` finds a
    backup's (which opens the file to read its header: a caller that keeps connections to
    it, like the runner, passes ``key``). Callers hold the migration lock (the runner
    does), so the record has one writer.
    """
    if key is ...:
        key = keys.key_for(db_path) if keys.looks_encrypted(db_path) else None
    folder = backup_folder(db_path)
    target = folder / f"{db_path.stem}-{_stamp()}-{label or 'none'}.db"
    fingerprint = source_fingerprint(db_path)  # before the copy: the copy holds at least this
    if fingerprint is not None:
        newest = _recorded(db_path, BACKUP)[:1]
        if newest and newest[0].get("source") == fingerprint:
            existing = folder / str(newest[0]["file"])
            log.info("%s is unchanged since its backup %s: not copied again", db_path, existing)
            return existing
    try:
        make_private_folder(folder)
        _copy(db_path, target, key)
        _add_to_record(db_path, target, BACKUP, revision=label or None, source=fingerprint)
        _rotate(db_path, keep, target)
    except raw_sqlite.IO_ERRORS as exc:
        raise BackupError(
            str(db_path),
            f"the backup before the upgrade could not be written to {target} ({exc})",
            "Free some disk space or fix the folder's permissions, then start again. "
            "The database was not changed.",
        ) from exc
    log.info("backed up %s to %s", db_path, target)
    return target


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


# --- restoring -------------------------------------------------------------------------------


def _use_wal(db_path: Path, timeout: float, key: str | None = None) -> None:
    """Put the file in the app's journal mode, so readers keep reading during the restore.

    In rollback-journal mode the restore's write lock would also shut out the reader that
    copies the current file aside. An app connection has already done this to any file it
    opened; a missing file is created empty here.
    """
    connection = raw_sqlite.connect(db_path, timeout=max(timeout, 0.1), key=key)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
    finally:
        connection.close()


def restore_backup(
    backup: Path,
    db_path: Path,
    *,
    lock_timeout: float | None = None,
    set_aside_unreadable: bool = False,
) -> Path:
    """Replace the database at ``db_path`` with ``backup``; return where the old one was kept.

    The backup is checked first (a SQLite file with tables that passes its integrity check).
    Then, holding the migration lock and the database's own write lock for the whole
    restore, the current database is copied aside into the backup folder (as
    ``<stem>-replaced-<stamp>.db``, recorded, never listed or rotated away) and the backup's
    pages are written over it in one transaction. No other window can commit in between, so
    the copy kept aside holds every commit made before the restore. Readers keep reading the
    old content until the restored one is committed. A window that starts a write meanwhile
    waits (its busy timeout) and then writes to the restored database. Both locks are waited
    for up to ``lock_timeout`` seconds in all, then DatabaseBusyError, with nothing changed.

    A current file SQLite cannot open is renamed aside instead, with its side files, byte
    for byte, and the restore writes a new file (put back as it was if the restore fails):
    at once when it has a SQLite header SQLite rejects; when it looks encrypted and no key
    at hand opens it (its header destroyed, or its key missing here: SQLite's locks cannot be
    taken on it, so no other window can be excluded) only with ``set_aside_unreadable``.
    """
    display = str(db_path)
    # An encrypted backup is restored into an encrypted database under the same key (a
    # backup has its database's salt, so the same keyring entry or INKLINK_DB_KEY opens both).
    encrypted = keys.looks_encrypted(backup)
    try:
        has_content = db_path.stat().st_size > 0
    except OSError:
        has_content = False  # check_location() below says what is wrong with the path
    unopened = _why_unopened(db_path) if has_content else None
    if unopened == NO_KEY_OPENS_IT and not set_aside_unreadable:
        raise BackupError(
            display,
            "it does not open: it looks encrypted and no key at hand opens it, or, if it was "
            "never encrypted, its first page is damaged",
            "If it is encrypted, give its key (INKLINK_DB_KEY, or `python -m data.db unlock` "
            "with the recovery key) and restore again. If it was never encrypted or its key is "
            "lost: close every InkLinkOS window, then restore with --set-aside-unreadable; "
            "the file is kept aside as it is, byte for byte. " + UNCHANGED,
        )
    if unopened is None and has_content and keys.looks_encrypted(db_path) != encrypted:
        raise BackupError(
            display,
            f"the backup {backup} is {'' if encrypted else 'not '}encrypted and the database "
            f"is {'not ' if encrypted else ''}encrypted: one cannot be written over the other",
            "Choose a backup made of this database as it is now. " + UNCHANGED,
        )
    try:
        key = keys.key_for(backup) if encrypted else None
        state = inspect_sqlite_file(backup, key=key)  # refuses an unsound database
    except DataLayerError as exc:
        # Said of the backup, with advice that fits a backup (not "restore a backup").
        raise BackupError(
            display,
            f"the backup {backup} cannot be restored: {exc.found}",
            "Choose another backup (list_backups() lists them, newest first). The database "
            "was not changed.",
        ) from exc
    if not state.exists or state.size == 0 or not state.tables:
        raise BackupError(
            display, f"the backup {backup} is empty or missing", "Choose another. " + UNCHANGED
        )
    _refuse_unknown_revision(backup, state.versions, display)
    check_location(db_path)
    timeout = LOCK_TIMEOUT_SECONDS if lock_timeout is None else lock_timeout
    deadline = time.monotonic() + timeout
    with migration_lock(db_path, timeout):
        folder = backup_folder(db_path)
        aside = _free_aside(folder / f"{db_path.stem}-replaced-{_stamp()}.db")
        moved: list[tuple[Path, Path]] = []
        try:
            try:
                make_private_folder(folder)
                if unopened is not None:
                    if _why_unopened(db_path) != unopened:
                        raise BackupError(
                            display,
                            "the database changed while the restore was starting",
                            "Close every InkLinkOS window and try again. " + UNCHANGED,
                        )
                    moved = _set_aside_as_is(db_path, aside)
                had_content = db_path.exists() and db_path.stat().st_size > 0

                def copy_aside() -> None:
                    # Holding the database's write lock: every commit so far is in the copy.
                    if had_content:
                        _copy(db_path, aside, key, take_the_lock=False)
                        _add_to_record(db_path, aside, REPLACED, restored_from=str(backup))

                create_private_file(db_path)  # a restore that creates the database: owner-only
                pragma = key.pragma() if key else None
                # A database the restore creates gets the backup's salt: the same identity.
                _use_wal(
                    db_path,
                    deadline - time.monotonic(),
                    key.pragma(keys.salt_of(backup)) if key and not had_content else pragma,
                )
                src = raw_sqlite.connect(backup, read_only=True, key=pragma)
                try:
                    dst = raw_sqlite.connect(db_path, key=pragma)
                    try:
                        raw_sqlite.overwrite_holding_the_lock(
                            src, dst, once_locked=copy_aside, deadline=deadline
                        )
                    finally:
                        dst.close()
                finally:
                    src.close()
            except BaseException:
                if moved:  # the file that did not open goes back, as it was
                    _put_back(db_path, moved)
                    moved = []
                raise
            if moved:
                _add_to_record(db_path, aside, REPLACED, restored_from=str(backup), opened=False)
                log.warning(
                    "%s did not open (%s); it is kept as it was at %s", db_path, unopened, aside
                )
        except raw_sqlite.WriteLockTimeoutError as exc:
            raise _busy(display, timeout) from exc
        except raw_sqlite.IO_ERRORS as exc:
            if raw_sqlite.is_busy(exc):
                raise _busy(display, timeout) from exc
            raise BackupError(
                display,
                f"restoring {backup} failed ({exc})",
                f"The database before the restore is kept at {aside} if that file exists; "
                "otherwise it is in place, as it was.",
            ) from exc
    log.info("restored %s from %s; the replaced database is at %s", db_path, backup, aside)
    return aside


NOT_A_DATABASE = "SQLite says it is not a database"
NO_KEY_OPENS_IT = "it looks encrypted and no key at hand opens it"
_SIDE_SUFFIXES = ("-wal", "-journal", "-shm")


def _why_unopened(db_path: Path) -> str | None:
    """Why SQLite does not open ``db_path`` as a database, or None when it does (or when
    what failed says nothing of the file: a lock, a permission; the restore says those). A
    damaged page deeper in does not matter here: the restore replaces every page."""
    looks_encrypted = keys.looks_encrypted(db_path)
    try:
        key = keys.key_for(db_path).pragma() if looks_encrypted else None
    except DataLayerError:
        return NO_KEY_OPENS_IT
    try:
        # Immutable: neither a lock nor a side file; a file that says it is in WAL mode
        # would otherwise get a -wal and -shm made beside it by this look.
        connection = raw_sqlite.connect(db_path, immutable=True, key=key)
    except raw_sqlite.IO_ERRORS:
        return None
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except raw_sqlite.IO_ERRORS as exc:
        if not raw_sqlite.is_not_a_database(exc):
            return None
        return NO_KEY_OPENS_IT if looks_encrypted else NOT_A_DATABASE
    finally:
        connection.close()
    return None


def free_name(path: Path, suffix: str, in_use: Callable[[Path], bool]) -> Path:
    """``path``, or with ``-2``, ``-3``... before its ``suffix`` while ``in_use`` says so (a
    clock that stands still gives two copies one time): a kept file is never written over."""
    base = path.name.removesuffix(suffix)
    candidate, n = path, 1
    while in_use(candidate):
        n += 1
        candidate = path.with_name(f"{base}-{n}{suffix}")
    return candidate


def _free_aside(aside: Path) -> Path:
    """``aside``, or a numbered name when it or one of its side files exists."""
    return free_name(
        aside,
        ".db",
        lambda c: any(c.with_name(c.name + x).exists() for x in ("", *_SIDE_SUFFIXES)),
    )


def _set_aside_as_is(db_path: Path, aside: Path) -> list[tuple[Path, Path]]:
    """Rename ``db_path`` and its side files to ``aside`` (the database first); returns the
    moves made, for ``_put_back``. A move that fails puts back those already made."""
    moved: list[tuple[Path, Path]] = []
    try:
        for suffix in ("", *_SIDE_SUFFIXES):
            here = db_path.with_name(db_path.name + suffix)
            there = aside.with_name(aside.name + suffix)
            if suffix and not here.exists():
                continue
            os.replace(here, there)
            moved.append((here, there))
        _sync_folder(aside.parent)
        _sync_folder(db_path.parent)
    except BaseException:
        for here, there in reversed(moved):  # the files not moved yet never left
            os.replace(there, here)
        raise
    return moved


def _put_back(db_path: Path, moved: list[tuple[Path, Path]]) -> None:
    """Undo ``_set_aside_as_is`` after a failed restore: every file at ``db_path``'s names
    is the restore's (all the old ones were moved), so those go, and the old ones return."""
    if not moved:
        return
    for suffix in ("", *_SIDE_SUFFIXES):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
    for here, there in reversed(moved):
        os.replace(there, here)
    _sync_folder(db_path.parent)


def _refuse_unknown_revision(backup: Path, versions: tuple[str, ...], display: str) -> None:
    """A backup made by a newer version of the app, at a revision this one does not know,
    would be put in place and then refused at start: refused before anything is replaced."""
    from data.migration.scripts import known_revision_check, script_directory

    if not versions:  # from before migrations: adopted at start, as any such file
        return
    if len(versions) == 1 and known_revision_check(script_directory())(versions[0]):
        return
    raise DatabaseNewerThanAppError(
        display,
        f"the backup {backup} is at revision {', '.join(versions)}, which this version of "
        "InkLinkOS does not know: it was made by a newer version",
        ADVICE_UPDATE_APP + " " + UNCHANGED,
    )


def _busy(display: str, timeout: float) -> DatabaseBusyError:
    return DatabaseBusyError(
        display,
        f"another window kept writing to it for more than {timeout:.0f} seconds, so the "
        "backup could not be restored",
        "Close other InkLinkOS windows and tools using it, then restore again. " + UNCHANGED,
    )


def keep_before_recovery(db_path: Path) -> Path:
    """Copy the database and the side files SQLite replays, byte for byte, before it opens it.

    SQLite replays a ``-wal`` or hot ``-journal`` into the database on first open, whatever
    database it came from. This copy, taken first, is the way back when a side file did not
    belong: ``backups/<stem>-before-recovery-<stamp>/`` (owner-only, flushed), never rotated.
    """
    folder = backup_folder(db_path) / f"{db_path.stem}-before-recovery-{_stamp()}"
    make_private_folder(backup_folder(db_path))
    make_private_folder(folder)
    # Not the -shm: it is an index of the -wal, rebuilt from it when missing, and reading it
    # is no use here. The database is read through this process's kept descriptor (see
    # raw_sqlite.read_at): this process may hold SQLite connections to it.
    suffixes = (raw_sqlite.WAL_SUFFIX, raw_sqlite.JOURNAL_SUFFIX)
    for source in (db_path, *(raw_sqlite.side_file(db_path, s) for s in suffixes)):
        if not source.is_file():
            continue
        target = folder / source.name
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        raw_sqlite.copy_bytes(source, target)
        descriptor = os.open(target, os.O_RDWR | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    _sync_folder(folder)
    log.warning("kept %s and its side files as they were in %s, before recovery", db_path, folder)
    return folder
