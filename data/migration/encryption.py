"""Encrypt a studio's file, change its key, or make a plain copy for support.

Every conversion follows the runner's rules: the migration lock, the file classified first
(a damaged file or a wrong key is refused, byte for byte unchanged), and the database's own
write lock held from the copy to the replacement, so no window commits in between. The copy
is made with SQLCipher's ``sqlcipher_export`` into a new owner-only file beside the
database and verified against the original (integrity, schema, every table's row count and
content, per-client totals) before it replaces it. The key goes to the keyring before any
file depends on it. After encrypting, nothing readable is left behind: the plain file's
blocks, its ``-wal`` and every plain backup of it are overwritten with zeros, then removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.db import keys
from data.db.errors import (
    ADVICE_KEY,
    UNCHANGED,
    DatabaseKeyError,
    DataLayerError,
    NotADatabaseError,
    NotEnoughDiskSpaceError,
    UnexpectedDatabaseError,
)
from data.db.file_modes import create_private_file
from data.migration import raw_sqlite
from data.migration.backup import (
    BACKUP,
    REPLACED,
    _read_record,
    _sync_folder,
    _write_record,
    backup_database,
    backup_folder,
)
from data.migration.file_lock import LOCK_TIMEOUT_SECONDS, migration_lock
from data.migration.sqlite_file import check_location, inspect_sqlite_file, side_files
from data.migration.state import FileState

log = logging.getLogger(__name__)

# The copy and the original side by side, and a margin.
DISK_SPACE_FACTOR = 2
DISK_SPACE_MARGIN = 1024 * 1024


@dataclass
class KeyChange:
    """What ``encrypt`` or ``rekey`` did; ``recovery_key`` is to be shown once, written down."""

    database: Path
    action: str
    recovery_key: str | None = field(default=None, repr=False)
    #: "keyring" (kept there under the database's identity) or "environment" (INKLINK_DB_KEY).
    key_kept_in: str = "keyring"
    #: The new key in hex when INKLINK_DB_KEY gave the old one: its holder must replace it.
    new_key_hex: str | None = field(default=None, repr=False)
    removed: list[Path] = field(default_factory=list)
    verified: dict[str, int] = field(default_factory=dict)
    #: The encrypted backup made right after the change and compared with the database.
    backup: Path | None = None
    note: str = ""


# --- verification ----------------------------------------------------------------------------


def _tables(connection: raw_sqlite.Connection) -> list[str]:
    return [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]


def _schema(connection: raw_sqlite.Connection) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in connection.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        )
    ]


def _schema_record(connection: raw_sqlite.Connection) -> object:
    """The runner's record of a verified schema (user_version equal to SQLite's schema
    cookie, see backends/sqlite.py), or the value found: a copy records its own cookie."""
    user_version, schema_version = connection.execute(
        "SELECT * FROM pragma_user_version, pragma_schema_version"
    ).fetchone()
    return "verified" if user_version == schema_version else user_version


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _content(connection: raw_sqlite.Connection, table: str) -> tuple[int, str]:
    """Row count and a hash of every row in rowid order (or all columns, WITHOUT ROWID)."""
    digest = hashlib.sha256()
    count = 0
    try:
        rows = connection.execute(f"SELECT * FROM {_quote(table)} ORDER BY rowid")
    except raw_sqlite.DRIVER_ERRORS:
        rows = connection.execute(f"SELECT * FROM {_quote(table)} ORDER BY 1")
    for row in rows:
        digest.update(repr(tuple(row)).encode())
        count += 1
    return count, digest.hexdigest()


# Per client: sessions with their prices and deposits, transactions of each kind with their
# amounts. The totals a studio would notice first, compared on their own.
_CLIENT_TOTALS = {
    "tattoo_sessions": "SELECT client_id, count(*), sum(price_cents), sum(deposit_cents) "
    "FROM tattoo_sessions GROUP BY client_id ORDER BY client_id",
    "transactions": "SELECT client_id, kind, count(*), sum(amount_cents) FROM transactions "
    "GROUP BY client_id, kind ORDER BY client_id, kind",
}


def compare(
    display: str,
    original: raw_sqlite.Connection,
    copy: raw_sqlite.Connection,
    *,
    schema_record: bool = True,
) -> dict[str, int]:
    """Refuse a copy that is not the original: integrity, schema, header's user_version,
    every table's rows (count and content) and the per-client totals. Returns row counts.

    ``schema_record=False`` for a copy made by the online backup API, which gives the copy
    a schema cookie of SQLite's choosing (so its next start verifies the schema again)."""
    problems: list[str] = []
    integrity = [str(row[0]) for row in copy.execute("PRAGMA integrity_check")]
    if integrity != ["ok"]:
        problems.append("integrity check: " + "; ".join(integrity[:3]))
    if _schema(original) != _schema(copy):
        problems.append("the schema differs")
    if schema_record and _schema_record(original) != _schema_record(copy):
        problems.append("the schema record (user_version) differs")
    counts: dict[str, int] = {}
    for table in _tables(original):
        before, after = _content(original, table), _content(copy, table)
        counts[table] = before[0]
        if before[0] != after[0]:
            problems.append(f"{table}: {before[0]} rows, the copy has {after[0]}")
        elif before[1] != after[1]:
            problems.append(f"{table}: the rows' content differs")
    present = set(_tables(original))
    for table, sql in _CLIENT_TOTALS.items():
        if table in present and (original.execute(sql).fetchall() != copy.execute(sql).fetchall()):
            problems.append(f"per-client totals of {table} differ")
    if problems:
        raise UnexpectedDatabaseError(
            display,
            "the converted copy did not match the database (" + "; ".join(problems) + ")",
            "Nothing was replaced: the database is as it was. Report this message to support.",
        )
    return counts


