"""The one place that opens a plain SQLite connection outside SQLAlchemy.

Classification, backups, restores, the legacy check and the journal-mode switch all read or
copy the file through these functions, so every one of them opens it the same way (and an
encrypted file, later, with its key). A plain connection sets nothing: no PRAGMA, and
``isolation_level=None`` so the driver sends no BEGIN of its own.

An encrypted file is opened through ``sqlcipher3`` (SQLCipher, the same SQLite API) with its
key as the first statement; the plain driver stays ``sqlite3``. ``sqlcipher3`` is imported
only when an encrypted file is opened (it costs about 5 ms), and from then on its errors are
part of the tuples below. Both ends of a backup use the same driver.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import cast

# What callers catch from the driver: every error a plain connection can raise.
DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
# The same with the errors of the file system, for code that also opens, copies or renames.
IO_ERRORS: tuple[type[Exception], ...] = (OSError, *DRIVER_ERRORS)
# The driver's "this file is not a database / is damaged" family, within DRIVER_ERRORS.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.DatabaseError,)
# "The database is locked" and the like, within DATABASE_ERRORS.
OPERATIONAL_ERRORS: tuple[type[Exception], ...] = (sqlite3.OperationalError,)

Connection = sqlite3.Connection

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100
# Byte 18 of the header: 2 when the file is in WAL mode.
_WRITE_VERSION_OFFSET = 18
_WAL_FORMAT = 2


def connect(
    path: Path | str,
    *,
    timeout: float = 30.0,
    read_only: bool = False,
    key: str | None = None,
    cipher: bool = False,
    immutable: bool = False,
) -> Connection:
    """A plain connection to ``path``; read-only ones never create or change the file.

    A read-write open lets SQLite recover a hot journal left by a crash; nothing else is
    written until the caller writes. ``timeout`` is how long a statement waits for a lock.
    ``key`` (``x'<hex>'``, see ``data.db.keys``) opens an encrypted file; nothing checks it
    until the first read, which fails with "file is not a database" (``is_not_a_database``)
    when it is wrong. ``cipher`` opens a plain file through SQLCipher's SQLite too: two SQLite
    libraries must never hold the same file open in one process at once (closing one's file
    handle drops the other's POSIX locks), so a conversion opens every end with SQLCipher.
    """
    driver: ModuleType = sqlite3 if key is None and not cipher else cipher_driver()
    if read_only or immutable:
        # immutable: no lock taken and no side file read or made (a probe of the header).
        uri = Path(path).absolute().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
        connection = driver.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    else:
        connection = driver.connect(str(path), timeout=timeout, isolation_level=None)
    if key is not None:
        try:
            use_key(connection, key)
        except BaseException:
            connection.close()
            raise
    return cast(Connection, connection)


_KEY_PRAGMA = re.compile(r"x'(?:[0-9a-f]{64}|[0-9a-f]{96})'")


def use_key(connection: object, key: str) -> None:
    """Key a fresh SQLCipher connection: silence SQLCipher's own stderr log (a wrong key is
    reported by the data layer, for people), then ``PRAGMA key``."""
    if not _KEY_PRAGMA.fullmatch(key):
        raise ValueError("a raw key is x'<64 or 96 hex digits>'")
    execute = getattr(connection, "execute")  # noqa: B009 (either driver's connection)
    execute("PRAGMA cipher_log_level = NONE")
    execute(f'PRAGMA key = "{key}"')


def cipher_driver() -> ModuleType:
    """``sqlcipher3``, imported on first use; its errors join the tuples callers catch."""
    global DRIVER_ERRORS, IO_ERRORS, DATABASE_ERRORS, OPERATIONAL_ERRORS
    import sqlcipher3  # type: ignore[import-untyped]  # no stubs; used through the DB-API

    if sqlcipher3.Error not in DRIVER_ERRORS:
        DRIVER_ERRORS = (*DRIVER_ERRORS, sqlcipher3.Error)
        IO_ERRORS = (*IO_ERRORS, sqlcipher3.Error)
        DATABASE_ERRORS = (*DATABASE_ERRORS, sqlcipher3.DatabaseError)
        OPERATIONAL_ERRORS = (*OPERATIONAL_ERRORS, sqlcipher3.OperationalError)
    driver: ModuleType = sqlcipher3
    return driver


def is_not_a_database(exc: BaseException) -> bool:
    """SQLite's "file is not a database": a wrong key, a plain file read with a key, or no
    database at all (SQLCipher cannot tell them apart)."""
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB" or (
        isinstance(exc, DATABASE_ERRORS) and "file is not a database" in str(exc)
    )


def export(source: Path, source_key: str | None, target: Path, target_key: str | None) -> None:
    """Copy the database ``source`` into the new file ``target`` with SQLCipher's
    ``sqlcipher_export``, encrypting, decrypting or changing the key on the way.

    ``target`` must exist and be empty (made owner-only by the caller). The export copies
    the schema and every row but not the header's ``user_version`` (the runner's schema
    record): that is copied by hand. The target is left in the app's journal mode (WAL).
    """
    driver = cipher_driver()
    connection = driver.connect(str(source), isolation_level=None)
    try:
        if source_key is not None:
            use_key(connection, source_key)
        if target_key is not None and not _KEY_PRAGMA.fullmatch(target_key):
            raise ValueError("a raw key is x'<64 or 96 hex digits>'")
        user_version, schema_version = connection.execute(
            "SELECT * FROM pragma_user_version, pragma_schema_version"
        ).fetchone()
        # An empty KEY leaves the attached file plain; a raw key's quotes are its own.
        connection.execute(f'ATTACH DATABASE ? AS export KEY "{target_key or ""}"', (str(target),))
        try:
            connection.execute("SELECT sqlcipher_export('export')")
            if user_version == schema_version:
                # The runner's record that the schema was verified holds for the copy: record
                # the copy's own schema cookie, so its next start stays on the fast path.
                (user_version,) = connection.execute("PRAGMA export.schema_version").fetchone()
            connection.execute(f"PRAGMA export.user_version = {int(user_version)}")
        finally:
            connection.execute("DETACH DATABASE export")
    finally:
        connection.close()
    written = connect(target, key=target_key, cipher=True)
    try:
        written.execute("PRAGMA journal_mode = WAL")
    finally:
        written.close()


def backup(source: Connection, target: Connection) -> None:
    """Copy ``source`` into ``target`` page by page, consistently (SQLite's online backup API)."""
    source.backup(target)


# How long a backup waits for another window's save before it reads a snapshot instead
# (the backup API): a save takes milliseconds, and the snapshot copy is correct, only slower.
COPY_LOCK_WAIT_SECONDS = 1.0


def copy_file(source_path: Path, target_path: Path, *, key: str | None = None) -> bool:
    """Copy the database ``source_path`` into the file ``target_path`` consistently, as fast
    as ``cp``.

    Holding the source's write lock (``BEGIN IMMEDIATE``), nothing can change the main file:
    no other connection can commit, and in WAL mode a checkpoint has nothing to copy once the
    WAL was checkpointed and truncated first. Then the file's bytes are the database, and the
    operating system copies them (``sendfile``), about two to three times faster than the
    backup API, which goes through both connections' page caches. When the WAL could not be
    emptied (a reader held it, or a commit came between), the backup API copies instead.
    An encrypted source (``key``, see ``connect``) gives the same encrypted pages under the
    same salt, by either way. The bytes are read through this process's kept descriptor of
    the file (``read_at``), never a descriptor opened and closed here: closing one would drop
    the POSIX locks of every SQLite connection this process holds on the file.
    The copy is left in WAL mode if the source was: the caller sets its journal mode.
    Returns whether the bytes were copied (False: the backup API was used).
    """
    source = connect(source_path, timeout=COPY_LOCK_WAIT_SECONDS, key=key)
    try:
        wal = side_file(source_path, WAL_SUFFIX)
        (mode,) = source.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            source.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        try:
            source.execute("BEGIN IMMEDIATE")
        except OPERATIONAL_ERRORS as exc:
            if not is_busy(exc):
                raise
            # A long save elsewhere: read a snapshot.
            backup_into(source, target_path, key=copy_key(source_path, key))
            return False
        try:
            try:
                settled = os.stat(wal).st_size == 0
            except FileNotFoundError:
                settled = True
            if settled:
                copy_bytes(source_path, target_path)
                return True
        finally:
            source.execute("ROLLBACK")
        backup_into(source, target_path, key=copy_key(source_path, key))
        return False
    finally:
        source.close()


def copy_key(source_path: Path, key: str | None) -> str | None:
    """The key of a page copy of the encrypted ``source_path``: its key and its salt (the
    copy has the database's identity), or None for a plain file."""
    if key is None:
        return None
    salt = read_header(source_path, _SALT_BYTES).hex()
    return key[:-1] + salt + "'" if len(key) == 67 else key


def backup_into(source: Connection, target_path: Path, *, key: str | None = None) -> None:
    """Copy ``source`` into the file ``target_path`` with the backup API (``key``: the
    target's key with its salt, from ``copy_key``)."""
    target = connect(target_path, key=key)
    try:
        backup(source, target)
    finally:
        target.close()


_COPY_CHUNK = 8 << 20


def copy_bytes(source_path: Path, target_path: Path) -> None:
    """Every byte of the file ``source_path`` into the existing ``target_path`` (truncated
    first), read as ``read_at`` reads (a database through its kept descriptor), by
    ``sendfile`` where it copies between files (Linux). The caller flushes the target."""
    if not _KEEP_DESCRIPTORS or str(source_path).endswith(_UNLOCKED_SUFFIXES):
        with open(source_path, "rb") as plain, open(target_path, "r+b") as out:
            out.truncate()
            shutil.copyfileobj(plain, out, _COPY_CHUNK)
        return
    target = os.open(target_path, os.O_WRONLY | os.O_TRUNC)
    try:
        with _kept(source_path) as source:
            size = os.fstat(source).st_size
            offset = 0
            while offset < size:
                count = min(_COPY_CHUNK, size - offset)
                if sys.platform.startswith("linux"):
                    done = os.sendfile(target, source, offset, count)  # leaves its offset
                else:
                    done = os.write(target, os.pread(source, count, offset))
                if done <= 0:
                    break  # shorter than its size under a write lock: the caller checks it
                offset += done
    finally:
        os.close(target)


class WriteLockTimeoutError(Exception):
    """Another connection kept the target's write lock past the deadline; nothing was written."""


def overwrite_holding_the_lock(
    source: Connection,
    target: Connection,
    *,
    once_locked: Callable[[], None],
    deadline: float,
) -> None:
    """Replace ``target``'s content with ``source``'s as one write transaction of ``target``.

    ``once_locked`` runs after the target's write lock is taken and before anything is
    committed: no other connection can commit from then until the copy is in place, and in
    WAL mode other connections still read the last commit (so ``once_locked`` can copy it).

    Why the online backup API, driven one page at a time: a page copy is the only way to put
    another file's pages in place (``sqlite_dbpage`` is not compiled in), and the API refuses a
    target connection that holds an explicit transaction ("destination database is in use")
    and a source that holds a write transaction (it answers SQLITE_BUSY forever). A backup
    in progress keeps the target's write lock between steps, so the callback after the first
    step is the moment the lock is held and nothing is committed. A source of one page would
    be done (committed) in that first step: refused. ``deadline`` (``time.monotonic()``)
    bounds the wait for another writer; past it the backup is abandoned and rolled back and
    ``WriteLockTimeoutError`` raised.
    """
    (pages,) = source.execute("PRAGMA page_count").fetchone()
    if pages < 2:
        raise ValueError("a database of one page holds no tables: nothing to restore")
    called = False

    def step(status: int, _remaining: int, _total: int) -> None:
        nonlocal called
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            if time.monotonic() > deadline:
                raise WriteLockTimeoutError
            return
        if not called:
            called = True  # the first step that copied a page: the lock is held, not committed
            once_locked()

    target.execute(f"PRAGMA busy_timeout = {_BUSY_SLICE_MS}")
    source.backup(target, pages=1, progress=step, sleep=_BUSY_SLICE_MS / 1000)
    if not called:  # pragma: no cover - ruled out by the page count above
        raise RuntimeError("the copy finished before the target's write lock was seen")


# Each try for the target's write lock waits this long (the busy handler), then the deadline
# is checked: a writer that commits is followed within about this much.
_BUSY_SLICE_MS = 50


def is_busy(exc: BaseException) -> bool:
    """The driver gave up waiting for another connection's lock."""
    return isinstance(exc, OPERATIONAL_ERRORS) and "locked" in str(exc)


# Opening a FIFO for reading blocks until a writer comes: never wait on one.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def read_header(path: Path | str, size: int = HEADER_SIZE) -> bytes:
    """The first ``size`` bytes of a regular file, read without SQLite (raises OSError).

    Refused unless it is a regular file (a FIFO, a socket or a device is not a database, and
    reading one can wait forever). Read through this process's kept descriptor of the file
    (``read_at``): this may be the live database, opened by SQLite in this very process.
    """
    return read_at(path, size, 0)


# --- reading a database file behind SQLite's back ---------------------------------------------
#
# POSIX advisory locks belong to a process and a file, not to a descriptor: closing ANY
# descriptor of a file drops every lock this process holds on it, those of its SQLite
# connections included. Another process may then take the EXCLUSIVE lock, checkpoint, and
# delete the -wal and -shm that this process's connections still use: corruption ("How To
# Corrupt an SQLite Database", 2.2). So a database file (or its -shm, where WAL connections
# hold their locks) is read here through a descriptor opened once per file (device, inode)
# and never closed while the process runs: one per database file, reused with pread. A file
# deleted since (a rotated backup, a -shm removed by the last connection) holds no lock that
# anyone can still reach by name: its descriptor is closed, so its disk space comes back.
# The -wal and a -journal carry no SQLite locks and are read with a plain open and close.
# Windows locks belong to a handle (closing ours drops nothing of SQLite's), and an open
# handle would stop a rename over the file: nothing is kept there.
_KEEP_DESCRIPTORS = os.name == "posix"
_UNLOCKED_SUFFIXES = ("-wal", "-journal")
_kept_files: dict[tuple[int, int], int] = {}
_in_use: dict[int, int] = {}  # descriptors being read now: never closed meanwhile
_spare: list[int] = []  # a second descriptor of a kept file, opened in a race: never closed
_kept_guard = threading.Lock()


def read_at(path: Path | str, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes of the regular file ``path`` from ``offset`` (raises OSError),
    without closing any descriptor of a file SQLite may lock in this process."""
    if not _KEEP_DESCRIPTORS or str(path).endswith(_UNLOCKED_SUFFIXES):
        if not stat.S_ISREG(os.stat(path).st_mode):  # before the open: a FIFO would block
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        descriptor = os.open(path, _OPEN_FLAGS)
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(path))
            os.lseek(descriptor, offset, os.SEEK_SET)
            return os.read(descriptor, size)
        finally:
            os.close(descriptor)
    with _kept(path) as descriptor:
        return os.pread(descriptor, size, offset)


@contextlib.contextmanager
def _kept(path: Path | str) -> Iterator[int]:
    """This process's read-only descriptor of the regular file ``path`` (POSIX), opened on
    first use and never closed while the file exists (see above); not closed while in use
    here even when the file is deleted meanwhile."""
    status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):  # before any open: a FIFO would block
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with _kept_guard:
        descriptor = _kept_files.get((status.st_dev, status.st_ino))
        if descriptor is None:
            descriptor = _open_kept(path)
        _in_use[descriptor] = _in_use.get(descriptor, 0) + 1
    try:
        yield descriptor
    finally:
        with _kept_guard:
            _in_use[descriptor] -= 1
            if not _in_use[descriptor]:
                del _in_use[descriptor]


def _open_kept(path: Path | str) -> int:
    _forget_deleted()
    descriptor = os.open(path, _OPEN_FLAGS)
    opened = os.fstat(descriptor)
    if not stat.S_ISREG(opened.st_mode):  # replaced by a FIFO in between: no lock on it
        os.close(descriptor)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    identity = (opened.st_dev, opened.st_ino)
    if identity in _kept_files:  # renamed in between onto a file kept already
        _spare.append(descriptor)
        return _kept_files[identity]
    _kept_files[identity] = descriptor
    return descriptor


def _forget_deleted() -> None:
    for identity, descriptor in list(_kept_files.items()):
        if descriptor not in _in_use and os.fstat(descriptor).st_nlink == 0:
            del _kept_files[identity]
            os.close(descriptor)


def release_kept_descriptors() -> None:
    """Close every kept descriptor: only where this process holds no SQLite connection to
    any of those files any more (a test between cases)."""
    with _kept_guard:
        for descriptor in [*_kept_files.values(), *_spare]:
            os.close(descriptor)
        _kept_files.clear()
        _spare.clear()


def is_access_denied(exc: BaseException) -> bool:
    """The driver could not open or write the file for lack of permission (not damage)."""
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, DRIVER_ERRORS) and name.startswith(
        ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")
    )


def is_wal_header(header: bytes) -> bool:
    """A SQLite header of a file in WAL mode."""
    return (
        len(header) > _WRITE_VERSION_OFFSET
        and header[:16] == SQLITE_MAGIC
        and header[_WRITE_VERSION_OFFSET] == _WAL_FORMAT
    )


# The side files SQLite replays into a database when it opens it.
WAL_SUFFIX, SHM_SUFFIX, JOURNAL_SUFFIX = "-wal", "-shm", "-journal"
SIDE_SUFFIXES = (WAL_SUFFIX, SHM_SUFFIX, JOURNAL_SUFFIX)
_WAL_HEADER_SIZE = 32
_WAL_SALTS = slice(16, 24)  # the WAL header's two salts, big-endian
# The wal-index (-shm) header keeps a byte copy of the salts of the WAL it indexes
# (WalIndexHdr.aSalt, after iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame,
# nPage and aFrameCksum): a -wal whose salts differ was not written beside this -shm.
_SHM_SALTS = slice(32, 40)
_SHM_HEADER_SIZE = 48
_SALT_BYTES = 16  # SQLCipher's salt, the first bytes of an encrypted file (data.db.keys)
# The first bytes of a rollback journal that SQLite will play back (a zeroed header is not).
_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")


def side_file(path: Path | str, suffix: str) -> Path:
    return Path(str(path) + suffix)


def unvouched_side_files(path: Path | str) -> list[Path]:
    """Side files SQLite would replay into ``path`` that nothing ties to this database.

    A hot rollback journal always counts: its header names no database. A ``-wal`` with
    frames counts unless the ``-shm`` beside it indexes exactly that WAL (same salts), as it
    does while other windows have the database open and after a crash of this database's
    own connections. A few small reads; no SQLite.
    """
    found: list[Path] = []
    journal = side_file(path, JOURNAL_SUFFIX)
    try:
        if read_header(journal, len(_JOURNAL_MAGIC)) == _JOURNAL_MAGIC:
            found.append(journal)
    except OSError:
        pass
    wal, shm = side_file(path, WAL_SUFFIX), side_file(path, SHM_SUFFIX)
    try:
        if os.stat(wal).st_size <= _WAL_HEADER_SIZE:
            return found  # no frames: nothing to replay
        salts = read_header(wal, _WAL_HEADER_SIZE)[_WAL_SALTS]
    except OSError:
        return found
    try:
        vouched = read_header(shm, _SHM_HEADER_SIZE)[_SHM_SALTS] == salts
    except OSError:
        vouched = False
    if not vouched:
        found.append(wal)
    return found
