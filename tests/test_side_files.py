"""Side files are recovered, never trusted blindly (issue 12, item 2).

SQLite replays whatever ``-wal`` or hot ``-journal`` lies beside a file on its first open,
whatever database it came from. A crash's own side files must still be recovered with every
committed row; one that does not belong must never silently replace the studio's rows: the
file and its side files are kept as they were first, and the outcome or refusal says so.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_python, sha256, subprocess_env
from tests.file_kind import connect, is_encrypted, studio_key

# On a plain file and on an encrypted one (see conftest.file_kind).
pytestmark = pytest.mark.usefixtures("file_kind")

INIT_DB = """
from data.db.session import init_db
from data.db.errors import DataLayerError
try:
    outcome = init_db()
    print("ACTION", outcome.action)
    print("NOTE", outcome.note)
except DataLayerError as exc:
    print("REFUSED", type(exc).__name__, exc)
"""

# Commits rows in WAL mode with checkpoints off, says so, then waits to be killed: the
# -wal (with the committed rows) and its -shm stay behind as a crash leaves them.
WAL_WRITER = """
import sys, time
from tests.file_kind import connect, is_encrypted, studio_key
connection = connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA journal_mode = WAL")
connection.execute("PRAGMA wal_autocheckpoint = 0")
for number in range(int(sys.argv[2])):
    connection.execute(
        "INSERT INTO clients (first_name, last_name, created_at, updated_at) VALUES "
        "(?, 'Walker', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')",
        (f"wal{number}",),
    )
print("COMMITTED", flush=True)
time.sleep(600)
"""

# Starts a write in rollback-journal mode that spills to the file, then waits to be killed:
# the -journal left behind is hot.
JOURNAL_WRITER = """
import sys, time
from tests.file_kind import connect, is_encrypted, studio_key
connection = connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA journal_mode = DELETE")
connection.execute("PRAGMA cache_size = 1")
connection.execute("BEGIN")
connection.execute("UPDATE filler SET payload = upper(payload)")
print("WRITING", flush=True)
time.sleep(600)
"""


def studio(path: Path, clients: int) -> Path:
    """A database at head through init_db(), with ``clients`` rows, closed cleanly."""
    result = run_python(INIT_DB, path)
    assert "ACTION created" in result.stdout, result.stdout + result.stderr
    connection = connect(path, isolation_level=None)
    try:
        for number in range(clients):
            connection.execute(
                "INSERT INTO clients (first_name, last_name, created_at, updated_at) VALUES "
                "(?, 'Studio', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')",
                (f"client{number}",),
            )
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert is_encrypted(path) == bool(studio_key())
    return path


def count_clients(path: Path) -> int:
    connection = connect(path, read_only=True)
    try:
        return int(connection.execute("SELECT count(*) FROM clients").fetchone()[0])
    finally:
        connection.close()


def killed_after(script: str, *args: str, ready: str) -> None:
    """Run ``script`` until it prints ``ready``, then SIGKILL it, as a crash would."""
    with subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(None),
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == ready
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)


def kept_folders(db: Path) -> list[Path]:
    folder = db.parent / "backups"
    return sorted(folder.glob(f"{db.stem}-before-recovery-*")) if folder.is_dir() else []


def test_a_crashs_own_wal_is_recovered_with_every_committed_row(tmp_path: Path) -> None:
    db = studio(tmp_path / "studio" / "inklink.db", clients=5)
    killed_after(WAL_WRITER, str(db), "12", ready="COMMITTED")
    assert Path(f"{db}-wal").stat().st_size > 0
    result = run_python(INIT_DB, db)
    assert "ACTION current" in result.stdout, result.stdout + result.stderr
    assert count_clients(db) == 17
    # Its own -shm vouches for it: nothing to keep aside, nothing to warn about.
    assert any(line.strip() == "NOTE" for line in result.stdout.splitlines()), result.stdout
    assert kept_folders(db) == []


def test_a_foreign_wal_is_kept_with_the_file_before_it_is_applied_and_reported(
    tmp_path: Path,
) -> None:
    db = studio(tmp_path / "studio" / "inklink.db", clients=31)
    other = studio(tmp_path / "other" / "inklink.db", clients=2)
    killed_after(WAL_WRITER, str(other), "3", ready="COMMITTED")
    # Another database's -wal, copied beside the studio's file (its -shm not with it).
    shutil.copyfile(f"{other}-wal", f"{db}-wal")
    before = sha256(db)
    foreign = sha256(Path(f"{db}-wal"))

    result = run_python(INIT_DB, db)

    output = result.stdout + result.stderr
    (kept,) = kept_folders(db)
    assert sha256(kept / db.name) == before, "the file was not kept as it was"
    assert sha256(kept / f"{db.name}-wal") == foreign
    alone = tmp_path / "kept-alone.db"  # the kept file by itself, without the foreign -wal
    shutil.copyfile(kept / db.name, alone)
    assert count_clients(alone) == 31
    assert str(kept) in output, output
    assert "inklink.db-wal" in output
    # Never a silent "current": the app is told, with the way back.
    assert not any(line.strip() == "NOTE" for line in result.stdout.splitlines()), output


def test_a_foreign_hot_journal_is_kept_first_and_no_message_claims_nothing_changed(
    tmp_path: Path,
) -> None:
    # A pre-migration file in rollback-journal mode, and another database's hot journal.
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir(parents=True)
    other = tmp_path / "other.db"
    for path, rows in ((db, 40), (other, 400)):
        connection = connect(path, isolation_level=None)
        connection.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, payload TEXT)")
        connection.executemany(
            "INSERT INTO filler (payload) VALUES (?)", [("x" * 500,) for _ in range(rows)]
        )
        connection.close()
    killed_after(JOURNAL_WRITER, str(other), ready="WRITING")
    assert Path(f"{other}-journal").stat().st_size > 0
    shutil.copyfile(f"{other}-journal", f"{db}-journal")
    before = sha256(db)

    result = run_python(INIT_DB, db)

    output = result.stdout + result.stderr
    (kept,) = kept_folders(db)
    assert sha256(kept / db.name) == before
    assert (kept / f"{db.name}-journal").is_file()
    assert str(kept) in output, output
    assert "The file was not changed" not in output, output


def test_the_side_file_check_reads_no_database(tmp_path: Path) -> None:
    from data.migration.raw_sqlite import unvouched_side_files

    db = tmp_path / "inklink.db"
    assert unvouched_side_files(db) == []
    Path(f"{db}-journal").write_bytes(b"\0" * 512)  # a zeroed (persisted) journal: not hot
    assert unvouched_side_files(db) == []