# --- leaving nothing readable behind ---------------------------------------------------------


def _zero_fill(descriptor: int) -> None:
    """Overwrite an open file's bytes with zeros and flush them (its inode, whatever its name)."""
    size = os.fstat(descriptor).st_size
    os.lseek(descriptor, 0, os.SEEK_SET)
    block = b"\0" * (1 << 20)
    left = size
    while left > 0:
        left -= os.write(descriptor, block[: min(left, len(block))])
    os.fsync(descriptor)


def shred(path: Path) -> bool:
    """Zero a regular file, then remove it; True when there was one. (On an SSD, a
    copy-on-write file system or a snapshot the old blocks may survive: README.)"""
    try:
        descriptor = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0) | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        _zero_fill(descriptor)
    finally:
        os.close(descriptor)
    path.unlink()
    return True


def _plain_copies(db_path: Path) -> tuple[list[Path], list[Path]]:
    """The plain backups and replaced copies recorded for ``db_path``, and the folders kept
    before a recovery (byte copies of the plain file and its side files)."""
    folder = backup_folder(db_path)
    files = []
    for entry in _read_record(db_path)["copies"]:
        if entry.get("kind") in (BACKUP, REPLACED):
            path = folder / str(entry.get("file"))
            if path.is_file() and not keys.looks_encrypted(path):
                files.append(path)
    folders = sorted(folder.glob(f"{db_path.stem}-before-recovery-*")) if folder.is_dir() else []
    return files, [f for f in folders if f.is_dir()]


def remove_plain_copies(db_path: Path) -> list[Path]:
    """Zero and remove every plain copy of ``db_path`` the data layer made; drop them from
    the record. Returns what was removed."""
    files, folders = _plain_copies(db_path)
    removed: list[Path] = []
    for path in files:
        if shred(path):
            removed.append(path)
    for kept in folders:
        for inner in sorted(kept.iterdir()):
            if inner.is_file() and not inner.is_symlink():
                shred(inner)
        shutil.rmtree(kept, ignore_errors=True)
        removed.append(kept)
    if files:
        gone = {p.name for p in files}
        record = _read_record(db_path, to_write=True)
        record["copies"] = [e for e in record["copies"] if e.get("file") not in gone]
        _write_record(db_path, record)
    if removed:
        _sync_folder(backup_folder(db_path))
    return removed


# --- the conversions -------------------------------------------------------------------------


