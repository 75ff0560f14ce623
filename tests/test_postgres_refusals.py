"""What the runner refuses on PostgreSQL, untouched, in messages that name the server (masked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from data.db.errors import (
    DatabaseNewerThanAppError,
    DatabaseUnreachableError,
    DataLayerError,
    LegacySchemaMismatchError,
)
from data.db.runner import ensure_current
from data.db.schema import Snapshot
from data.models import Base
from tests.conftest import PROJECT_ROOT, run_alembic, run_python
from tests.postgres import pg_env, plain, schema_of, versions

pytestmark = pytest.mark.postgres

UNKNOWN = "0123456789ab"
PASSWORD = "Sw0rdfish-never-printed"


def _execute(url: URL, *statements: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()


def _assert_names_the_server_masked(message: str, url: URL) -> None:
    assert url.render_as_string(hide_password=True) in message
    assert ":***@" in message
    assert PASSWORD not in message


@pytest.fixture
def with_password(pg_url: URL) -> URL:
    """The fresh database's URL with a password (the local server trusts, and ignores it)."""
    return pg_url.set(password=PASSWORD)


@pytest.fixture
def newer_database(pg_engine: Engine, pg_url: URL) -> Snapshot:
    """A database a newer app has upgraded to a revision this code does not know."""
    assert ensure_current(pg_engine).action == "created"
    _execute(pg_url, f"UPDATE alembic_version SET version_num = '{UNKNOWN}'")
    return schema_of(pg_url)


def test_unknown_revision_is_refused_untouched(
    newer_database: Snapshot, with_password: URL
) -> None:
    engine = create_engine(with_password)
    with pytest.raises(DatabaseNewerThanAppError) as caught:
        ensure_current(engine)
    engine.dispose()
    message = str(caught.value)
    assert UNKNOWN in message and "does not know" in message
    assert "not changed" in message
    _assert_names_the_server_masked(message, with_password)
    assert versions(with_password) == [UNKNOWN]
    assert schema_of(with_password) == newer_database


def test_unknown_revision_is_refused_by_the_command_before_alembic_runs(
    newer_database: Snapshot, with_password: URL, tmp_path: Path
) -> None:
    result = run_alembic(
        "upgrade",
        "head",
        db_path=tmp_path / "unused.db",
        check=False,
        DATABASE_URL=plain(with_password),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "does not know" in output and "Can't locate revision" not in output
    _assert_names_the_server_masked(output, with_password)
    assert versions(with_password) == [UNKNOWN]
    assert schema_of(with_password) == newer_database


def test_app_start_on_a_newer_database_fails_with_the_message(
    newer_database: Snapshot, with_password: URL, tmp_path: Path
) -> None:
    result = run_python(
        "from data.db.session import init_db\ninit_db()",
        env=pg_env(with_password, tmp_path),
        check=False,
    )
    assert result.returncode != 0
    assert "DatabaseNewerThanAppError" in result.stderr
    _assert_names_the_server_masked(result.stderr, with_password)


def test_legacy_tables_that_differ_from_the_baseline_are_refused(
    pg_url: URL, with_password: URL
) -> None:
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.begin() as connection:
        Base.metadata.create_all(connection)
        connection.exec_driver_sql("ALTER TABLE clients DROP COLUMN phone")
        connection.exec_driver_sql("ALTER TABLE clients ADD COLUMN loyalty_points integer")
        connection.exec_driver_sql("DROP INDEX ix_transactions_occurred_at")
    engine.dispose()
    before = schema_of(pg_url)

    app = create_engine(with_password)
    with pytest.raises(LegacySchemaMismatchError) as caught:
        ensure_current(app)
    app.dispose()
    message = str(caught.value)
    assert "table clients: column phone is missing" in message
    assert "table clients: column loyalty_points is not expected" in message
    assert "table transactions: index ix_transactions_occurred_at is missing" in message
    _assert_names_the_server_masked(message, with_password)
    assert versions(pg_url) == []
    assert schema_of(pg_url) == before


def test_legacy_mismatch_is_refused_by_the_command_too(pg_url: URL, tmp_path: Path) -> None:
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.begin() as connection:
        Base.metadata.create_all(connection)
        connection.exec_driver_sql("ALTER TABLE clients DROP COLUMN phone")
    engine.dispose()
    before = schema_of(pg_url)
    result = run_alembic(
        "upgrade", "head", db_path=tmp_path / "unused.db", check=False, DATABASE_URL=plain(pg_url)
    )
    assert result.returncode != 0
    assert "column phone is missing" in result.stdout + result.stderr
    assert schema_of(pg_url) == before


@pytest.mark.parametrize("problem", ["no such database", "nothing listening"])
def test_an_unreachable_server_is_named_without_its_password(
    with_password: URL, problem: str
) -> None:
    url = (
        with_password.set(database=f"{with_password.database}_missing")
        if problem == "no such database"
        else with_password.set(port=1)
    )
    engine = create_engine(url)
    with pytest.raises(DatabaseUnreachableError) as caught:
        ensure_current(engine)
    engine.dispose()
    assert isinstance(caught.value, DataLayerError)
    message = str(caught.value)
    assert "cannot be reached" in message and "DATABASE_URL" in message
    _assert_names_the_server_masked(message, url)


@pytest.mark.parametrize("required", [True, False])
def test_without_a_server_ci_fails_and_a_developer_skips(tmp_path: Path, required: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "INKLINK_REQUIRE_POSTGRES"}
    env["DATABASE_URL_TEST"] = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    if required:
        env["INKLINK_REQUIRE_POSTGRES"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            # pytest-alembic 0.13.1's collector crashes under pytest 9.2; nothing here needs it.
            "-p",
            "no:pytest_alembic",
            "-q",
            "-rs",
            "tests/test_models.py::test_naive_datetime_is_refused[postgres]",
        ],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    if required:
        assert result.returncode == 1, output
        assert "1 error" in output and "INKLINK_REQUIRE_POSTGRES=1" in output
    else:
        assert result.returncode == 0, output
        assert "1 skipped" in output and "is unreachable" in output
