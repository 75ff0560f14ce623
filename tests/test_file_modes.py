"""Owner-only files whatever the umask: the database, its side files, the lock and the backups
0600, the data folder 0700, at creation and after every upgrade; wider modes found are
tightened and logged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.app_start import start_app
from tests.conftest import legacy_database
from tests.file_kind import is_encrypted, studio_key

pytestmark = [
    pytest.mark.skipif(os.name != "posix", reason="POSIX modes (Windows: README)"),
    # On a plain file and on an encrypted one (see conftest.file_kind).
    pytest.mark.usefixtures("file_kind"),
]

OWNER_ONLY_FILE = 0o600
OWNER_ONLY_FOLDER = 0o700

# After init_db(), one save through the app while its connection is still open: the -wal and
# -shm exist then (SQLite removes them when the last connection closes). Their modes are
# reported with the outcome.
SAVE_AND_REPORT_SIDE_FILES = """
import os, stat
from data.db.session import DB_PATH, SessionLocal
from data.models import Client
db = SessionLocal()
with db.begin():
    db.add(Client(first_name="Ada", last_name="Lovelace"))
report["side_modes"] = {
    suffix: stat.S_IMODE(os.stat(DB_PATH + suffix).st_mode) for suffix in ("-wal", "-shm")
}
db.close()
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_a_new_database_is_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "new-data-folder"
    db = folder / "inklink.db"

    report = start_app(db, umask=umask, after=SAVE_AND_REPORT_SIDE_FILES)

    assert report["action"] == "created", report
    assert is_encrypted(db) == bool(studio_key())
    assert mode(folder) == OWNER_ONLY_FOLDER
    assert mode(db) == OWNER_ONLY_FILE
    assert mode(Path(str(db) + ".lock")) == OWNER_ONLY_FILE
    assert report["side_modes"] == {"-wal": OWNER_ONLY_FILE, "-shm": OWNER_ONLY_FILE}


def test_an_upgrade_under_umask_000_leaves_every_file_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "studio"
    folder.mkdir(mode=OWNER_ONLY_FOLDER)
    db = legacy_database(folder / "inklink.db")  # made before migrations: adopted, backed up
    os.chmod(db, 0o666)

    report = start_app(db, umask=0o000, after=SAVE_AND_REPORT_SIDE_FILES)

    assert report["action"] == "adopted", report
    assert is_encrypted(db) == bool(studio_key())
    backups = folder / "backups"
    assert mode(backups) == OWNER_ONLY_FOLDER
    made = sorted(backups.iterdir())
    assert made, "the upgrade made no backup"
    assert {p.name: mode(p) for p in made} == {p.name: OWNER_ONLY_FILE for p in made}
    assert mode(db) == OWNER_ONLY_FILE
    assert mode(Path(str(db) + ".lock")) == OWNER_ONLY_FILE
    assert report["side_modes"] == {"-wal": OWNER_ONLY_FILE, "-shm": OWNER_ONLY_FILE}
    assert f"{db} could be used by other users (mode 666)" in report["stderr"]


def test_wider_modes_found_on_existing_files_are_tightened_and_logged(tmp_path: Path) -> None:
    folder = tmp_path / "studio"
    db = folder / "inklink.db"
    assert start_app(db)["action"] == "created"
    lock = Path(str(db) + ".lock")
    old_backup = folder / "backups" / "inklink-copied-by-hand.db"
    old_backup.parent.mkdir()
    old_backup.write_bytes(db.read_bytes())
    wider = {db: 0o644, lock: 0o666, old_backup: 0o644}
    for path, wide in wider.items():
        os.chmod(path, wide)

    report = start_app(db, after=SAVE_AND_REPORT_SIDE_FILES)

    assert report["action"] == "current", report
    assert {path: mode(path) for path in wider} == dict.fromkeys(wider, OWNER_ONLY_FILE)
    for path, wide in wider.items():
        assert f"{path} could be used by other users (mode {wide:o})" in report["stderr"]
    assert report["side_modes"] == {"-wal": OWNER_ONLY_FILE, "-shm": OWNER_ONLY_FILE}
    # Tightened once: the next start is the cheap one again, and logs nothing.
    again = start_app(db)
    assert again["action"] == "current" and not again["alembic_imported"], again
    assert "could be used by other users" not in again["stderr"]
