"""Moving a studio's file to a PostgreSQL server, and exporting any database to a new file.

``move_to_server()`` is what ``python -m data.db move-to URL`` runs, and what an app can call
with the same progress callback it gives ``init_db()``. In order: list the rows the server
would refuse (and stop if there are any, changing nothing); bring the file to head through
the runner (with its backup) and create or upgrade the server's database through the same
runner; then, holding the file's migration lock and the server's migration lock, read the
file in one read transaction and write the server in one transaction, verify, and commit.
Any difference or error rolls the server's transaction back; the file is only ever read
(after its own upgrade, if it needed one).

``export_database()`` is the same verified copy the other way: any database into a new plain
SQLite file at head (a portable copy, or a studio moving back to one PC).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from data.db import keys
from data.db.errors import (
    UNCHANGED,
    CopyFailedError,
    DatabaseNotWritableError,
    DatabaseURLError,
    DataLayerError,
    NotADatabaseError,
    TargetNotEmptyError,
    UnmovableRowsError,
)
from data.db.keys import DatabaseKey
from data.db.outcome import CopyOutcome, ProgressCallback
from data.migration.backends.postgresql import ADVISORY_LOCK_KEY, display_url
from data.migration.file_lock import LOCK_TIMEOUT_SECONDS, migration_lock
from data.migration.preflight import Finding, unmovable_rows
from data.migration.raw_sqlite import SIDE_SUFFIXES, unvouched_side_files
from data.migration.runner import ensure_current, require_recorded
from data.migration.sqlite_file import check_location, inspect_sqlite_file
from data.migration.state import VERSION_TABLE
from data.migration.transfer import (
    copy_rows,
    refuse_rows_in_target,
    sqlite_reader,
    sqlite_writer,
    studio_tables,
)

__all__ = [
    "check_file",
    "check_file_opens",
    "export_database",
    "move_to_server",
    "server_url",
]


def server_url(text: str) -> URL:
    """``text`` as a PostgreSQL URL for psycopg 3, or ``DatabaseURLError`` naming it (masked)."""
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise DatabaseURLError(
            "(the URL given)",
            "it is not a database URL",
            "Write it as postgresql://user:password@host:5432/database.",
        ) from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if not url.drivername.startswith("postgresql") or not url.database:
        raise DatabaseURLError(
            display_url(url),
            "it does not name a database on a PostgreSQL server",
            "Write it as postgresql://user:password@host:5432/database.",
        )
    return url


# --- the dry run -------------------------------------------------------------------------


def check_file_opens(db_path: Path, *, every_page: bool = True) -> DatabaseKey | None:
    """Refuse a path that holds no studio database, before anything opens it for writing.

    Returns the key an encrypted file opens with (``INKLINK_DB_KEY``, else the keyring; the
    classification has just proved it opens the file), ``None`` for a plain file. Without
    ``every_page`` only the schema table is checked for damage: for a caller that runs a
    whole-file check of its own next.
    """
    display = str(db_path)
    check_location(db_path)
    if unvouched_side_files(db_path):
        raise DataLayerError(
            display,
            "a -wal or -journal file lies beside it that SQLite would apply when it is opened",
            "Run `python -m data.db` first: it keeps a copy of everything as it is, then lets "
            "SQLite recover the file. " + UNCHANGED,
        )
    state = inspect_sqlite_file(db_path, quick_check=every_page)
    if not state.exists or not state.user_tables:
        raise NotADatabaseError(
            display,
            "there is no studio database here (no file, or a file without tables)",
            "Set DB_PATH to the studio's database file (inklink.db). " + UNCHANGED,
        )
    return keys.key_for(db_path) if state.encrypted else None


def check_file(db_path: Path) -> list[Finding]:
    """Every row of the file at ``db_path`` a PostgreSQL server would refuse; reads only."""
    return _findings(db_path, check_file_opens(db_path))


def _findings(db_path: Path, key: DatabaseKey | None) -> list[Finding]:
    reader = sqlite_reader(db_path, key)
    try:
        with reader.connect() as connection, connection.begin():
            return unmovable_rows(connection, studio_tables())
    finally:
        reader.dispose()


def _unmovable(display: str, findings: list[Finding]) -> UnmovableRowsError:
    lines = tuple(str(finding) for finding in findings)
    return UnmovableRowsError(
        display,
        f"{len(lines)} saved row(s) would be refused by the PostgreSQL server:\n  - "
        + "\n  - ".join(lines)
        + "\n",
        "Nothing was copied and nothing was changed. Correct those rows in the app (or ask "
        "support), then run `python -m data.db move-to URL --check` again until it lists none.",
        lines,
    )


# --- the copy ----------------------------------------------------------------------------


def _file_url(db_path: Path, key: DatabaseKey | None) -> URL:
    """The runner's URL for the studio file: keyed through SQLCipher when it is encrypted."""
    if key is None:
        return URL.create("sqlite", database=str(db_path))
    from data.db.cipher import cipher_url

    return cipher_url(str(db_path), key.pragma())


