"""Edge cases from review: crash images, neighbouring files, handed-over engines, stray config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from data.db.backup import backup_database, list_backups, restore_backup
from data.db.errors import DataLayerError
from data.db.head import HEAD_REVISION
from data.db.runner import ensure_current
from data.db.session import create_app_engine
from data.db.sqlite_file import inspect_sqlite_file
from tests.conftest import legacy_database, run_python, sha256, sqlite_url, subprocess_env
from tests.file_kind import connect
from tests.scratch import ScratchProject, query
from tests.studio_data import seed_baseline_rows, studio_invariants
from tests.test_safety_refusals import out_of_wal
from tests.test_safety_upgrade import BROKEN, _touch_client, make_studio, state

# On a plain file and on an encrypted one (see conftest.file_kind).
pytestmark = pytest.mark.usefixtures("file_kind")


def _crash_mid_checkpoint(folder: Path) -> Path:
    """A file as a crash mid-checkpoint leaves it: page 1 (with the new page count) written
    to the main file, the pages that make it longer still only in the WAL."""
    live = folder / "live" / "inklink.db"
    live.parent.mkdir(parents=True)
    connection = connect(live, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    connection.execute("CREATE TABLE notes (body TEXT)")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO notes VALUES (?)", [("x" * 200,)] * 2000)
    connection.execute("COMMIT")
    page_size = int(connection.execute("PRAGMA page_size").fetchone()[0])
    # The page count the newest page 1 records (read through SQLite: encrypted, the header
    # is not readable from outside).
    pages = int(connection.execute("PRAGMA page_count").fetchone()[0])
    wal = live.with_name("inklink.db-wal").read_bytes()
    frame = 24 + page_size
    newest_page_one = max(
        offset
        for offset in range(32, len(wal), frame)
        if int.from_bytes(wal[offset : offset + 4], "big") == 1
    )
    crashed = folder / "crashed" / "inklink.db"
    crashed.parent.mkdir()
    shutil.copy(live, crashed)
    shutil.copy(live.with_name("inklink.db-wal"), crashed.with_name("inklink.db-wal"))
    connection.close()
    with crashed.open("r+b") as handle:
        handle.write(wal[newest_page_one + 24 : newest_page_one + 24 + page_size])
    assert crashed.stat().st_size < pages * page_size
    return crashed


def test_a_crash_image_that_sqlite_recovers_is_not_called_truncated(tmp_path: Path) -> None:
    crashed = _crash_mid_checkpoint(tmp_path)
    found = inspect_sqlite_file(crashed)
    assert found.tables == frozenset({"notes"})
    assert query(crashed, "SELECT count(*) FROM notes") == [(2000,)]


def test_backups_of_a_neighbouring_database_are_neither_listed_nor_rotated(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    neighbour = tmp_path / "inklink-old.db"
    shutil.copy(db, neighbour)
    theirs = [backup_database(neighbour, label=f"n{n}") for n in range(5)]
    ours = backup_database(db, label="mine")
    assert ours.is_file(), "rotation deleted the backup it had just made"
    assert list_backups(db) == [ours]
    assert all(path.is_file() for path in theirs)


def test_the_copy_kept_aside_by_a_restore_is_never_rotated_away(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    first = backup_database(db, label="first")
    aside = restore_backup(first, db)
    for n in range(7):  # each of another state: an unchanged file is not copied twice
        _touch_client(db, n)
        backup_database(db, label=f"later{n}")
    assert aside.is_file()
    assert aside not in list_backups(db)
    assert list_backups(db)[0].name.endswith("-later6.db")


def test_an_empty_version_table_beside_a_studios_tables_is_adopted(tmp_path: Path) -> None:
    db = legacy_database(tmp_path / "inklink.db")
    connection = connect(db)
    connection.execute(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
    )
    connection.close()
    seed_baseline_rows(db)
    before = studio_invariants(db)
    engine = create_app_engine(sqlite_url(db))
    try:
        assert ensure_current(engine).action == "adopted"
    finally:
        engine.dispose()
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert studio_invariants(db) == before


def test_an_engine_handed_to_env_gets_the_runners_single_transaction(tmp_path: Path) -> None:
    """Without the runner's policy, Python's sqlite3 commits DDL as it goes: half an upgrade."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = state(db)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(BROKEN)
    code = f"""
from alembic import command
from sqlalchemy import create_engine
from data.db.runner import alembic_config
from data.db.session import database_url
config = alembic_config()
config.attributes["connection"] = create_engine(database_url("{db}"))
try:
    command.upgrade(config, "head")
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
"""
    result = project.python(code, tmp_path / "unused.db")
    assert "REFUSED" in result.stdout
    assert "boom halfway through" in result.stdout
    assert state(db) == before
    assert len(list_backups(db)) == 1


def test_database_url_naming_a_sqlite_file_is_refused_at_start(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    env = subprocess_env(tmp_path / "inklink.db", DATABASE_URL=f"sqlite:///{other}")
    result = run_python("import data.db.session", env=env, check=False)
    assert result.returncode == 1
    assert "DatabaseURLError" in result.stderr
    assert "only for a PostgreSQL server" in result.stderr
    assert "set DB_PATH" in result.stderr
    assert not other.exists()


@pytest.mark.parametrize("journal", ["-wal", "-journal"])
def test_a_hot_journal_beside_a_damaged_file_does_not_hide_the_damage(
    tmp_path: Path, journal: str
) -> None:
    """Skipping the length check for a pending recovery must not let real damage through."""
    db = out_of_wal(make_studio(tmp_path / "inklink.db", clients=200))
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    db.with_name(db.name + journal).write_bytes(b"\x00" * 512)  # not a valid journal
    digest = sha256(db)
    engine = create_app_engine(sqlite_url(db))
    try:
        with pytest.raises(DataLayerError, match=r"damaged|truncated|not a SQLite") as raised:
            ensure_current(engine)
    finally:
        engine.dispose()
    assert str(db) in str(raised.value)
    assert sha256(db) == digest