def _check_space(display: str, db_path: Path, size: int) -> None:
    needed = size * DISK_SPACE_FACTOR + DISK_SPACE_MARGIN
    free = shutil.disk_usage(db_path.parent).free
    if free < needed:
        raise NotEnoughDiskSpaceError(
            display,
            f"converting it needs about {needed // 1024} KiB free and only {free // 1024} KiB "
            "are free",
            "Free some disk space, then run it again. " + UNCHANGED,
        )


@contextlib.contextmanager
def _write_locked(db_path: Path, key: keys.DatabaseKey | None) -> Iterator[raw_sqlite.Connection]:
    """The database's own write lock, held for the block: no window commits meanwhile."""
    connection = raw_sqlite.connect(db_path, key=key.pragma() if key else None, cipher=True)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        finally:
            connection.execute("ROLLBACK")
    finally:
        connection.close()


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _export_verified(
    db_path: Path,
    source: raw_sqlite.Connection,
    source_key: keys.DatabaseKey | None,
    target: Path,
    target_key: str | None,
    opened_with: str | None,
) -> dict[str, int]:
    """Export ``db_path`` into the new file ``target`` and compare the two; flushed to disk."""
    display = str(db_path)
    if not create_private_file(target):
        raise UnexpectedDatabaseError(
            display, f"{target} is in the way", f"Move it away, then run it again. {UNCHANGED}"
        )
    try:
        raw_sqlite.export(db_path, source_key.pragma() if source_key else None, target, target_key)
        copy = raw_sqlite.connect(target, key=opened_with, cipher=True)
        try:
            counts = compare(display, source, copy)
        finally:
            copy.close()
        descriptor = os.open(target, os.O_RDWR | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except BaseException:
        for leftover in (target, *side_files(target)):
            leftover.unlink(missing_ok=True)
        raise
    return counts


def _classified(db_path: Path, *, must_exist: str) -> FileState:
    """Refuse what the runner refuses; what the file is (``encrypted``, ``versions``)."""
    check_location(db_path)
    state = inspect_sqlite_file(db_path)
    if not state.exists or state.size == 0:
        raise NotADatabaseError(str(db_path), "there is no database at this path", must_exist)
    return state


def _verified_backup(
    db_path: Path, key: keys.DatabaseKey, state: FileState
) -> tuple[Path | None, str]:
    """A backup of the database just encrypted or rekeyed, through ``backup_database`` (under
    its key, recorded, rotated), compared with the database like the converted copy was.

    ``encrypt`` removes every plain backup, and ``rekey`` rewrites every page (and changes
    the older backups' keys in place, which may fail for some): without this there would be
    no backup known to restore the database as it is now until the next upgrade. A failure
    does not undo the change (the database is sound and its key kept): it is returned as a
    note for the command to show (naming a copy that did not match). Returns (the backup,
    "") or (None, the note); callers hold the migration lock.
    """
    display = str(db_path)
    label = state.versions[0] if len(state.versions) == 1 else "none"
    made: Path | None = None
    try:
        # No connection of this process is open on the database while backup_database
        # reads its header (closing that descriptor would drop such a connection's locks).
        made = backup_database(db_path, label=label, key=key)
        copy = raw_sqlite.connect(made, key=key.pragma(), read_only=True)
        try:
            with _write_locked(db_path, key) as source:
                compare(display, source, copy, schema_record=False)
        finally:
            copy.close()
    except Exception as exc:
        if not isinstance(exc, (DataLayerError, *raw_sqlite.IO_ERRORS)):
            raise
        log.warning("%s: no verified backup after the key change (%s)", display, exc)
        where = f" ({made} does not match it)" if made is not None else ""
        return None, (
            f"No verified backup could be made after it{where}: {exc}. Back the database "
            "up before its next change."
        )
    return made, ""


def encrypt_database(db_path: Path, *, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> KeyChange:
    """Encrypt the plain database at ``db_path`` in place, as one verified replacement.

    The key is ``INKLINK_DB_KEY`` when set (the keyring is not touched), else a new random
    key put in the OS keyring under the database's identity and read back before anything
    depends on it; then the recovery key is returned, to be shown once. Already encrypted:
    nothing is done.
    """
    display = str(db_path)
    with migration_lock(db_path, lock_timeout):
        state = _classified(db_path, must_exist="Check DB_PATH. " + UNCHANGED)
        if state.encrypted:
            return KeyChange(db_path, "already encrypted", note="Nothing was changed.")
        _check_space(display, db_path, db_path.stat().st_size)
        given = keys.key_from_environment(display)
        key = given or keys.new_key()
        salt = keys.new_salt()
        if given is None:
            keys.store_in_keyring(display, salt, key)  # first: never a key only in a file
            keys.remember(db_path, salt, key)
        target = db_path.with_name(f"{db_path.name}.encrypting-{_stamp()}")
        with _write_locked(db_path, None) as source:
            counts = _export_verified(db_path, source, None, target, key.pragma(salt), key.pragma())
            # Kept open across the rename: the plain blocks are zeroed through it afterwards.
            old = os.open(db_path, os.O_RDWR | getattr(os, "O_BINARY", 0))
            try:
                os.replace(target, db_path)
                _sync_folder(db_path.parent)
            except BaseException:
                os.close(old)
                raise
        try:
            _zero_fill(old)
        finally:
            os.close(old)
        # Whatever the plain file left beside it (closing its last connection removes them).
        wal, shm, journal = side_files(db_path)
        removed = [side for side in (wal, journal) if shred(side)]
        shm.unlink(missing_ok=True)  # an index, no rows
        removed += remove_plain_copies(db_path)
        backup, note = _verified_backup(db_path, key, state)
    log.info("encrypted %s (%d tables verified)", db_path, len(counts))
    return KeyChange(
        db_path,
        "encrypted",
        recovery_key=None if given else key.recovery_key(),
        key_kept_in="environment" if given else "keyring",
        removed=removed,
        verified=counts,
        backup=backup,
        note=note,
    )


def rekey_database(
    db_path: Path,
    *,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    announce: Callable[[KeyChange], None] | None = None,
) -> KeyChange:
    """Give the encrypted database at ``db_path`` a new random key (``PRAGMA rekey``, one
    transaction: a crash leaves the old key or the new one, never half of each).

    The new key replaces the old in the keyring, and its recovery key is returned. When
    ``INKLINK_DB_KEY`` gave the old key, the keyring is left alone and the new key is
    returned in hex for its holder to set. The recorded backups get the new key too.

    Nothing can lose the new key: it goes to the keyring first under a pending entry (the
    next open that the old key fails promotes it), and ``announce`` is given the change
    (the recovery key, and the new hex key for INKLINK_DB_KEY) before the file changes.
    """
    display = str(db_path)
    with migration_lock(db_path, lock_timeout):
        state = _classified(db_path, must_exist="Check DB_PATH. " + UNCHANGED)
        if not state.encrypted:
            raise DatabaseKeyError(
                display,
                "it is not encrypted, so it has no key to change",
                "Encrypt it first with `python -m data.db encrypt`. " + UNCHANGED,
            )
        old = keys.key_for(db_path)
        from_environment = keys.key_from_environment(display) is not None
        new = keys.new_key()
        salt = keys.salt_of(db_path)
        change = KeyChange(
            db_path,
            "rekeyed",
            recovery_key=new.recovery_key(),
            key_kept_in="environment" if from_environment else "keyring",
            new_key_hex=new.hex() if from_environment else None,
        )
        if not from_environment:
            keys.store_in_keyring(display, salt, new, pending=True)
        if announce is not None:
            announce(change)
        connection = raw_sqlite.connect(db_path, key=old.pragma())
        try:
            # The old key opens it (checked on this first read), then the change.
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            connection.execute(f'PRAGMA rekey = "{new.pragma()}"')  # its own transaction
        finally:
            connection.close()
        check = raw_sqlite.connect(db_path, key=new.pragma())
        try:
            if [str(r[0]) for r in check.execute("PRAGMA quick_check")] != ["ok"]:
                raise UnexpectedDatabaseError(
                    display, "after the key change it does not pass its check", ADVICE_KEY
                )
        finally:
            check.close()
        if not from_environment:
            keys.store_in_keyring(display, salt, new)
            keys.forget_in_keyring(salt, pending=True)
        keys.remember(db_path, salt, new)
        kept_old_key = _rekey_backups(db_path, old, new)
        change.backup, note = _verified_backup(db_path, new, state)
        change.note = " ".join(text for text in (kept_old_key, note) if text)
    log.info("changed the key of %s", db_path)
    return change


def _rekey_backups(db_path: Path, old: keys.DatabaseKey, new: keys.DatabaseKey) -> str:
    """Give every recorded encrypted copy the new key; a copy that cannot be changed keeps
    the old one, and the note says which (the old recovery key still opens it)."""
    folder = backup_folder(db_path)
    failed = []
    for entry in _read_record(db_path)["copies"]:
        path = folder / str(entry.get("file"))
        if not path.is_file() or not keys.looks_encrypted(path):
            continue
        try:
            connection = raw_sqlite.connect(path, key=old.pragma())
            try:
                connection.execute(f'PRAGMA rekey = "{new.pragma()}"')
            finally:
                connection.close()
        except raw_sqlite.DRIVER_ERRORS as exc:
            log.warning("backup %s keeps its old key (%s)", path, exc)
            failed.append(path.name)
    if not failed:
        return ""
    return "These backups keep the old key (its recovery key still opens them): " + ", ".join(
        failed
    )


def decrypt_copy(
    db_path: Path, target: Path | None = None, *, lock_timeout: float = LOCK_TIMEOUT_SECONDS
) -> Path:
    """A plain, verified copy of the encrypted database, for support; the database stays as
    it is. ``target`` must not exist (default: ``<name>-plain-<time>.db`` beside it)."""
    target = target or db_path.with_name(f"{db_path.stem}-plain-{_stamp()}.db")
    with migration_lock(db_path, lock_timeout):
        key = _encrypted_key(db_path)
        with _write_locked(db_path, key) as source:
            _export_verified(db_path, source, key, target, None, None)
    return target


def decrypt_in_place(db_path: Path, *, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> Path:
    """Replace the encrypted database by its verified plain copy, as one replacement under
    the locks (only when a person asked: the command line asks first). The keyring entry
    stays: the backups made so far are still encrypted with it."""
    target = db_path.with_name(f"{db_path.name}.decrypting-{_stamp()}")
    with migration_lock(db_path, lock_timeout):
        key = _encrypted_key(db_path)
        with _write_locked(db_path, key) as source:
            _export_verified(db_path, source, key, target, None, None)
            os.replace(target, db_path)
            _sync_folder(db_path.parent)
        for side in side_files(db_path):
            side.unlink(missing_ok=True)
    return db_path


def _encrypted_key(db_path: Path) -> keys.DatabaseKey:
    display = str(db_path)
    if not _classified(db_path, must_exist="Check DB_PATH. " + UNCHANGED).encrypted:
        raise DatabaseKeyError(
            display, "it is not encrypted", "Copy the file itself for support. " + UNCHANGED
        )
    return keys.key_for(db_path)


def unlock(db_path: Path, recovery_key: str) -> None:
    """Put the key a recovery key (or 64 hex digits) stands for back in the keyring, once it
    is proven to open the database. Nothing in the file is written."""
    display = str(db_path)
    key = keys.parse_any_key(recovery_key)
    if key is None:
        raise DatabaseKeyError(
            display,
            "that is not a recovery key (56 letters and digits in groups of four; a "
            "character may be mistyped)",
            "Check it against what was written down and enter it again. " + UNCHANGED,
        )
    check_location(db_path)
    if not keys.looks_encrypted(db_path):
        raise DatabaseKeyError(display, "it is not encrypted", "It needs no key. " + UNCHANGED)
    try:
        inspect_sqlite_file(db_path, key=key)
    except DatabaseKeyError as exc:
        raise DatabaseKeyError(
            display,
            "that recovery key does not open it (it belongs to another database, or the key "
            "was changed since it was written down)",
            "Try the recovery key shown when this database was encrypted or its key last "
            "changed, or contact support. " + UNCHANGED,
        ) from exc
    salt = keys.salt_of(db_path)
    keys.store_in_keyring(display, salt, key)
    keys.remember(db_path, salt, key)


__all__ = [
    "KeyChange",
    "compare",
    "decrypt_copy",
    "decrypt_in_place",
    "encrypt_database",
    "rekey_database",
    "remove_plain_copies",
    "shred",
    "unlock",
]
