"""Real processes: eight app windows starting at once, a held lock, and SIGKILL mid-upgrade."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from data.db.errors import DatabaseBusyError
from data.db.head import HEAD_REVISION
from data.db.runner import ensure_current
from data.db.session import create_app_engine
from tests.conftest import PROJECT_ROOT, run_alembic, sqlite_url, subprocess_env
from tests.file_kind import connect
from tests.scratch import Revision, ScratchProject, query
from tests.test_safety_upgrade import make_studio

# On a plain file and on an encrypted one (see conftest.file_kind).
pytestmark = pytest.mark.usefixtures("file_kind")

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
        import os, pathlib
        # Tells the test the migration itself has started: imports and backup are done.
        # (Unset when the revision is recorded: the export is replayed in memory.)
        if os.environ.get("INKLINK_TEST_MARKER"):
            pathlib.Path(os.environ["INKLINK_TEST_MARKER"]).touch()
        with op.batch_alter_table("transactions", recreate="always") as batch:
            batch.alter_column("note", existing_type=sa.Text(), type_=sa.Text())
    """,
)
ROWS = 300_000


def _big_studio(db: Path) -> None:
    make_studio(db, clients=50)
    connection = connect(db)
    with connection:
        connection.executemany(
            "INSERT INTO transactions (client_id, session_id, kind, method, amount_cents,"
            " occurred_at, created_at) VALUES (?, ?, 'payment', 'cash', ?, ?, ?)",
            (
                (
                    n % 50 + 1,
                    n % 50 + 1,
                    100 + n % 997,
                    "2026-01-01 10:00:00.000000",
                    "2026-01-01 10:00:00.000000",
                )
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


INIT_DB = "from data.db.session import init_db\nprint(init_db().action, flush=True)"
POLL = 0.005
WAIT_LIMIT = 120.0


def _start_init_db(project: ScratchProject, db: Path, marker: Path) -> subprocess.Popen[str]:
    marker.unlink(missing_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", INIT_DB],
        env=project.env(db, INKLINK_TEST_MARKER=str(marker)),
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until(child: subprocess.Popen[str], seen: Callable[[], bool]) -> bool:
    """Poll until ``seen()``; False if the child exited first. Bounded, for a loaded machine."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not seen():
        if child.poll() is not None:
            return seen()
        assert time.monotonic() < deadline, "the child neither got there nor exited"
        time.sleep(POLL)
    return True


def _kill(child: subprocess.Popen[str]) -> bool:
    """SIGKILL the child; True if it was still running (it did not finish on its own)."""
    child.send_signal(signal.SIGKILL)
    _out, err = child.communicate(timeout=WAIT_LIMIT)
    if child.returncode != -signal.SIGKILL:
        assert child.returncode == 0, err
    return child.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_at_any_moment_of_a_long_upgrade_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "studio" / "inklink.db"
    _big_studio(db)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(REBUILD_TRANSACTIONS)
    marker = tmp_path / "migration-started"
    # Closed at once: a connection this process kept open would lose its POSIX locks when
    # the copies below read the file (any close of a descriptor drops them), and a child
    # that then found itself the file's last user would delete the -wal and -shm under it;
    # its next read (or checkpoint) through them damaged the file (the test's own doing).
    checkpoint = connect(db)
    try:
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        checkpoint.close()

    # Calibrate on copies: how long the upgrade runs once the revision's upgrade() has
    # started (migration, verify, commit, exit). Anchored to the marker, so interpreter
    # start-up and the backup, however slow on a loaded machine, are not part of it. The
    # first run also compiles the scratch project, so the second one is used.
    windows = []
    for attempt in range(2):
        calibration = tmp_path / f"calibration-{attempt}" / "inklink.db"
        calibration.parent.mkdir()
        calibration.write_bytes(db.read_bytes())
        child = _start_init_db(project, calibration, marker)
        assert _wait_until(child, marker.exists)
        started = time.monotonic()
        out, err = child.communicate(timeout=WAIT_LIMIT)
        windows.append(time.monotonic() - started)
        assert child.returncode == 0 and out.strip() == "upgraded", err
    window = windows[-1]

    # The backup phase: kill as soon as the backup's partial file shows up (before the
    # migration starts). Not counted below: the backup may finish before it is seen.
    partials = db.parent / "backups"
    child = _start_init_db(project, db, marker)
    _wait_until(child, lambda: any(partials.glob("*.partial")) or marker.exists())
    _kill(child)
    assert _intact(db) == HEAD_REVISION

    killed_mid_upgrade = 0
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
        child = _start_init_db(project, db, marker)
        started = _wait_until(child, marker.exists)
        if started:
            time.sleep(window * fraction)
        killed = _kill(child)
        # Only a kill after upgrade() began, with the child still running, counts.
        killed_mid_upgrade += int(started and killed)
        revision = _intact(db)
        assert revision in (HEAD_REVISION, REBUILD_TRANSACTIONS.revision)
        if revision == REBUILD_TRANSACTIONS.revision:
            break
    assert killed_mid_upgrade >= 3, (
        f"only {killed_mid_upgrade} kills landed while the migration ran (window {window:.2f}s)"
    )

    result = project.python(INIT_DB, db, INKLINK_TEST_MARKER=str(marker))
    assert result.stdout.strip() in ("upgraded", "current")
    assert _intact(db) == REBUILD_TRANSACTIONS.revision
    assert not list((db.parent / "backups").glob("*.partial"))
