"""Real processes: eight app windows starting at once, a held lock, and SIGKILL mid-upgrade."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from data.db.errors import DatabaseBusyError
from data.db.head import HEAD_REVISION
from data.db.runner import ensure_current
from data.db.session import create_app_engine
from tests.conftest import PROJECT_ROOT, run_alembic, sqlite_url, subprocess_env
from tests.scratch import Revision, ScratchProject, query
from tests.test_safety_upgrade import make_studio

WAIT_THEN_INIT = """
import os, sys, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.005)
from data.db.session import init_db
outcome = init_db()
print("OUTCOME", outcome.action)
"""


def _start_together(env: dict[str, str], cwd: Path, go: Path, count: int = 8) -> list[str]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WAIT_THEN_INIT, str(go)],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    time.sleep(1.0)  # let every interpreter start and wait at the line
    go.touch()
    results = [child.communicate(timeout=300) for child in children]
    failures = [
        err for child, (_out, err) in zip(children, results, strict=True) if child.returncode
    ]
    assert not failures, failures
    return sorted(out.split()[-1] for out, _err in results)


def test_eight_processes_create_a_new_database_once(tmp_path: Path) -> None:
    db = tmp_path / "studio" / "inklink.db"
    actions = _start_together(subprocess_env(db), PROJECT_ROOT, tmp_path / "go")
    assert actions == ["created"] + ["current"] * 7
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


LOG_ONCE = Revision(
    "a11ce0000001",
    upgrade="""
        op.create_table("upgrade_runs", sa.Column("id", sa.Integer(), primary_key=True))
        op.execute("INSERT INTO upgrade_runs DEFAULT VALUES")
    """,
)
NOT_IDEMPOTENT = Revision(
    "a11ce0000002",
    upgrade="""
        op.execute("UPDATE clients SET notes = coalesce(notes, '') || '+'")
        op.execute("INSERT INTO upgrade_runs DEFAULT VALUES")
    """,
)


def test_eight_processes_upgrade_a_database_two_revisions_behind_once(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    project = ScratchProject(tmp_path / "newer-app")
    project.add(LOG_ONCE)
    project.add(NOT_IDEMPOTENT)
    actions = _start_together(project.env(db), project.root, tmp_path / "go")
    assert actions == ["current"] * 7 + ["upgraded"]
    assert query(db, "SELECT DISTINCT notes FROM clients") == [("+",)]
    assert query(db, "SELECT count(*) FROM upgrade_runs") == [(2,)]
    assert query(db, "SELECT version_num FROM alembic_version") == [(NOT_IDEMPOTENT.revision,)]


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    """Another process holding the migration lock, as a long upgrade in another window would."""
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom filelock import FileLock\n"
            "lock = FileLock(sys.argv[1] + '.lock')\nlock.acquire()\n"
            "print('held', flush=True)\ntime.sleep(120)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    yield db
    holder.kill()
    holder.communicate()


def test_waiting_for_the_lock_is_bounded_with_a_clear_error(held_lock: Path) -> None:
    engine = create_app_engine(sqlite_url(held_lock))
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseBusyError) as raised:
            ensure_current(engine, lock_timeout=1.0)
    finally:
        engine.dispose()
    assert time.monotonic() - started < 10
    assert str(held_lock) in str(raised.value)
    assert "another process" in str(raised.value)
    assert not held_lock.exists()


def test_alembic_command_waits_for_the_same_lock(held_lock: Path) -> None:
    result = run_alembic(
        "upgrade", "head", db_path=held_lock, check=False, INKLINK_LOCK_TIMEOUT="1"
    )
    assert result.returncode != 0
    assert f"FAILED: Database {held_lock}: another process" in result.stdout + result.stderr
    assert not held_lock.exists()


REBUILD_TRANSACTIONS = Revision(
    "deadbeef0001",
    doc="rebuild transactions (a long table copy)",
    upgrade="""
        with op.batch_alter_table("transactions", recreate="always") as batch:
            batch.alter_column("note", existing_type=sa.Text(), type_=sa.Text())
    """,
)
ROWS = 300_000


def _big_studio(db: Path) -> None:
    make_studio(db, clients=50)
    connection = sqlite3.connect(db)
    with connection:
        connection.executemany(
            "INSERT INTO transactions (client_id, session_id, kind, method, amount_cents,"
            " occurred_at, created_at) VALUES (?, ?, 'payment', 'cash', ?, ?, ?)",
            (
                (n % 50 + 1, n % 50 + 1, 100 + n % 997, "2026-01-01 10:00:00.000000", "2026-01-01")
                for n in range(ROWS - 250)
            ),
        )
    connection.close()


def _intact(db: Path) -> str:
    """The revision the database is at, after checking that nothing was lost or left over."""
    assert query(db, "SELECT count(*) FROM transactions") == [(ROWS,)]
    assert query(db, "SELECT count(*) FROM clients") == [(50,)]
    assert query(db, "PRAGMA quick_check") == [("ok",)]
    assert query(db, "SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp%'") == []
    (version,) = query(db, "SELECT version_num FROM alembic_version")
    return str(version[0])


@pytest.mark.slow
def test_sigkill_at_any_moment_of_a_long_upgrade_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "studio" / "inklink.db"
    _big_studio(db)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(REBUILD_TRANSACTIONS)
    code = "from data.db.session import init_db\nprint(init_db().action, flush=True)"

    # Calibrate on copies: how long the whole upgrade takes here, imports included (the
    # first run also compiles the scratch project, so the second one is timed).
    sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    durations = []
    for attempt in range(2):
        calibration = tmp_path / f"calibration-{attempt}" / "inklink.db"
        calibration.parent.mkdir()
        calibration.write_bytes(db.read_bytes())
        started = time.monotonic()
        project.python(code, calibration)
        durations.append(time.monotonic() - started)
    duration = durations[-1]

    killed_mid_upgrade = 0
    for fraction in (0.15, 0.35, 0.5, 0.65, 0.8, 0.95):
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            env=project.env(db),
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(duration * fraction)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        killed_mid_upgrade += child.returncode == -signal.SIGKILL
        assert _intact(db) in (HEAD_REVISION, REBUILD_TRANSACTIONS.revision)
        if _intact(db) == REBUILD_TRANSACTIONS.revision:
            break
    assert killed_mid_upgrade >= 3, "the kills must land while the upgrade runs"

    result = project.python(code, db)
    assert result.stdout.strip() in ("upgraded", "current")
    assert _intact(db) == REBUILD_TRANSACTIONS.revision
    assert not list((db.parent / "backups").glob("*.partial"))
