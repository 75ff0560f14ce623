"""The safety promises that no other test guarded, each checked once against a broken copy.

One test (or one parametrized test) per promise of issue 11; each was seen to fail against a
one-line break of the code it guards. They follow head: no revision id, count or table list
is named here, only what ``recorded_history()`` and the exported schemas say.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from data.db.backup import backup_database, list_backups, restore_backup
from data.db.errors import DatabaseBusyError, DatabaseNewerThanAppError, DataLayerError
from data.db.head import recorded_history
from data.db.policy import create_migration_engine
from data.db.runner import ensure_current
from data.db.session import create_app_engine
from tests.conftest import (
    PROJECT_ROOT,
    db_versions,
    legacy_database,
    run_alembic,
    run_python,
    sha256,
    sqlite_url,
    subprocess_env,
)
from tests.conftest import small_disk as mounted_small_disk
from tests.postgres import plain, schema_of, studio_at_head, versions
from tests.scratch import Revision, ScratchProject, query
from tests.studio_data import seed_baseline_rows, studio_invariants

PASSWORD = "Sw0rdfishNeverPrinted"


def make_studio(db: Path, clients: int = 20) -> Path:
    """A database as the current app leaves it: created at head, filled, in WAL mode."""
    db.parent.mkdir(parents=True, exist_ok=True)
    engine = create_app_engine(sqlite_url(db))
    try:
        assert ensure_current(engine).action == "created"
        with engine.connect() as connection:  # the app's first connection switches to WAL
            connection.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()
    seed_baseline_rows(db, clients=clients)
    return db


def journal_delete(db: Path) -> Path:
    """Every page in the main file, no WAL: how a damaged or copied file is found."""
    connection = sqlite3.connect(db)
    try:
        connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()
    return db


def state(db: Path) -> tuple[object, ...]:
    """What an upgrade may change: the stored schema, the studio's rows, the revision."""
    schema = query(db, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
    return schema, studio_invariants(db), db_versions(db)


# --- 1. the `alembic` command verifies before it commits, as init_db() does ----------------

# Recording replays the chain on empty tables; these revisions misbehave only on a studio's
# rows, so each can be recorded and then breaks its promise where it matters.
ORPHANS = Revision(
    "9e0000000a01",
    doc="a data step that deletes a client whose sessions and payments stay",
    upgrade="""
        op.add_column("clients", sa.Column("vip", sa.Boolean(), nullable=True))
        op.execute(sa.text("DELETE FROM clients WHERE id = (SELECT min(client_id) FROM tattoo_sessions)"))
    """,
)
PROMISE_ON_EMPTY_TABLES_ONLY = Revision(
    "9e0000000a02",
    doc="an index made only where there are no rows: not what the export promises",
    upgrade="""
        if not op.get_bind().exec_driver_sql("SELECT count(*) FROM clients").scalar():
            op.create_index("ix_clients_first_name", "clients", ["first_name"])
    """,
)


@pytest.mark.parametrize(
    ("revision", "found"),
    [
        (ORPHANS, "pointing at missing rows"),
        (PROMISE_ON_EMPTY_TABLES_ONLY, "index ix_clients_first_name is missing"),
    ],
    ids=["foreign keys", "schema against the export"],
)
def test_the_command_line_verifies_before_it_commits(
    tmp_path: Path, revision: Revision, found: str
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = state(db)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(revision)
    result = project.alembic("upgrade", "head", db_path=db, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "FAILED:" in output
    assert str(db) in output
    assert found in output
    assert "rolled back" in output
    assert state(db) == before


def legacy_with_extra_column(db: Path) -> None:
    legacy_database(db)
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("ALTER TABLE clients ADD COLUMN loyalty_points INTEGER")
    connection.close()


def legacy_with_renamed_column(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.executescript(
        (PROJECT_ROOT / "tests" / "fixtures" / "legacy_v0_schema.sql")
        .read_text()
        .replace("phone VARCHAR(40)", "phone_number VARCHAR(40)")
    )
    connection.close()


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (legacy_with_extra_column, "column loyalty_points is not expected"),
        (legacy_with_renamed_column, "column phone is missing"),
    ],
    ids=["extra column", "renamed column"],
)
def test_the_command_line_refuses_a_legacy_file_that_differs_from_the_baseline(
    tmp_path: Path, make: object, found: str
) -> None:
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir()
    assert callable(make)
    make(db)
    seed_baseline_rows(db)
    digest = sha256(db)
    result = run_alembic("upgrade", "head", db_path=db, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"FAILED: Database {db}:" in output
    assert "differ from the first InkLinkOS schema" in output
    assert found in output
    assert sha256(db) == digest
    assert not (db.parent / "backups").exists()


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="mounting a small tmpfs needs root (CI runs as root)",
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system of its own: too small for the backup and rebuilds of a big file."""
    with mounted_small_disk(tmp_path) as mount_point:
        yield mount_point


@needs_root
def test_the_command_line_checks_free_disk_space_first(small_disk: Path) -> None:
    # A file from before migrations, at the baseline: adopting it writes.
    db = legacy_database(small_disk / "inklink.db")
    seed_baseline_rows(db, clients=1500)
    digest = sha256(db)
    size = db.stat().st_size
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    assert size < free < 4 * size + 1024 * 1024, (size, free)
    result = run_alembic("upgrade", "head", db_path=db, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"FAILED: Database {db}:" in output
    assert "Free some disk space" in output
    assert "KiB are free" in output
    assert sha256(db) == digest
    assert not (small_disk / "backups").exists()


# --- 2. a PostgreSQL upgrade is verified before it commits ------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("road", ["init_db", "alembic"])
def test_a_postgresql_upgrade_is_verified_before_it_commits(
    pg_url: URL, tmp_path: Path, road: str
) -> None:
    """The promise on a server is the chain replayed in a scratch schema (empty tables)."""
    studio_at_head(pg_url)
    before = schema_of(pg_url), versions(pg_url)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(PROMISE_ON_EMPTY_TABLES_ONLY)
    unused = tmp_path / "unused.db"
    if road == "init_db":
        result = project.init_db(unused, check=False, DATABASE_URL=plain(pg_url))
    else:
        result = project.alembic(
            "upgrade", "head", db_path=unused, check=False, DATABASE_URL=plain(pg_url)
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "index ix_clients_first_name is missing" in output
    assert (schema_of(pg_url), versions(pg_url)) == before
    engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM clients").scalar() == 1
    finally:
        engine.dispose()


# --- 3. a file recording two revisions at once is refused, unchanged --------------------------


@pytest.mark.parametrize("road", ["init_db", "alembic"])
def test_a_file_recording_two_revisions_is_refused_byte_for_byte(tmp_path: Path, road: str) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    connection = sqlite3.connect(db)
    with connection:  # the head, and a second revision beside it
        connection.execute("INSERT INTO alembic_version VALUES ('0ddba11c0ffe')")
    connection.close()
    assert sorted(db_versions(db)) == sorted([recorded_history().head, "0ddba11c0ffe"])
    digest = sha256(db)
    if road == "init_db":
        result = run_python("from data.db.session import init_db; init_db()", db, check=False)
        assert f"{DatabaseNewerThanAppError.__name__}: Database {db}:" in result.stderr
    else:
        result = run_alembic("upgrade", "head", db_path=db, check=False)
        assert f"FAILED: Database {db}:" in result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "several revisions at once" in output
    assert sha256(db) == digest
    assert not (db.parent / "backups").exists()


# --- 4. a backup is flushed before it is renamed; a failed copy is never listed --------------


def test_a_backup_is_flushed_to_disk_before_it_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = make_studio(tmp_path / "inklink.db")
    events: list[tuple[str, str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", os.fspath(src), 0))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = backup_database(db, label="flushed")
    monkeypatch.undo()

    # The backup's own rename (the backup record is written the same way, under its own name).
    renamed = [
        path for kind, path, _ in events if kind == "replace" and Path(path).parent == target.parent
    ]
    assert len(renamed) == 1, events
    written_as = renamed[0]
    assert Path(written_as) != target, "the backup was written under its final name"
    flushed_before = events[: events.index(("replace", written_as, 0))]
    # Flushed whole: after the last byte was written, under the name it was written as.
    assert ("fsync", written_as, target.stat().st_size) in flushed_before, events
    assert list_backups(db) == [target]


KILLED_MID_COPY = """
import sys
from pathlib import Path
from data.db.backup import backup_database
backup_database(Path(sys.argv[1]), label="killed")
print("FINISHED")
"""


def test_a_copy_killed_midway_never_appears_in_list_backups(tmp_path: Path) -> None:
    db = journal_delete(make_studio(tmp_path / "inklink.db", clients=200))
    before = studio_invariants(db)
    # Another writer holds the file exclusively, so the copy starts and then waits on it.
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_MID_COPY, str(db)],
            env=subprocess_env(tmp_path / "unused.db"),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not any((db.parent / "backups").glob("*")):
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the copy never started"
                time.sleep(0.05)
            time.sleep(0.5)  # well into the copy: it waits for the source
            assert child.poll() is None, child.communicate()
        finally:
            child.send_signal(signal.SIGKILL)
            child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        assert any((db.parent / "backups").glob("*")), "the killed copy left nothing to find"
        assert list_backups(db) == []
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    complete = backup_database(db, label="complete")
    assert list_backups(db) == [complete]
    assert query(complete, "PRAGMA quick_check") == [("ok",)]
    assert studio_invariants(complete) == before


# --- 5. restore checks the backup first and holds the migration lock -------------------------


def damage_pages(db: Path) -> Path:
    """Scribble over two b-tree page headers: the SQLite header stays valid."""
    journal_delete(db)
    page_size = query(db, "PRAGMA page_size")[0][0]
    assert isinstance(page_size, int)
    with db.open("r+b") as handle:
        for page in (3, 5):
            handle.seek(page_size * (page - 1))
            handle.write(b"\x0d\xff\xff\xff\xff\xff\xff\xff" * 4)
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA quick_check").fetchall() != [("ok",)]
    finally:
        connection.close()
    return db


def test_restore_refuses_a_backup_whose_pages_are_damaged(tmp_path: Path) -> None:
    """A backup that still starts like a SQLite file: only the integrity check can tell."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    damaged = damage_pages(make_studio(tmp_path / "usb" / "inklink-old.db", clients=200))
    live = sha256(db)
    with pytest.raises(DataLayerError, match="damaged") as raised:
        restore_backup(damaged, db)
    assert str(damaged) in str(raised.value)
    assert sha256(db) == live
    assert not (db.parent / "backups").exists()


HOLD_THE_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1] + ".lock")  # kept: a dropped FileLock releases itself
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_restore_waits_for_the_migration_lock(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    backup = backup_database(db, label="before")
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("DELETE FROM transactions")
    connection.close()
    live = sha256(db)
    # Another process holds <db>.lock, as a running upgrade or deploy would.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseBusyError) as raised:
            restore_backup(backup, db, lock_timeout=1.0)
    finally:
        holder.kill()
        holder.communicate()
    assert str(db) in str(raised.value)
    assert sha256(db) == live
    assert query(db, "SELECT count(*) FROM transactions") == [(0,)]
    assert [p.name for p in (db.parent / "backups").iterdir()] == [backup.name]


# --- 6. the migration connection takes the write lock at BEGIN ------------------------------

OTHER_WRITER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], timeout=1, isolation_level=None)
try:
    connection.execute("CREATE TABLE other_writer (id INTEGER)")
    connection.execute("DROP TABLE other_writer")
    print("WROTE")
