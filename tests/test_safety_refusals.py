"""Files that must not be touched are refused with a message for people, and stay byte-for-byte."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from data.db.errors import (
    DatabaseCorruptError,
    DatabaseNewerThanAppError,
    DatabaseNotWritableError,
    DataLayerError,
    LegacySchemaMismatchError,
    NotADatabaseError,
    NotEnoughDiskSpaceError,
)
from data.db.head import HEAD_REVISION
from data.db.runner import ensure_current
from data.db.session import create_app_engine
from tests.app_start import run_as
from tests.conftest import (
    LEGACY_SQL,
    legacy_database,
    run_alembic,
    run_python,
    sha256,
    small_disk,
    sqlite_url,
)
from tests.file_kind import connect, studio_key
from tests.scratch import query
from tests.studio_data import seed_baseline_rows, studio_invariants
from tests.test_safety_upgrade import make_studio

# On a plain file and on an encrypted one (see conftest.file_kind).
pytestmark = pytest.mark.usefixtures("file_kind")


def run_runner(db_path: Path) -> str:
    engine = create_app_engine(sqlite_url(db_path))
    try:
        return ensure_current(engine).action
    finally:
        engine.dispose()


def out_of_wal(db: Path) -> Path:
    """Leave WAL mode so every page is in the main file, as a damaged file would be found."""
    connection = connect(db)
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.close()
    return db


def not_a_database(path: Path) -> None:
    path.write_text("Client,Phone\nAda,555-0100\n" * 50)


def corrupted_pages(path: Path) -> None:
    make_studio(path, clients=200)
    out_of_wal(path)
    # (SQLCipher answers this PRAGMA with text.)
    page_size = int(str(query(path, "PRAGMA page_size")[0][0]))
    with path.open("r+b") as handle:  # scribble over the b-tree header of two pages
        for page in (3, 5):
            handle.seek(page_size * (page - 1))
            handle.write(b"\x0d\xff\xff\xff\xff\xff\xff\xff" * 4)


def truncated(path: Path) -> None:
    make_studio(path, clients=200)
    out_of_wal(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


def unknown_revision(path: Path) -> None:
    make_studio(path)
    connection = connect(path)
    with connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00dfacef00d'")
    connection.close()


def legacy_mismatch(path: Path) -> None:
    schema = LEGACY_SQL.read_text().replace("phone VARCHAR(40)", "phone_number VARCHAR(40)")
    connection = connect(path)
    connection.executescript(schema)
    connection.close()


BAD_FILES: dict[str, tuple[Callable[[Path], None], type[DataLayerError], str]] = {
    "not a database": (not_a_database, NotADatabaseError, "not a SQLite database"),
    "corrupted pages": (corrupted_pages, DatabaseCorruptError, "damaged"),
    "truncated": (truncated, DatabaseCorruptError, "truncated"),
    "unknown revision": (
        unknown_revision,
        DatabaseNewerThanAppError,
        "f00dfacef00d, which this version of InkLinkOS does not know: the app is older than "
        "the database",
    ),
    "legacy schema that differs": (
        legacy_mismatch,
        LegacySchemaMismatchError,
        "column phone is missing",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_is_refused_and_left_byte_for_byte(tmp_path: Path, case: str) -> None:
    make, error, found = BAD_FILES[case]
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir()
    make(db)
    digest = sha256(db)
    with pytest.raises(error) as raised:
        run_runner(db)
    message = str(raised.value)
    assert str(db) in message
    assert found in message
    assert "not changed" in message or "not been changed" in message
    assert sha256(db) == digest
    assert not (db.parent / "backups").exists()


@pytest.mark.parametrize("case", ["corrupted pages", "unknown revision"])
def test_app_start_prints_the_refusal_for_people_when_uncaught(tmp_path: Path, case: str) -> None:
    make, error, found = BAD_FILES[case]
    db = tmp_path / "inklink.db"
    make(db)
    digest = sha256(db)
    result = run_python("from data.db.session import init_db; init_db()", db, check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"data.db.errors.{error.__name__}: Database {db}:")
    assert found.split(":")[0] in last
    assert sha256(db) == digest
    assert not studio_key() or studio_key() not in result.stdout + result.stderr


@pytest.mark.parametrize("case", ["corrupted pages", "unknown revision", "not a database"])
def test_alembic_command_refuses_the_same_files(tmp_path: Path, case: str) -> None:
    make, _error, found = BAD_FILES[case]
    db = tmp_path / "inklink.db"
    make(db)
    digest = sha256(db)
    result = run_alembic("upgrade", "head", db_path=db, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"FAILED: Database {db}:" in output
    assert found.split(":")[0] in output
    assert "Traceback" not in output
    assert not studio_key() or studio_key() not in output
    assert sha256(db) == digest


def test_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "inklink.db"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(NotADatabaseError, match="the path is a folder") as raised:
        run_runner(folder)
    assert str(folder) in str(raised.value)
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


def test_zero_byte_file_becomes_a_new_database(tmp_path: Path) -> None:
    db = tmp_path / "inklink.db"
    db.touch()
    assert run_runner(db) == "created"
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


def test_legacy_database_matching_the_baseline_is_adopted_with_every_row(tmp_path: Path) -> None:
    db = legacy_database(tmp_path / "inklink.db")
    seed_baseline_rows(db)
    before = studio_invariants(db)
    assert run_runner(db) == "adopted"
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert studio_invariants(db) == before
    assert run_runner(db) == "current"


def test_alembic_command_adopts_a_legacy_database_too(tmp_path: Path) -> None:
    db = legacy_database(tmp_path / "inklink.db")
    seed_baseline_rows(db)
    before = studio_invariants(db)
    run_alembic("upgrade", "head", db_path=db)
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert studio_invariants(db) == before


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="dropping privileges needs root (CI runs as root)",
)


@needs_root
def test_folder_the_user_cannot_write_is_refused(world_readable_dir: Path) -> None:
    run_runner(world_readable_dir / "warmup.db")  # load every module before dropping root
    locked = world_readable_dir / "locked"
    locked.mkdir(mode=0o755)  # root's; 'nobody' may read but not write
    open_folder = world_readable_dir / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    existing = locked / "inklink.db"
    make_studio(existing)
    os.chmod(existing, 0o644)
    digest = sha256(existing)

    refused = run_as("nobody", lambda: run_runner(existing))
    assert refused.startswith(DatabaseNotWritableError.__name__), refused
    assert str(existing) in refused
    assert "cannot write" in refused
    assert sha256(existing) == digest
    # The same process, where it may write, succeeds: the refusal was for the right reason.
    assert run_as("nobody", lambda: run_runner(open_folder / "inklink.db")) == "created"


@needs_root
def test_too_little_free_disk_is_refused_before_anything_is_written(
    world_readable_dir: Path,
) -> None:
    with small_disk(world_readable_dir) as mount_point:
        # Made before migrations existed: adopting it backs it up and upgrades it to head.
        db = legacy_database(mount_point / "inklink.db")
        seed_baseline_rows(db, clients=1000)
        digest = sha256(db)
        size = db.stat().st_size
        assert shutil.disk_usage(mount_point).free < 4 * size + 1024 * 1024
        with pytest.raises(NotEnoughDiskSpaceError, match="Free some disk space") as raised:
            run_runner(db)
        assert str(db) in str(raised.value)
        assert sha256(db) == digest
        assert not (mount_point / "backups").exists()
