"""Issue 13's checks on an encrypted studio: every connection they open gets the key.

The scoped checks beside an upgrade (the reader that checks touched tables as they were),
the byte copy of the backup, the whole-file check after start, ``python -m data.db verify``
and the last good backup all open the file or its backups themselves: on an encrypted file
each must open it with its key (a keyless open reads "file is not a database"), and damage
in the encrypted pages must be found and reported the same way as in a plain file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from data.db import keys
from data.migration.backup import backup_database, list_backups
from tests.conftest import FILE_KEY, sha256
from tests.file_kind import is_encrypted
from tests.scratch import ScratchProject, outcome_line
from tests.test_safety_refusals import out_of_wal
from tests.test_safety_upgrade import make_studio
from tests.test_scoped_checks import ADD_COLUMN, CHECK


@pytest.fixture(autouse=True)
def database_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("INKLINK_DB_KEY", FILE_KEY)
    monkeypatch.setenv("INKLINK_TEST_KEYRING", "")
    return FILE_KEY


@pytest.fixture(scope="module")
def newer_app(tmp_path_factory: pytest.TempPathFactory) -> ScratchProject:
    project = ScratchProject(tmp_path_factory.mktemp("newer-app"))
    project.add(ADD_COLUMN)
    return project


@pytest.fixture
def studio(tmp_path: Path) -> Path:
    """An encrypted studio with every page in the main file, as a damaged file is found."""
    return out_of_wal(encrypted(make_studio(tmp_path / "studio" / "inklink.db", clients=30)))


@pytest.fixture
def wal_studio(tmp_path: Path) -> Path:
    """An encrypted studio in WAL mode, as the app leaves it: the upgrade's touched tables are
    checked as they were by a keyed reader beside it."""
    db = encrypted(make_studio(tmp_path / "studio" / "inklink.db", clients=30))
    assert _keyed_query(db, "PRAGMA journal_mode") == [("wal",)]
    return db


def encrypted(db: Path) -> Path:
    """The studio the data layer made under INKLINK_DB_KEY: encrypted from the start."""
    assert is_encrypted(db)
    return db


def _keyed_query(db: Path, sql: str) -> list[tuple[object, ...]]:
    import sqlcipher3  # type: ignore[import-untyped]

    connection = sqlcipher3.connect(str(db))
    try:
        connection.execute(f'PRAGMA key = "{keys.key_for(db).pragma()}"')
        return [tuple(row) for row in connection.execute(sql).fetchall()]
    finally:
        connection.close()


def damage_encrypted_table(db: Path, table: str) -> None:
    """Scribble over the encrypted bytes of ``table``'s root page (its HMAC then fails)."""
    ((root,),) = _keyed_query(db, f"SELECT rootpage FROM sqlite_master WHERE name = '{table}'")
    ((page_size,),) = _keyed_query(db, "PRAGMA cipher_page_size")  # SQLCipher: a string
    assert isinstance(root, int) and root > 1
    with db.open("r+b") as handle:
        handle.seek(int(str(page_size)) * (root - 1) + 200)
        handle.write(b"\x0d\xff\xff\xff\xff\xff\xff\xff" * 4)


def test_an_encrypted_upgrade_is_backed_up_encrypted_and_checked_after_start(
    wal_studio: Path, newer_app: ScratchProject
) -> None:
    studio = wal_studio
    _, _, to_revision, backup = outcome_line(newer_app.init_db(studio))
    assert to_revision == ADD_COLUMN.revision
    copy = Path(backup)
    assert copy.read_bytes()[:16] == studio.read_bytes()[:16]  # same salt: same identity
    assert not copy.read_bytes().startswith(b"SQLite format 3")
    assert _keyed_query(copy, "PRAGMA quick_check") == [("ok",)]
    assert _keyed_query(copy, "SELECT count(*) FROM clients") == [(30,)]

    verify = newer_app.inklink_db("verify", db_path=studio)
    assert verify.returncode == 0, verify
    assert "no damage found" in verify.stdout
    code = (
        "from data.db.session import check_database_in_background\n"
        "seen = []\n"
        "worker = check_database_in_background(seen.append)\n"
        "worker.join(120)\n"
        "print('CALLED', [r.status for r in seen])\n"
    )
    assert "CALLED ['ok']" in newer_app.python(code, studio).stdout


def test_damage_in_an_encrypted_file_is_found_after_start_with_the_way_back(
    studio: Path, newer_app: ScratchProject
) -> None:
    good = backup_database(studio, label="before-damage", key=keys.key_for(studio))
    damage_encrypted_table(studio, "transactions")
    _, _, to_revision, backup = outcome_line(newer_app.init_db(studio))
    assert to_revision == ADD_COLUMN.revision
    assert Path(backup) != good and Path(backup) in list_backups(studio)

    checked = newer_app.python(CHECK, studio)
    report = next(line for line in checked.stdout.splitlines() if line.startswith("REPORT"))
    assert report.split()[1:] == ["damaged", str(good)]
    verify = newer_app.inklink_db("verify", db_path=studio)
    assert verify.returncode == 1, verify
    assert "damaged" in verify.stderr and str(good) in verify.stderr


def test_damage_where_an_encrypted_upgrade_writes_is_refused_and_changes_nothing(
    studio: Path, newer_app: ScratchProject
) -> None:
    damage_encrypted_table(studio, "clients")
    digest = sha256(studio)
    result = newer_app.init_db(studio, check=False)
    assert result.returncode != 0
    assert "DatabaseCorruptError" in result.stderr and str(studio) in result.stderr
    assert "not changed" in result.stderr
    assert sha256(studio) == digest
