"""``python -m data.db`` (``inklink-db``): the operator's command, run as a real child process.

Every subcommand on a real file under ``tmp_path``; exit codes as the README documents them;
a refusal printed once; a file it refuses left byte for byte as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from data.db.backups import list_backups_everywhere
from data.db.head import recorded_history
from data.db.runner import ensure_current
from data.migration.transfer import studio_tables
from tests.conftest import inklink_db, sha256, sqlite_url
from tests.studio_data import seed_baseline_rows

SUBCOMMANDS = (
    "status",
    "backup",
    "list-backups",
    "restore",
    "verify",
    "move-to",
    "export",
    "encrypt",
    "rekey",
    "decrypt",
    "unlock",
)


@pytest.fixture
def studio(db_path: Path) -> Path:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(sqlite_url(db_path), poolclass=NullPool)
    try:
        ensure_current(engine)
    finally:
        engine.dispose()
    seed_baseline_rows(db_path, clients=5, payments_per_client=2)
    return db_path


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, tmp_path: Path) -> None:
    result = inklink_db(command, "--help", db_path=tmp_path / "none.db")
    assert result.returncode == 0, result.stderr
    assert f"inklink-db {command}" in result.stdout
    assert not (tmp_path / "none.db").exists()


def test_the_top_help_lists_every_subcommand_and_the_exit_codes(tmp_path: Path) -> None:
    result = inklink_db("--help", db_path=tmp_path / "none.db")
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout
    assert "Exit codes" in result.stdout


def test_a_wrong_command_line_exits_64(tmp_path: Path) -> None:
    result = inklink_db("no-such-command", db_path=tmp_path / "none.db")
    assert result.returncode == 64
    assert "invalid choice" in result.stderr


def test_without_a_subcommand_it_still_says_where_and_which_revision(studio: Path) -> None:
    result = inklink_db(db_path=studio)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Database: {studio}\nRevision: {recorded_history().head} (head)\n"


def test_status_tells_where_revision_size_journal_encryption_and_last_backup(
    studio: Path,
) -> None:
    digest = sha256(studio)
    result = inklink_db("status", db_path=studio)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["Database"] == str(studio)
    assert lines["Revision"] == f"{recorded_history().head} (head)"
    assert lines["Size"].startswith(f"{studio.stat().st_size:,} bytes")
    assert lines["Journal mode"] in ("wal", "rollback journal")
    assert lines["Encryption"].startswith("none")
    assert lines["Last backup"] == "none"
    assert sha256(studio) == digest


def test_backup_list_and_restore(studio: Path) -> None:
    made = inklink_db("backup", db_path=studio)
    assert made.returncode == 0, made.stderr
    (listed_backup,) = list_backups_everywhere(studio)
    backup = listed_backup.path
    assert f"backed up to {backup} (verified)" in made.stdout

    listed = inklink_db("list-backups", db_path=studio)
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[1].endswith(f"\t{backup}")
    assert f"\t{recorded_history().head}\t" in listed.stdout
    status = inklink_db("status", db_path=studio)
    assert f"Last backup: {backup} " in status.stdout

    connection = sqlite3.connect(studio)
    with connection:
        connection.execute("DELETE FROM transactions")
    connection.close()
    restored = inklink_db("restore", backup.name, db_path=studio)
    assert restored.returncode == 0, restored.stderr
    connection = sqlite3.connect(studio)
    try:
        assert connection.execute("SELECT count(*) FROM transactions").fetchone() == (10,)
    finally:
        connection.close()


def test_verify_passes_a_sound_file_and_lists_what_is_wrong(studio: Path) -> None:
    assert inklink_db("verify", db_path=studio).returncode == 0

    index = (
        sqlite3.connect(studio)
        .execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%'")
        .fetchone()[0]
    )
    connection = sqlite3.connect(studio)
    with connection:
        connection.execute(f'DROP INDEX "{index}"')
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute("DELETE FROM clients WHERE id = 1")
    connection.close()

    result = inklink_db("verify", db_path=studio)
    assert result.returncode == 1
    assert index in result.stdout
    assert "foreign key: " in result.stdout


def test_a_refusal_is_printed_once_and_changes_nothing(tmp_path: Path) -> None:
    not_a_database = tmp_path / "inklink.db"
    not_a_database.write_bytes(b"this is a letter, not a database" * 100)
    digest = sha256(not_a_database)
    for command in ("status", "backup", "verify"):
        result = inklink_db(command, db_path=not_a_database)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.count(f"Database {not_a_database}") == 1, result.stderr
        assert "not a SQLite database" in result.stderr
        assert "Traceback" not in result.stderr
    assert sha256(not_a_database) == digest


def test_export_makes_a_spare_copy_of_the_file(studio: Path, tmp_path: Path) -> None:
    copy = tmp_path / "spare.db"
    result = inklink_db("export", str(copy), db_path=studio)
    assert result.returncode == 0, result.stderr
    for table in studio_tables():
        query = f'SELECT * FROM "{table.name}" ORDER BY 1'
        original = sqlite3.connect(studio).execute(query).fetchall()
        assert sqlite3.connect(copy).execute(query).fetchall() == original
    assert inklink_db("verify", db_path=copy).returncode == 0


def test_the_entry_point_is_installed() -> None:
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "inklink-db"]
    assert script.value == "data.db.__main__:main"