def _require_head(connection: Connection, display: str, head: str, unchanged: str) -> None:
    versions = [
        row[0] for row in connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
    ]
    if versions != [head]:
        raise CopyFailedError(
            display,
            f"it is at revision {', '.join(versions) or 'none'}, not at this app's head {head}, "
            "so the two databases cannot be copied table for table",
            "Bring both to the same version of InkLinkOS (`python -m data.db` on each), then "
            "run the copy again. " + unchanged,
        )


def _server_turn(connection: Connection, timeout: float, *, shared: bool) -> None:
    # The server's migration lock for this transaction: no seat or deploy upgrades the
    # schema while rows go in (or come out: a shared lock lets other readers share it).
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(timeout * 1000)}ms'")
    # Timestamps travel as UTC moments whatever the server's TimeZone: in another zone the
    # first moment the app holds (0001-01-01 00:00 UTC) is in the year 0, which the driver
    # cannot read back into a datetime, and the verification would refuse a valid row.
    connection.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
    kind = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    connection.exec_driver_sql(f"SELECT {kind}({ADVISORY_LOCK_KEY})")


@contextlib.contextmanager
def _copy_failures(source: str, target: str, password: str | None) -> Iterator[None]:
    """Anything but a refusal that stops the copy becomes one error for people."""
    try:
        yield
    except DataLayerError:
        raise
    except Exception as exc:
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines()
        detail = f"{type(orig).__name__}: {lines[0] if lines else ''}"
        if password:
            detail = detail.replace(password, "***")
        raise CopyFailedError(
            target,
            f"the copy from {source} failed: {detail}",
            "The copy was rolled back whole: nothing was written here, and the source was not "
            "changed. Fix what the message names and run it again, or report it to support.",
        ) from exc


