"""Readers never wait for writers; a writer that waits too long gets DatabaseBusyError.

Another window is a real process holding a write transaction open on the same file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import PROJECT_ROOT, run_python, subprocess_env
from tests.test_safety_upgrade import make_studio

# On a plain file and on an encrypted one (see conftest.file_kind).
pytestmark = pytest.mark.usefixtures("file_kind")

# The other window: a writing session that adds a client, says so, then holds the write
# transaction open for HOLD seconds before rolling back.
HOLD_WRITE = """
import sys, time
from data.db.session import SessionLocal
from data.models import Client
with SessionLocal() as db, db.begin():
    db.add(Client(first_name="Held", last_name="Open"))
    db.flush()
    print("holding", flush=True)
    time.sleep(float(sys.argv[1]))
    raise SystemExit(0)
"""
HOLD_SECONDS = 20.0
# "Well under a second", with room for a loaded 2-core machine and a fresh interpreter.
PROMPT = 2.0


@pytest.fixture
def studio(tmp_path: Path) -> Path:
    return make_studio(tmp_path / "studio" / "inklink.db", clients=5)


@pytest.fixture
def writer(studio: Path) -> Iterator[subprocess.Popen[str]]:
    """Another window holding a write transaction on ``studio`` for HOLD_SECONDS."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE, str(HOLD_SECONDS)],
        env=subprocess_env(studio),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == "holding", line + child.stdout.read()
    yield child
    child.kill()
    child.communicate()


def _timed(code: str, db: Path, **env: str) -> tuple[float, str]:
    """Run ``code`` in another window; (seconds it took inside, what it printed)."""
    timed = f"import time\nstart = time.perf_counter()\n{code}\nprint('took', time.perf_counter() - start)"
    result = run_python(timed, env=subprocess_env(db, **env), timeout=120)
    lines = result.stdout.strip().splitlines()
    took = float(lines[-1].split()[1])
    return took, "\n".join(lines[:-1])


def test_init_db_at_head_returns_promptly_while_another_window_writes(
    studio: Path, writer: subprocess.Popen[str]
) -> None:
    took, said = _timed(
        "from data.db.session import init_db\nprint(init_db().action)",
        studio,
        INKLINK_BUSY_TIMEOUT="60",
    )
    assert said == "current"
    assert took < PROMPT, f"init_db() waited {took:.1f} s for another window's write"
    assert writer.poll() is None, "the writer must still be holding its transaction"


def test_a_reading_session_returns_promptly_and_sees_only_committed_rows(
    studio: Path, writer: subprocess.Popen[str]
) -> None:
    code = """
from sqlalchemy import func, select
from data.db.session import ReadSessionLocal
from data.models import Client
with ReadSessionLocal() as db, db.begin():
    print(db.scalar(select(func.count()).select_from(Client)))
    print(db.scalars(select(Client.last_name).where(Client.first_name == "Held")).all())
"""
    took, said = _timed(code, studio, INKLINK_BUSY_TIMEOUT="60")
    assert said.splitlines() == ["5", "[]"]
    assert took < PROMPT, f"a reading session waited {took:.1f} s for another window's write"
    assert writer.poll() is None


def test_a_writing_session_that_waits_too_long_gets_database_busy_error(
    studio: Path, writer: subprocess.Popen[str]
) -> None:
    code = """
from data.db.errors import DatabaseBusyError, DataLayerError
from data.db.session import SessionLocal
from data.models import Client
try:
    with SessionLocal() as db, db.begin():
        db.add(Client(first_name="Late", last_name="Saver"))
except DataLayerError as exc:
    print(type(exc).__name__, isinstance(exc, DatabaseBusyError))
    print(exc)
"""
    took, said = _timed(code, studio, INKLINK_BUSY_TIMEOUT="1")
    first, message = said.split("\n", 1)
    assert first == "DatabaseBusyError True", said
    assert str(studio) in message and "INKLINK_BUSY_TIMEOUT" in message
    # It waited about INKLINK_BUSY_TIMEOUT, not the default, nor for the writer to finish.
    assert 0.9 < took < 10, took


def test_a_reading_session_refuses_to_write(studio: Path) -> None:
    code = """
from sqlalchemy import func, select, text
from data.db.errors import ReadOnlySessionError
from data.db.session import ReadSessionLocal, SessionLocal
from data.models import Client
for attempt in ("orm", "sql"):
    try:
        with ReadSessionLocal() as db, db.begin():
            if attempt == "orm":
                db.add(Client(first_name="Not", last_name="Saved"))
                db.flush()
            else:
                db.execute(text("DELETE FROM clients"))
    except ReadOnlySessionError as exc:
        print("refused", attempt, "SessionLocal" in str(exc))
# The same pooled connections write again through a writing session.
with SessionLocal() as db, db.begin():
    db.add(Client(first_name="Saved", last_name="Later"))
with ReadSessionLocal() as db:
    print(db.scalar(select(func.count()).select_from(Client)))
"""
    result = run_python(code, studio)
    assert result.stdout.split("\n")[:3] == ["refused orm True", "refused sql True", "6"]


def test_busy_timeout_setting_reaches_every_app_connection(tmp_path: Path) -> None:
    code = """
from data.db.session import engine
with engine.connect() as connection:
    print(connection.exec_driver_sql("PRAGMA busy_timeout").scalar())
"""
    db = tmp_path / "inklink.db"
    default = run_python(code, env=subprocess_env(db)).stdout.split()
    chosen = run_python(code, env=subprocess_env(db, INKLINK_BUSY_TIMEOUT="2.5")).stdout.split()
    assert (default, chosen) == (["30000"], ["2500"])


def test_timing_is_measured_inside_the_child() -> None:
    # The bound above is on the child's own clock, so interpreter start-up on a loaded
    # machine does not count; a child that sleeps is seen as slow.
    start = time.perf_counter()
    took, said = _timed("time.sleep(0.3)\nprint('slept')", Path("/nonexistent/x.db"))
    assert said == "slept" and 0.3 <= took < time.perf_counter() - start


@pytest.mark.postgres
def test_a_reading_session_refuses_to_write_on_postgresql_too(pg_engine: Engine) -> None:
    from sqlalchemy import func, select

    from data.db.errors import ReadOnlySessionError
    from data.db.runner import ensure_current
    from data.db.session import create_session_factory
    from data.models import Client

    assert ensure_current(pg_engine).action == "created"
    reading = create_session_factory(pg_engine, read_only=True)
    writing = create_session_factory(pg_engine)
    with pytest.raises(ReadOnlySessionError, match="SessionLocal"), reading() as db, db.begin():
        db.add(Client(first_name="Not", last_name="Saved"))
    reading.remove()
    with writing() as db, db.begin():  # the pooled connection writes again
        db.add(Client(first_name="Saved", last_name="Later"))
    with reading() as db:
        assert db.scalar(select(func.count()).select_from(Client)) == 1