except sqlite3.OperationalError as exc:
    print("REFUSED", exc)
"""


def _other_writer(db: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", OTHER_WRITER, str(db)],
        env=subprocess_env(db),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_migration_connection_holds_the_write_lock_from_begin(
    created_engine: Engine, db_path: Path
) -> None:
    created_engine.dispose()
    engine = create_migration_engine(sqlite_url(db_path))
    try:
        with engine.connect() as connection:
            transaction = connection.begin()  # nothing read or written yet
            assert _other_writer(db_path) == "REFUSED database is locked"
            transaction.rollback()
    finally:
        engine.dispose()
    assert _other_writer(db_path) == "WROTE"  # the refusal was for the lock, nothing else


# --- 7. the DATABASE_URL refusal never shows the password -----------------------------------


@pytest.mark.parametrize(
    "database_url",
    [
        f"sqlite://studio:{PASSWORD}@/srv/studio/other.db",
        f"mysql://studio:{PASSWORD}@db.example/inklink",
    ],
    ids=["sqlite", "mysql"],
)
@pytest.mark.parametrize("road", ["app start", "alembic"])
def test_the_database_url_refusal_never_shows_the_password(
    tmp_path: Path, database_url: str, road: str
) -> None:
    db = tmp_path / "inklink.db"
    if road == "app start":
        env = subprocess_env(db, DATABASE_URL=database_url)
        result = run_python("from data.db.session import init_db; init_db()", env=env, check=False)
    else:
        result = run_alembic("upgrade", "head", db_path=db, check=False, DATABASE_URL=database_url)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "DATABASE_URL is only for a PostgreSQL server" in output
    assert "studio:***@" in output
    assert PASSWORD not in output
    assert not db.exists()