def move_to_server(
    db_path: Path,
    url: URL,
    *,
    progress: ProgressCallback | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> CopyOutcome:
    """Copy the studio file at ``db_path`` into the PostgreSQL database at ``url``, verified.

    The server's database is created (or upgraded) by the runner and must hold no studio
    rows. Raises only ``DataLayerError``; on any, the server holds no copied row.
    """
    db_path = Path(db_path).absolute()
    source, target = str(db_path), display_url(url)
    key = check_file_opens(db_path)
    findings = _findings(db_path, key)
    if findings:
        raise _unmovable(source, findings)
    head = require_recorded(source).head
    # The same runner as every start: the file is upgraded with its backup (encrypted under
    # its key when the file is), the server's database created or upgraded under its
    # advisory lock.
    file_engine = create_engine(_file_url(db_path, key), poolclass=NullPool)
    server_engine = create_engine(url, poolclass=NullPool)
    try:
        with _copy_failures(source, target, url.password):
            prepared = ensure_current(file_engine, lock_timeout=lock_timeout)
            ensure_current(server_engine, lock_timeout=lock_timeout)
    finally:
        file_engine.dispose()
        server_engine.dispose()
    reader = sqlite_reader(db_path, key)
    writer = create_engine(url, poolclass=NullPool)
    started = time.perf_counter()
    try:
        with (
            _copy_failures(source, target, url.password),
            migration_lock(db_path, lock_timeout),
            reader.connect() as read,
            read.begin(),
            writer.connect() as write,
            write.begin(),
        ):
            _server_turn(write, lock_timeout, shared=False)
            _require_head(read, source, head, UNCHANGED)
            _require_head(write, target, head, "Nothing was copied.")
            tables = studio_tables()
            # Again, in the snapshot the copy reads, for rows saved since the dry run. The
            # file is at head now, so its guards refused any such row breaking their rules;
            # only the lower-case rule, which no guard holds, needs reading again.
            findings = unmovable_rows(read, tables, guard_rules=False)
            if findings:
                raise _unmovable(source, findings)
            refuse_rows_in_target(write, target, tables)
            rows = copy_rows(read, write, revision=head, target_display=target, progress=progress)
    finally:
        reader.dispose()
        writer.dispose()
    return CopyOutcome(
        source, target, head, rows, time.perf_counter() - started, prepared.backup_path
    )


def _new_file(path: Path) -> None:
    display = str(path)
    taken = [p for p in (path, *(Path(f"{path}{s}") for s in SIDE_SUFFIXES)) if p.exists()]
    if taken:
        raise TargetNotEmptyError(
            display,
            f"{taken[0]} already exists",
            "An export writes a new file and never overwrites one: choose another name, or "
            "move that file away first. Nothing was changed.",
        )
    if not path.parent.is_dir():
        raise DatabaseNotWritableError(
            display,
            f"its folder {path.parent} does not exist",
            "Create the folder (or choose a file in an existing one), then export again. "
            "Nothing was changed.",
        )


def _remove_new_file(path: Path) -> None:
    for leftover in (
        path,
        *(Path(f"{path}{suffix}") for suffix in (*SIDE_SUFFIXES, ".lock", ".backups.json")),
    ):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


@contextlib.contextmanager
def _read_turn(
    source: Engine, display: str, timeout: float, key: DatabaseKey | None
) -> Iterator[Connection]:
    """One read transaction on ``source`` holding its migration lock, consistent throughout."""
    if source.dialect.name == "postgresql":
        with source.connect() as connection:
            reading = connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            with reading.begin():
                _server_turn(reading, timeout, shared=True)
                yield reading
        return
    path = Path(str(source.url.database)).absolute()
    reader = sqlite_reader(path, key)
    try:
        with migration_lock(path, timeout), reader.connect() as connection, connection.begin():
            yield connection
    finally:
        reader.dispose()


def export_database(
    source: Engine,
    path: Path,
    *,
    progress: ProgressCallback | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> CopyOutcome:
    """Copy the database behind ``source`` into a new SQLite file at ``path``, verified.

    ``source`` is a PostgreSQL server's engine (which must be at this app's head: an export
    never upgrades a server) or a plain SQLite file's (brought to head first, with its
    backup, as at any start). The new file is made at head by the runner; on any error it is
    removed again. Raises only ``DataLayerError``.
    """
    path = Path(path).absolute()
    target = str(path)
    server = source.dialect.name == "postgresql"
    display = display_url(source.url) if server else str(Path(str(source.url.database)).absolute())
    _new_file(path)
    head = require_recorded(display).head
    backup, key = None, None
    if not server:
        key = check_file_opens(Path(display))
        with _copy_failures(display, target, None):
            backup = ensure_current(source, lock_timeout=lock_timeout).backup_path
    file_engine = create_engine(URL.create("sqlite", database=target), poolclass=NullPool)
    writer = sqlite_writer(path)
    started = time.perf_counter()
    try:
        with _copy_failures(display, target, source.url.password):
            ensure_current(file_engine, lock_timeout=lock_timeout)
            with (
                _read_turn(source, display, lock_timeout, key) as read,
                writer.connect() as write,
                write.begin(),
            ):
                _require_head(read, display, head, "Nothing was changed.")
                tables = studio_tables()
                refuse_rows_in_target(write, target, tables)
                rows = copy_rows(
                    read, write, revision=head, target_display=target, progress=progress
                )
    except BaseException:
        file_engine.dispose()
        writer.dispose()
        _remove_new_file(path)
        raise
    file_engine.dispose()
    writer.dispose()
    return CopyOutcome(display, target, head, rows, time.perf_counter() - started, backup)
