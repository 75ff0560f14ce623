"""Encrypted at rest: the file is unreadable without its key, and the key never loses a studio's data.

Every test works on real files under tmp_path, through real child processes (the app's
start, ``python -m data.db ...``, the ``alembic`` command); the keyring is a file of the
test's own (tests/keyring_backend.py, selected through PYTHON_KEYRING_BACKEND).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from data.db import keys
from tests.app_start import start_app
from tests.conftest import PROJECT_ROOT, run_alembic, run_python, sha256
from tests.file_kind import is_encrypted
from tests.scratch import query
from tests.studio_data import seed_baseline_rows, studio_invariants
from tests.test_revision_manifest import run_in
from tests.test_safety_refusals import corrupted_pages

RECOVERY = re.compile(r"^    ([0-9A-Z]{4}(?:-[0-9A-Z]{4}){6})$", re.MULTILINE)
# A name only the seeded studio has: found in a file, it means the file is readable.
SECRET_NAME = "Zephyrine-Quillfeather"


@pytest.fixture(autouse=True)
def own_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A keyring of this test only, which its child processes share."""
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("INKLINK_TEST_KEYRING", str(path))
    return path


def keyring_entries(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


def data_db(
    *args: str, db_path: Path, stdin: str = "", **extra: str
) -> subprocess.CompletedProcess[str]:
    """``python -m data.db <args>``, as a deploy script or a support call runs it."""
    return run_in(PROJECT_ROOT, "-m", "data.db", *args, db_path=db_path, stdin=stdin, **extra)


def plain_studio(db_path: Path) -> Path:
    """A plain studio at head with realistic rows, as a build before encryption left it."""
    report = start_app(db_path)
    assert report["action"] == "created", report
    seed_baseline_rows(db_path)
    import sqlite3

    connection = sqlite3.connect(db_path)
    try:
        with connection:
            connection.execute(
                "UPDATE clients SET last_name = ?, notes = 'allergic to latex' WHERE id = 1",
                (SECRET_NAME,),
            )
    finally:
        connection.close()
    return db_path


def readable_anywhere(folder: Path) -> list[Path]:
    """Every file under ``folder`` whose bytes hold the studio's secret name."""
    needle = SECRET_NAME.encode()
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and needle in p.read_bytes()]


def encrypt(db_path: Path, **extra: str) -> str:
    """``python -m data.db encrypt``, unattended; returns the recovery key it showed."""
    result = data_db("encrypt", db_path=db_path, **extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Backed up, encrypted with the new key and verified: " in result.stdout, result.stdout
    found = RECOVERY.findall(result.stdout)
    assert len(found) == 2, result.stdout
    return "-".join(found)


# --- the key -------------------------------------------------------------------------------


def test_a_recovery_key_reads_back_as_the_key_and_a_typo_is_caught() -> None:
    key = keys.new_key()
    written = key.recovery_key()
    assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){13}", written)
    assert keys.parse_recovery_key(written) == key
    # As a person types it back: lower case, spaces, an O for a zero, an L for a one.
    retyped = written.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert keys.parse_recovery_key(retyped) == key
    first = written[0]
    typo = ("Z" if first != "Z" else "Y") + written[1:]
    assert keys.parse_recovery_key(typo) is None
    assert keys.parse_any_key(key.hex()) == key
    assert key.hex() not in repr(key) and key.hex() not in str(key)


# --- new databases -------------------------------------------------------------------------


