"""A restore never loses a commit: other windows' writers are excluded for the whole restore.

Real processes write through the app's engine (BEGIN IMMEDIATE, WAL, its busy timeout) and log
each row after its commit returned; every logged row must be in the copy kept aside (committed
before the restore) or in the restored database (committed after it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.db.backup import backup_database, restore_backup
from data.db.errors import DatabaseBusyError
from tests.conftest import PROJECT_ROOT, subprocess_env
from tests.scratch import query
from tests.test_safety_upgrade import make_studio

# On a plain file and on an encrypted one (see conftest.file_kind).
pytestmark = pytest.mark.usefixtures("file_kind")

# Inserts clients one transaction at a time until the stop file appears; after each commit
# returns, prints "<id> <email>" (ids are reused after a restore; the emails are not).
LOOP_WRITER = """
import sys, time
from pathlib import Path
from sqlalchemy import text
from data.db.session import create_app_engine, database_url
db, stop = Path(sys.argv[1]), Path(sys.argv[2])
engine = create_app_engine(database_url(str(db)))
print("ready", flush=True)
n = 0
while not stop.exists():
    n += 1
    email = f"loop{n}@load.test"
    try:
        with engine.begin() as connection:
            row_id = connection.execute(
                text("INSERT INTO clients (first_name, last_name, email, created_at, updated_at)"
                     " VALUES ('Load', 'Writer', :email, '2026-03-01 10:00:00.000000',"
                     " '2026-03-01 10:00:00.000000') RETURNING id"),
                {"email": email},
            ).scalar_one()
    except Exception as exc:  # not committed: nothing to log
        print("failed", email, type(exc).__name__, exc, file=sys.stderr, flush=True)
        continue
    print(row_id, email, flush=True)
    time.sleep(0.002)
engine.dispose()
print("stopped", flush=True)
"""

# Opens one transaction, inserts a client, says so, holds it for argv[2] seconds, commits.
LONG_WRITER = """
import sys, time
from pathlib import Path
from sqlalchemy import text
from data.db.session import create_app_engine, database_url
engine = create_app_engine(database_url(sys.argv[1]))
with engine.begin() as connection:
    row_id = connection.execute(
        text("INSERT INTO clients (first_name, last_name, email, created_at, updated_at)"
             " VALUES ('Long', 'Writer', 'long@load.test', '2026-03-01 10:00:00.000000',"
             " '2026-03-01 10:00:00.000000') RETURNING id")
    ).scalar_one()
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
print(row_id, "long@load.test", flush=True)
engine.dispose()
"""


def _start(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=subprocess_env(),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(db: Path) -> set[tuple[object, ...]]:
    return set(query(db, "SELECT id, email FROM clients WHERE email LIKE '%@load.test'"))


def _logged(output: str) -> set[tuple[object, ...]]:
    rows = set()
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            rows.add((int(parts[0]), parts[1]))
    return rows


def _wait_for_lines(handle: subprocess.Popen[str], count: int, seen: list[str]) -> None:
    assert handle.stdout is not None
    deadline = time.monotonic() + 120
    while len(seen) < count:
        assert time.monotonic() < deadline, f"the writer logged only {seen}"
        line = handle.stdout.readline()
        assert line, f"the writer ended: {handle.communicate()}"
        seen.append(line)


@pytest.mark.parametrize("long_writer", [False, True], ids=["loop", "loop and long writer"])
def test_a_restore_loses_no_commit_of_writers_running_across_it(
    tmp_path: Path, long_writer: bool
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    backup = backup_database(db, label="before")
    stop = tmp_path / "stop"
    loop = _start(LOOP_WRITER, str(db), str(stop))
    long = None
    try:
        loop_lines: list[str] = []
        _wait_for_lines(loop, 41, loop_lines)  # "ready" and 40 commits: well under way
        if long_writer:
            long = _start(LONG_WRITER, str(db), "3")
            long_lines: list[str] = []
            _wait_for_lines(long, 1, long_lines)
            assert long_lines == ["holding\n"]
        # The restore starts while one writer holds its transaction open and another loops.
        aside = restore_backup(backup, db, lock_timeout=120)
        _wait_for_lines(loop, len(loop_lines) + 40, loop_lines)  # 40 more, after the restore
    finally:
        stop.touch()
        loop_out, loop_err = loop.communicate(timeout=120)
        long_out = long.communicate(timeout=120)[0] if long else ""
    assert loop.returncode == 0, loop_err
    logged = _logged("".join(loop_lines) + loop_out)
    long_row = _logged(long_out)
    assert len(long_row) == long_writer, long_out

    kept, restored = _rows(aside), _rows(db)
    lost = (logged | long_row) - kept - restored
    assert not lost, f"{len(lost)} committed rows are in neither file: {sorted(lost)[:10]}"
    # The long writer committed before the restore took effect: its row is in the copy aside.
    assert long_row <= kept
    # Both sides were exercised: commits before the restore, and after it on the restored file.
    assert len(logged & kept) >= 40
    assert len(logged & restored) >= 1
    assert not (kept & restored), "the restored file should hold only the backup's clients"
    assert query(db, "PRAGMA quick_check") == [("ok",)]
    assert query(aside, "PRAGMA quick_check") == [("ok",)]


def test_a_restore_gives_up_with_busy_after_its_timeout_and_changes_nothing(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    backup = backup_database(db, label="before")
    query(db, "SELECT 1")
    long = _start(LONG_WRITER, str(db), "20")
    try:
        lines: list[str] = []
        _wait_for_lines(long, 1, lines)
        started = time.monotonic()
        with pytest.raises(DatabaseBusyError) as raised:
            restore_backup(backup, db, lock_timeout=2)
        waited = time.monotonic() - started
    finally:
        long.kill()
        long.communicate(timeout=60)
    assert 1.5 <= waited < 15, waited
    assert str(db) in str(raised.value)
    assert "not changed" in str(raised.value)
    # Nothing was copied aside and the writer's killed transaction left no row.
    assert not list((db.parent / "backups").glob("*-replaced-*"))
    assert _rows(db) == set()
