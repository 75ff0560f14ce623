"""Backups are kept by what they are: the record of what the data layer made, not file names."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

from data.db.backup import backup_database, list_backups, restore_backup
from data.db.head import recorded_history
from data.migration.backup import KEEP_BACKUPS, record_path
from tests.conftest import legacy_database, run_python, subprocess_env
from tests.scratch import query
from tests.studio_data import STAMP, seed_baseline_rows
from tests.test_safety_upgrade import make_studio


def _write_something(db: Path, n: int) -> None:
    connection = sqlite3.connect(db)
    with connection:
        connection.execute(
            "INSERT INTO clients (first_name, last_name, email, created_at, updated_at)"
            " VALUES ('Rec', 'Ord', ?, ?, ?)",
            (f"record{n}-{time.monotonic_ns()}@example.com", STAMP, STAMP),
        )
    connection.close()


def _settle(db: Path) -> None:
    """As a file the app last wrote an hour ago: its modification time tells (see SETTLE)."""
    past = time.time() - 3600
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            os.utime(path, (past, past))


def test_a_future_dated_or_misnamed_file_never_displaces_a_real_backup(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    real = []
    for n in range(KEEP_BACKUPS):
        _write_something(db, n)
        real.append(backup_database(db, label=f"n{n}"))
    folder = db.parent / "backups"
    # Files anyone can put there, named like backups from the far future or near the top.
    strangers = [
        folder / "inklink-29991231T235959999999Z-zzzz.db",
        folder / "inklink-20991231T235959000000Z-imported.db",
        folder / "inklink-99999999T999999999999Z-x.db",
        folder / "inklink-backup.db",
    ]
    for stranger in strangers:
        shutil.copy(real[0], stranger)
    # The name of a real backup, now another file: not what was made, never listed.
    _write_something(db, 100)
    newest = backup_database(db, label="newest")

    listed = list_backups(db)
    assert listed[0] == newest
    assert listed == [newest, *reversed(real[1:])], "rotation did not go by the record"
    assert not real[0].exists(), "the oldest real backup should have been rotated away"
    assert all(stranger.is_file() for stranger in strangers), "a file it did not make was deleted"
    assert not set(strangers) & set(listed)


def test_a_file_that_now_bears_a_backups_name_is_not_listed(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    made = backup_database(db, label="first")
    made.write_bytes(b"someone else's file")
    assert list_backups(db) == []
    _write_something(db, 1)
    again = backup_database(db, label="second")
    assert list_backups(db) == [again]


def test_an_unchanged_file_is_not_copied_again(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    _settle(db)
    first = backup_database(db, label="first")
    files = sorted((db.parent / "backups").iterdir())
    for n in range(KEEP_BACKUPS + 2):
        assert backup_database(db, label=f"again{n}") == first
    assert sorted((db.parent / "backups").iterdir()) == files
    assert list_backups(db) == [first]
    # Any commit is a change: the next backup is a new copy holding it.
    _write_something(db, 1)
    second = backup_database(db, label="second")
    assert second != first
    assert list_backups(db) == [second, first]


def test_a_just_written_file_is_copied_even_when_its_stamp_looks_unchanged(
    tmp_path: Path,
) -> None:
    """A write in the same clock tick as the last could keep every stamp: not trusted."""
    db = make_studio(tmp_path / "inklink.db")
    _write_something(db, 1)
    first = backup_database(db, label="first")
    assert backup_database(db, label="second") != first


def test_an_upgrade_that_fails_at_every_start_keeps_older_backups(tmp_path: Path) -> None:
    """Adopting a pre-migration file with an orphan payment fails verification every start."""
    (tmp_path / "studio").mkdir()
    db = legacy_database(tmp_path / "studio" / "inklink.db")
    seed_baseline_rows(db)
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")  # as the app leaves a file it used
    older = []
    for n in range(KEEP_BACKUPS - 1):  # history from earlier upgrades, each of another state
        connection.execute("UPDATE clients SET notes = ? WHERE id = 1", (f"visit {n}",))
        older.append(backup_database(db, label=f"older{n}"))
    connection.execute(
        "INSERT INTO transactions (client_id, session_id, kind, method, amount_cents,"
        " occurred_at, created_at) VALUES (999, NULL, 'payment', 'card', 5, ?, ?)",
        (STAMP, STAMP),
    )
    connection.close()
    _settle(db)

    for _start in range(KEEP_BACKUPS + 1):
        result = run_python(
            "from data.db.session import init_db\ninit_db()", env=subprocess_env(db), check=False
        )
        assert result.returncode != 0
        assert "SchemaVerificationError" in result.stderr, result.stderr
    listed = list_backups(db)
    assert listed[1:] == list(reversed(older)), "an older backup was rotated away"
    assert len(listed) == KEEP_BACKUPS  # one copy of the failing file, made at its first start
    assert query(listed[0], "SELECT count(*) FROM transactions WHERE client_id = 999") == [(1,)]


def test_the_record_says_what_each_copy_is_and_keeps_fields_it_does_not_know(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "inklink.db")
    head = recorded_history().head
    made = backup_database(db, label=head)
    record = json.loads(record_path(db).read_text())
    (entry,) = record["copies"]
    assert entry["file"] == made.name
    assert entry["kind"] == "backup"
    assert entry["revision"] == head
    assert entry["size"] == made.stat().st_size
    assert entry["made_at"].endswith("+00:00")
    assert os.stat(record_path(db)).st_mode & 0o077 == 0
    # A newer version's fields (row counts, verification) survive this version's rewrites.
    entry["rows"] = {"clients": 20}
    record_path(db).write_text(json.dumps(record))
    _write_something(db, 1)
    backup_database(db, label=head)
    first = next(
        e for e in json.loads(record_path(db).read_text())["copies"] if e["file"] == made.name
    )
    assert first["rows"] == {"clients": 20}

    aside = restore_backup(made, db)
    kinds = {e["file"]: e["kind"] for e in json.loads(record_path(db).read_text())["copies"]}
    assert kinds[aside.name] == "replaced"
    assert aside not in list_backups(db)


def test_a_damaged_record_hides_nothing_it_would_delete_and_is_kept(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    first = backup_database(db, label="first")
    record_path(db).write_text("{not json")
    assert list_backups(db) == []
    _write_something(db, 1)
    second = backup_database(db, label="second")
    assert list_backups(db) == [second]
    assert first.is_file(), "a backup the damaged record named was deleted"
    assert list(db.parent.glob(record_path(db).name + ".damaged-*"))
