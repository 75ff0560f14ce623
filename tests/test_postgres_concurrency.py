"""Several seats and a deploy starting at once on one server: the database is made exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from data.db.errors import DatabaseBusyError
from data.db.head import HEAD_REVISION, exported_schema, recorded_history
from data.db.runner import ensure_current, script_directory
from data.db.server import ADVISORY_LOCK_KEY, server_command_line_migration
from tests.conftest import PROJECT_ROOT, run_alembic
from tests.postgres import ServerDatabases, pg_env, plain, studio_at_head, versions
from tests.scratch import Revision, ScratchProject

pytestmark = pytest.mark.postgres

SEATS = 8

# Every child imports everything first, says it is ready, then waits for the start file,
# so that they really start their work at the same moment.
_WAIT = """
import os, sys, time
go = sys.argv[1]
open(f"{go}.ready.{os.getpid()}", "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
"""

INIT_DB = (
    "from data.db.session import init_db\n"
    + _WAIT
    + "outcome = init_db()\nprint('ACTION', outcome.action)\n"
)

# The real ``alembic`` command line (what the console script calls), started on the signal,
# with what env.py imports loaded beforehand so that it is as quick off the mark as the seats.
ALEMBIC = (
    "import alembic.command, data.db.server, data.db.session, data.models\n"
    "from alembic.config import main\n" + _WAIT + "main(argv=['upgrade', 'head'])\n"
)


def _race(
    codes: list[str], url: URL, tmp_path: Path, project: ScratchProject | None = None
) -> list[subprocess.CompletedProcess[str]]:
    go = tmp_path / f"go-{time.monotonic_ns()}"
    env = pg_env(url, tmp_path)
    if project is not None:
        env["PYTHONPATH"] = str(project.root)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(go)],
            env=env,
            cwd=project.root if project is not None else PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for code in codes
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob(f"{go.name}.ready.*"))) < len(children):
        assert time.monotonic() < deadline, "the children never got ready"
        assert all(child.poll() is None for child in children), "a child died while starting"
        time.sleep(0.01)
    go.touch()
    results = []
    for child, code in zip(children, codes, strict=True):
        stdout, stderr = child.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(code, child.returncode, stdout, stderr))
    failures = [r for r in results if r.returncode != 0]
    assert not failures, "\n---\n".join(r.stdout + r.stderr for r in failures)
    return results


def _actions(results: list[subprocess.CompletedProcess[str]]) -> list[str]:
    return sorted(
        line.split()[1]
        for r in results
        for line in r.stdout.splitlines()
        if line.startswith("ACTION")
    )


def _tables(url: URL) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        names = connection.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).scalars()
        found = set(names)
    engine.dispose()
    return found


def _head_tables() -> set[str]:
    """The head's tables (its exported schema) and Alembic's version table: made once each."""
    return set(exported_schema(HEAD_REVISION)) | {"alembic_version"}


def test_eight_seats_starting_at_once_create_the_database_once(pg_url: URL, tmp_path: Path) -> None:
    results = _race([INIT_DB] * SEATS, pg_url, tmp_path)
    assert _actions(results) == ["created"] + ["current"] * (SEATS - 1)
    assert versions(pg_url) == [HEAD_REVISION]
    assert _tables(pg_url) == _head_tables()


# Not idempotent: a second run in another process would fail on the table, or count twice.
LEDGER = Revision(
    "1ed6e4000001",
    doc="a loyalty ledger, seeded once",
    upgrade="""
        op.create_table(
            "loyalty_ledger",
            sa.Column("id", sa.Integer()),
            sa.PrimaryKeyConstraint("id", name="pk_loyalty_ledger"),
        )
        op.execute("INSERT INTO loyalty_ledger (id) SELECT id FROM clients")
    """,
    downgrade='op.drop_table("loyalty_ledger")',
)


def test_eight_seats_of_a_newer_app_upgrade_once(pg_url: URL, tmp_path: Path) -> None:
    studio_at_head(pg_url)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(LEDGER)
    results = _race([INIT_DB] * SEATS, pg_url, tmp_path, project)
    assert _actions(results) == ["current"] * (SEATS - 1) + ["upgraded"]
    assert versions(pg_url) == [LEDGER.revision]
    engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            count = connection.exec_driver_sql("SELECT count(*) FROM loyalty_ledger").scalar()
    finally:
        engine.dispose()
    assert count == 1


@pytest.mark.parametrize("round_", range(3))
def test_a_deploy_and_app_starts_racing_upgrade_once(
    pg_databases: ServerDatabases, tmp_path: Path, round_: int
) -> None:
    url = pg_databases.create()
    try:
        # The seats start a little apart, so that some of them meet the command mid-way.
        seats = [f"import time; time.sleep({0.03 * n})\n{INIT_DB}" for n in range(4)]
        results = _race([ALEMBIC, *seats], url, tmp_path)
        # The command either ran the whole chain or found the database already made.
        steps = results[0].stderr.count("Running upgrade")
        assert steps in (0, len(recorded_history().revisions)), results[0].stderr
        cli_ran = int(steps > 0)
        created = _actions(results).count("created")
        assert cli_ran + created == 1, _actions(results)
        assert _actions(results).count("current") == 4 - created
        assert versions(url) == [HEAD_REVISION]
        assert _tables(url) == _head_tables()
    finally:
        pg_databases.drop(url)


def test_the_command_lines_lock_holds_off_the_app(pg_url: URL) -> None:
    """The session-level lock of the CLI and the runner's transaction lock share one key."""
    cli_engine = create_engine(pg_url, poolclass=NullPool)
    app_engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with server_command_line_migration(cli_engine, script_directory()):
            started = time.monotonic()
            with pytest.raises(DatabaseBusyError) as caught:
                ensure_current(app_engine, lock_timeout=1)
            assert 0.9 < time.monotonic() - started < 30
        message = str(caught.value)
        assert pg_url.render_as_string() in message and "migration lock" in message
        # Released with the command: the app goes ahead.
        assert ensure_current(app_engine, lock_timeout=5).action == "created"
    finally:
        cli_engine.dispose()
        app_engine.dispose()


def test_the_apps_lock_holds_off_the_command_line(pg_url: URL) -> None:
    holder = create_engine(pg_url, poolclass=NullPool)
    cli_engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with holder.begin() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
            with (
                pytest.raises(DatabaseBusyError),
                server_command_line_migration(cli_engine, script_directory(), lock_timeout=1),
            ):
                pytest.fail("the command line ran while the app held the lock")
    finally:
        holder.dispose()
        cli_engine.dispose()


def test_the_command_line_gives_up_on_a_held_lock_with_a_clear_error(
    pg_url: URL, tmp_path: Path
) -> None:
    holder = create_engine(pg_url, poolclass=NullPool)
    try:
        with holder.begin() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
            started = time.monotonic()
            result = run_alembic(
                "upgrade",
                "head",
                db_path=tmp_path / "unused.db",
                check=False,
                DATABASE_URL=plain(pg_url),
                INKLINK_LOCK_TIMEOUT="1",
            )
            elapsed = time.monotonic() - started
    finally:
        holder.dispose()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "migration lock for more than 1 seconds" in output, output
    assert pg_url.render_as_string() in output
    assert elapsed < 60
    assert versions(pg_url) == []