def test_a_new_database_is_created_encrypted_with_its_key_in_the_keyring(
    db_path: Path, own_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INKLINK_DB_ENCRYPTION", "on")
    report = start_app(db_path)
    assert report["action"] == "created", report
    assert is_encrypted(db_path)
    header = db_path.read_bytes()[:16]
    entries = keyring_entries(own_keyring)
    assert list(entries) == [f"InkLinkOS/database {header.hex()}"]
    # The next start is on the fast path: current, Alembic not even imported.
    again = start_app(db_path)
    assert again["action"] == "current" and again["alembic_imported"] is False, again
    assert entries[f"InkLinkOS/database {header.hex()}"] not in again["stderr"]


def test_init_db_hands_the_recovery_key_of_a_database_it_created_to_the_app_once(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INKLINK_DB_ENCRYPTION", "on")
    code = (
        "from data.db.session import init_db\n"
        "o = init_db(); print(o.recovery_key); print(repr(o)); print(o.describe())\n"
        "print(init_db().recovery_key)\n"
    )
    result = run_python(code, db_path)
    recovery, shown, described, second = result.stdout.splitlines()
    key = keys.parse_recovery_key(recovery)
    assert key is not None
    assert recovery not in shown and recovery not in described
    assert second == "None"
    assert query(db_path, "SELECT count(*) FROM clients", key=key.hex()) == [(0,)]


def test_a_plain_database_stays_plain_by_default_outside_the_user_folder(db_path: Path) -> None:
    assert start_app(db_path)["action"] == "created"
    assert not is_encrypted(db_path)


# --- encrypting a studio -------------------------------------------------------------------


def test_encrypt_converts_a_studio_without_losing_a_row_and_leaves_nothing_readable(
    db_path: Path, own_keyring: Path
) -> None:
    plain_studio(db_path)
    before = studio_invariants(db_path)
    # A plain backup, as every upgrade before this build made one.
    from data.migration.backup import backup_database, list_backups

    backup_database(db_path, label="before")
    assert readable_anywhere(db_path.parent)  # the test can see a plain copy
    # A second name for the plain file's blocks, outside the data folder: what the disk
    # still holds of them once the file is replaced.
    old_blocks = db_path.parent.parent / "old-blocks"
    os.link(db_path, old_blocks)

    recovery = encrypt(db_path)

    assert is_encrypted(db_path)
    assert readable_anywhere(db_path.parent) == []
    assert set(old_blocks.read_bytes()) == {0}, "the plain file's blocks were not zeroed"
    # The plain backup is gone; the one left was made right after, encrypted under the
    # database's key and identity, and holds every row.
    (backup,) = list_backups(db_path)
    assert backup.read_bytes()[:16] == db_path.read_bytes()[:16]
    key = keys.parse_recovery_key(recovery)
    assert key is not None
    assert studio_invariants(backup, key=key.hex()) == before
    assert keyring_entries(own_keyring) == {
        f"InkLinkOS/database {db_path.read_bytes()[:16].hex()}": key.hex()
    }
    assert studio_invariants(db_path, key=key.hex()) == before
    # The app opens it at its next start on the fast path, with the key from the keyring.
    report = start_app(db_path)
    assert report["action"] == "current" and report["alembic_imported"] is False, report


def test_encrypt_twice_changes_nothing_the_second_time(db_path: Path) -> None:
    plain_studio(db_path)
    encrypt(db_path)
    digest = sha256(db_path)
    result = data_db("encrypt", db_path=db_path)
    assert result.returncode == 0, result.stderr
    assert "already encrypted" in result.stdout.lower()
    assert sha256(db_path) == digest


def test_encrypt_refuses_a_damaged_file_and_leaves_it_as_it_was(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    corrupted_pages(db_path)
    digest = sha256(db_path)
    result = data_db("encrypt", db_path=db_path)
    assert result.returncode == 2  # refused (inklink-db exit codes)
    assert str(db_path) in result.stderr
    assert sha256(db_path) == digest
    assert sorted(p.name for p in db_path.parent.iterdir() if "encrypting" in p.name) == []


def test_with_inklink_db_key_the_keyring_is_never_touched_and_the_key_never_shown(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No keyring at all: any use of it would fail.
    monkeypatch.setenv("INKLINK_TEST_KEYRING", "")
    key_hex = secrets.token_hex(32)
    plain_studio(db_path)
    result = data_db("encrypt", db_path=db_path, INKLINK_DB_KEY=key_hex)
    assert result.returncode == 0, result.stderr
    assert key_hex not in result.stdout + result.stderr
    assert query(db_path, "SELECT count(*) FROM clients", key=key_hex) == [(20,)]
    monkeypatch.setenv("INKLINK_DB_KEY", key_hex)
    report = start_app(db_path)
    assert report["action"] == "current", report
    assert key_hex not in report["stderr"]


# --- the key is never the reason data is lost ----------------------------------------------


def test_a_missing_key_is_refused_and_nothing_is_made_in_its_place(
    db_path: Path, own_keyring: Path
) -> None:
    plain_studio(db_path)
    encrypt(db_path)
    own_keyring.unlink()  # the keyring lost its entry (a new user profile, a reinstall)
    digest, listing = sha256(db_path), sorted(p.name for p in db_path.parent.iterdir())
    report = start_app(db_path)
    assert report["error"] == "DatabaseKeyError" and report["data_layer"], report
    assert str(db_path) in report["message"] and "recovery key" in report["message"]
    assert sha256(db_path) == digest
    assert sorted(p.name for p in db_path.parent.iterdir()) == listing
    # The command line and the alembic command refuse it the same way.
    assert data_db(db_path=db_path).returncode != 0
    assert sha256(db_path) == digest
    alembic = run_alembic("upgrade", "head", db_path=db_path, check=False)
    assert alembic.returncode != 0 and "recovery key" in alembic.stdout + alembic.stderr
    assert sha256(db_path) == digest
    assert sorted(p.name for p in db_path.parent.iterdir()) == listing


def test_a_wrong_key_is_refused_and_the_file_stays_as_it_was(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_studio(db_path)
    encrypt(db_path)
    digest = sha256(db_path)
    monkeypatch.setenv("INKLINK_DB_KEY", secrets.token_hex(32))
    report = start_app(db_path)
    assert report["error"] == "DatabaseKeyError", report
    assert "does not open it" in report["message"] and str(db_path) in report["message"]
    assert sha256(db_path) == digest
    monkeypatch.setenv("INKLINK_DB_KEY", "not-a-key")
    report = start_app(db_path)
    assert report["error"] == "DatabaseKeyError" and "64 hex digits" in report["message"]
    assert "not-a-key" not in report["message"]
    assert sha256(db_path) == digest


def test_the_recovery_key_opens_the_database_when_the_keyring_entry_is_gone(
    db_path: Path, own_keyring: Path
) -> None:
    plain_studio(db_path)
    recovery = encrypt(db_path)
    own_keyring.unlink()
    assert start_app(db_path)["error"] == "DatabaseKeyError"
    wrong = data_db("unlock", db_path=db_path, stdin=keys.new_key().recovery_key() + "\n")
    assert wrong.returncode == 2 and "does not open it" in wrong.stderr
    digest = sha256(db_path)
    result = data_db("unlock", db_path=db_path, stdin=recovery.lower() + "\n")
    assert result.returncode == 0, result.stderr
    assert sha256(db_path) == digest
    assert start_app(db_path)["action"] == "current"


def test_a_plain_file_opened_by_a_build_expecting_encryption_is_not_called_damaged(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_studio(db_path)
    import sqlite3

    connection = sqlite3.connect(db_path)  # out of WAL: the start goes through the runner
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.close()
    before = studio_invariants(db_path)
    monkeypatch.setenv("INKLINK_DB_ENCRYPTION", "on")
    monkeypatch.setenv("INKLINK_DB_KEY", secrets.token_hex(32))
    report = start_app(db_path)
    assert report["action"] == "current", report
    assert run_alembic("upgrade", "head", db_path=db_path).returncode == 0
    assert not is_encrypted(db_path)
    assert studio_invariants(db_path) == before


# --- rekey and decrypt ---------------------------------------------------------------------


def test_rekey_gives_a_new_key_to_the_database_and_its_backups(
    db_path: Path, own_keyring: Path
) -> None:
    plain_studio(db_path)
    old = keys.parse_recovery_key(encrypt(db_path))
    assert old is not None
    from data.migration.backup import list_backups, restore_backup

    (backup,) = list_backups(db_path)  # the one encrypt made
    assert backup.read_bytes()[:16] == db_path.read_bytes()[:16]  # the database's identity

    result = data_db("rekey", db_path=db_path)
    assert result.returncode == 0, result.stderr
    new = keys.parse_recovery_key("-".join(RECOVERY.findall(result.stdout)))
    assert new is not None and new != old
    assert list(keyring_entries(own_keyring).values()) == [new.hex()]
    assert query(db_path, "SELECT count(*) FROM clients", key=new.hex()) == [(20,)]
    assert query(backup, "SELECT count(*) FROM clients", key=new.hex()) == [(20,)]
    # And one more, made after the change under the new key, as the command says.
    after_rekey, older = list_backups(db_path)
    assert older == backup
    assert f"verified: {after_rekey}\n" in result.stdout
    assert studio_invariants(after_rekey, key=new.hex()) == studio_invariants(
        db_path, key=new.hex()
    )
    digest = sha256(db_path)
    stale = start_app_with_key(db_path, old.hex())
    assert stale["error"] == "DatabaseKeyError"
    assert sha256(db_path) == digest
    # The backup, under the new key, restores.
    replaced = restore_backup(backup, db_path)
    assert replaced.exists()
    assert query(db_path, "SELECT count(*) FROM transactions", key=new.hex()) == [(100,)]
    assert start_app(db_path)["action"] == "current"


def test_encrypt_that_cannot_back_up_afterwards_still_succeeds_and_says_so(
    db_path: Path,
) -> None:
    """The backup comes after the file is encrypted and its key kept: failing it must not
    fail the command (its recovery key would go unseen), only be reported."""
    plain_studio(db_path)
    before = studio_invariants(db_path)
    (db_path.parent / "backups").write_text("a file where the backups folder goes")
    result = data_db("encrypt", db_path=db_path)
    assert result.returncode == 0, result.stderr
    key = keys.parse_recovery_key("-".join(RECOVERY.findall(result.stdout)))
    assert key is not None
    assert "No verified backup could be made after it" in result.stdout
    assert "Back the database up before its next change." in result.stdout
    assert studio_invariants(db_path, key=key.hex()) == before


def start_app_with_key(db_path: Path, key_hex: str) -> dict[str, object]:
    os.environ["INKLINK_DB_KEY"] = key_hex
    try:
        return start_app(db_path)
    finally:
        del os.environ["INKLINK_DB_KEY"]


def test_decrypt_makes_a_plain_copy_and_never_replaces_the_database_without_asking(
    db_path: Path,
) -> None:
    plain_studio(db_path)
    before = studio_invariants(db_path)
    encrypt(db_path)
    digest = sha256(db_path)
    copy = db_path.parent / "for-support.db"
    result = data_db("decrypt", "--output", str(copy), db_path=db_path)
    assert result.returncode == 0, result.stderr
    assert sha256(db_path) == digest
    assert not is_encrypted(copy)
    assert studio_invariants(copy) == before
    assert (copy.stat().st_mode & 0o777) == 0o600
    refused = data_db("decrypt", "--in-place", db_path=db_path)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert sha256(db_path) == digest
    in_place = data_db("decrypt", "--in-place", "--yes", db_path=db_path)
    assert in_place.returncode == 0, in_place.stderr
    assert not is_encrypted(db_path)
    assert studio_invariants(db_path) == before


# --- everything else on an encrypted file --------------------------------------------------


def test_the_alembic_command_creates_and_reads_an_encrypted_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_hex = secrets.token_hex(32)
    run_alembic("upgrade", "head", db_path=db_path, INKLINK_DB_KEY=key_hex)
    assert is_encrypted(db_path)
    current = run_alembic("current", db_path=db_path, INKLINK_DB_KEY=key_hex)
    assert "(head)" in current.stdout
    run_alembic("check", db_path=db_path, INKLINK_DB_KEY=key_hex)
    run_alembic("downgrade", "base", db_path=db_path, INKLINK_DB_KEY=key_hex)
    run_alembic("upgrade", "head", db_path=db_path, INKLINK_DB_KEY=key_hex)
    assert query(db_path, "SELECT count(*) FROM alembic_version", key=key_hex) == [(1,)]
    monkeypatch.setenv("INKLINK_DB_KEY", key_hex)
    assert start_app(db_path)["action"] == "current"


def test_reading_and_writing_sessions_of_one_thread_keep_their_own_connections_encrypted(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's promise (a reading session sees the last commit, never a write in progress)
    holds on an encrypted file: its engine pools connections as for a plain file."""
    from sqlalchemy import func, select
    from sqlalchemy.pool import QueuePool

    from data.db.cipher import cipher_url
    from data.db.runner import ensure_current
    from data.db.session import create_app_engine, create_session_factory
    from data.models import Client

    monkeypatch.setenv("INKLINK_DB_KEY", secrets.token_hex(32))
    db_path.parent.mkdir(parents=True)
    engine = create_app_engine(cipher_url(str(db_path)))
    try:
        assert ensure_current(engine).action == "created"
        assert isinstance(engine.pool, QueuePool)
        writing = create_session_factory(engine)
        reading = create_session_factory(engine, read_only=True)
        with writing() as db, db.begin():
            db.add(Client(first_name="Ada", last_name="Lovelace"))
            db.flush()
            with reading() as look:
                assert look.scalar(select(func.count()).select_from(Client)) == 0
        with reading() as look:
            assert look.scalar(select(func.count()).select_from(Client)) == 1
    finally:
        engine.dispose()
    assert is_encrypted(db_path)


def test_a_key_change_stopped_before_the_keyring_took_the_new_key_loses_nothing(
    db_path: Path, own_keyring: Path
) -> None:
    """``rekey`` puts the new key in the keyring (pending) before the file takes it: the
    state a crash right after ``PRAGMA rekey`` leaves still opens, and is repaired."""
    import sqlcipher3  # type: ignore[import-untyped]

    plain_studio(db_path)
    old = keys.parse_recovery_key(encrypt(db_path))
    assert old is not None
    new = keys.new_key()
    salt = db_path.read_bytes()[:16].hex()
    entries = keyring_entries(own_keyring)
    entries[f"InkLinkOS/database {salt} next"] = new.hex()
    own_keyring.write_text(json.dumps(entries))
    connection = sqlcipher3.connect(str(db_path))
    try:
        connection.execute(f"PRAGMA key = \"x'{old.hex()}'\"")
        connection.execute(f"PRAGMA rekey = \"x'{new.hex()}'\"")
    finally:
        connection.close()

    report = start_app(db_path)
    assert report.get("action") == "current", report
    assert keyring_entries(own_keyring) == {f"InkLinkOS/database {salt}": new.hex()}
    assert start_app(db_path)["action"] == "current"


def test_rekey_shows_the_new_recovery_key_before_it_changes_the_file(db_path: Path) -> None:
    plain_studio(db_path)
    encrypt(db_path)
    result = data_db("rekey", db_path=db_path)
    assert result.returncode == 0, result.stderr
    shown, done = result.stdout.index("Recovery key"), result.stdout.index("Rekeyed.")
    assert shown < done


def test_without_a_keyring_a_new_encrypted_database_is_refused_and_no_file_is_made(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INKLINK_TEST_KEYRING", "")  # a machine with no keyring
    monkeypatch.setenv("INKLINK_DB_ENCRYPTION", "on")
    report = start_app(db_path)
    assert report["error"] == "DatabaseKeyError", report
    assert "INKLINK_DB_KEY" in report["message"] and str(db_path) in report["message"]
    assert not db_path.exists()


def test_the_alembic_command_shows_the_recovery_key_of_a_database_it_creates(
    db_path: Path, own_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INKLINK_DB_ENCRYPTION", "on")
    result = run_alembic("upgrade", "head", db_path=db_path)
    key = keys.parse_recovery_key("-".join(RECOVERY.findall(result.stdout)))
    assert key is not None, result.stdout
    assert list(keyring_entries(own_keyring).values()) == [key.hex()]
    assert key.recovery_key() not in result.stderr  # the log never has it
    assert run_alembic("upgrade", "head", db_path=db_path).stdout.count("Recovery key") == 0


def test_the_status_command_explains_a_missing_key(db_path: Path, own_keyring: Path) -> None:
    plain_studio(db_path)
    encrypt(db_path)
    own_keyring.unlink()
    result = data_db(db_path=db_path)
    assert result.returncode == 2  # refused: the key is missing
    assert "Traceback" not in result.stderr and "recovery key" in result.stderr


# --- what stays off the disk ----------------------------------------------------------------


def _temporary_data_in_memory(execute: Callable[[str], Any]) -> bool:
    """Whether SQLite keeps this connection's sorts and temporary tables in memory: its
    ``temp_store`` (0 default, 1 file, 2 memory) under the build's ``TEMP_STORE`` (0 and 3
    cannot be overridden; 1 and 2 are defaults)."""
    (setting,) = execute("PRAGMA temp_store").fetchone()
    built = execute(
        "SELECT compile_options FROM pragma_compile_options "
        "WHERE compile_options LIKE 'TEMP_STORE=%'"
    ).fetchone()
    default = int(built[0].split("=")[1]) if built else 1
    if default in (0, 3):
        return default == 3
    return setting == 2 or (setting == 0 and default == 2)


def test_sorts_and_temporary_tables_of_an_encrypted_file_stay_in_memory(db_path: Path) -> None:
    # SQLCipher encrypts the file and its -wal, not SQLite's temporary files: with
    # temp_store = FILE an index build writes the sorted keys to a temporary file in the
    # clear (seen with strace on sqlcipher3 0.6.4). It would make large index builds faster
    # (README, "Performance"); no connection the data layer opens may turn it on.
    from data.db.cipher import cipher_url
    from data.db.policy import create_migration_engine
    from data.db.session import create_app_engine
    from data.migration import raw_sqlite

    key = f"x'{secrets.token_hex(32)}'"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    raw = raw_sqlite.connect(db_path, key=key)
    try:
        raw.execute("CREATE TABLE t (x)")
        assert _temporary_data_in_memory(raw.execute)
    finally:
        raw.close()
    assert is_encrypted(db_path)
    for make in (create_app_engine, create_migration_engine):
        engine = make(cipher_url(str(db_path), key))
        try:
            with engine.connect() as connection:
                driver = connection.connection.driver_connection
                assert driver is not None
                assert _temporary_data_in_memory(driver.execute), make.__name__
        finally:
            engine.dispose()
