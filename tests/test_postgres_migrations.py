"""Migrations on PostgreSQL: the real ``alembic`` command, the two roads to one schema, adoption."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from data.db.head import BASELINE_REVISION, HEAD_REVISION, exported_schema
from data.db.pg_schema import pg_metadata_snapshot, pg_snapshot
from data.db.runner import ensure_current
from data.db.schema import Snapshot, differences
from data.db.server import NO_BACKUP_NOTE
from data.models import Base
from tests.conftest import run_alembic, run_python
from tests.postgres import ServerDatabases, pg_env, plain, schema_of, studio_at_head, versions
from tests.scratch import ScratchProject, outcome_line
from tests.test_safety_upgrade import BROKEN, FIXED

pytestmark = pytest.mark.postgres

PASSWORD = "Never-Shown_9f%2Fq"  # percent-encoded "/" too: no ini interpolation anywhere


def _alembic(url: URL, tmp_path: Path, *args: str, check: bool = True) -> str:
    result = run_alembic(
        *args, db_path=tmp_path / "unused.db", check=check, DATABASE_URL=plain(url)
    )
    return result.stdout + result.stderr


@pytest.fixture
def second_url(pg_databases: ServerDatabases) -> Iterator[URL]:
    url = pg_databases.create()
    yield url
    pg_databases.drop(url)


def test_upgrade_check_downgrade_upgrade(pg_url: URL, tmp_path: Path) -> None:
    _alembic(pg_url, tmp_path, "upgrade", "head")
    assert versions(pg_url) == [HEAD_REVISION]
    assert "No new upgrade operations detected" in _alembic(pg_url, tmp_path, "check")
    _alembic(pg_url, tmp_path, "downgrade", "base")
    assert versions(pg_url) == []
    assert set(schema_of(pg_url)) == {"alembic_version"}
    _alembic(pg_url, tmp_path, "upgrade", "head")
    assert versions(pg_url) == [HEAD_REVISION]


def test_create_all_and_migrations_store_the_same_schema(
    pg_url: URL, second_url: URL, tmp_path: Path
) -> None:
    engine = create_engine(pg_url)
    assert ensure_current(engine).action == "created"
    engine.dispose()
    _alembic(second_url, tmp_path, "upgrade", "head")

    by_create_all = schema_of(pg_url)
    by_migrations = schema_of(second_url)
    assert set(by_create_all) == set(exported_schema(HEAD_REVISION)) | {"alembic_version"}
    assert differences(by_migrations, by_create_all) == []
    assert by_migrations == by_create_all


def test_snapshot_sees_every_aspect_the_comparison_promises(
    pg_url: URL, pg_engine: Engine, tmp_path: Path
) -> None:
    """Guard the comparison itself: each kind of drift must show up as a difference.

    On the baseline's schema, which is released and never changes, whatever head adds.
    """
    _alembic(pg_url, tmp_path, "upgrade", BASELINE_REVISION)
    with pg_engine.connect() as connection:
        before = pg_snapshot(connection)
    transactions = before["transactions"]
    assert transactions["columns"]["amount_cents"] == "type=integer notnull=True default=None"
    assert transactions["indexes"]["ix_transactions_occurred_at"] == (
        "btree (occurred_at) unique=False primary=False"
    )
    assert transactions["constraints"]["ck_transactions_amount_positive"] == (
        "CHECK ((amount_cents > 0))"
    )
    assert transactions["constraints"]["fk_transactions_session_id_client_id_tattoo_sessions"] == (
        "FOREIGN KEY (session_id, client_id) REFERENCES tattoo_sessions(id, client_id) "
        "ON DELETE RESTRICT"
    )
    assert "uq_tattoo_sessions_id_client_id" in before["tattoo_sessions"]["constraints"]

    drifts = {
        "DROP INDEX ix_transactions_occurred_at": "index ix_transactions_occurred_at is missing",
        "ALTER TABLE clients ADD COLUMN loyalty integer": "column loyalty is not expected",
        "CREATE INDEX ix_extra ON clients (last_name DESC)": "index ix_extra is not expected",
        "ALTER TABLE clients ALTER COLUMN phone SET NOT NULL": "column phone is type=",
        "ALTER TABLE clients ALTER COLUMN phone TYPE varchar(50)": "character varying(50)",
        "ALTER TABLE clients ALTER COLUMN notes SET DEFAULT 'x'": "column notes is",
        "ALTER TABLE transactions DROP CONSTRAINT ck_transactions_amount_positive, "
        "ADD CONSTRAINT ck_transactions_amount_positive CHECK (amount_cents >= 0)": (
            "constraint ck_transactions_amount_positive is CHECK ((amount_cents >= 0))"
        ),
        "ALTER TABLE transactions DROP CONSTRAINT fk_transactions_client_id_clients, "
        "ADD CONSTRAINT fk_transactions_client_id_clients FOREIGN KEY (client_id) "
        "REFERENCES clients(id) ON DELETE CASCADE": "ON DELETE CASCADE, expected",
        "ALTER TABLE clients DROP CONSTRAINT uq_clients_email": (
            "constraint uq_clients_email is missing"
        ),
    }
    for statement, expected in drifts.items():
        with pg_engine.connect() as connection:
            connection.exec_driver_sql(statement)
            found = differences(pg_snapshot(connection), before)
            connection.rollback()
        assert any(expected in line for line in found), (statement, found)


def test_scratch_schema_leaves_nothing_behind(pg_engine: Engine) -> None:
    ensure_current(pg_engine)

    def namespaces(connection: Connection) -> tuple[object, ...]:
        return (
            connection.exec_driver_sql("SELECT count(*) FROM pg_namespace").scalar(),
            connection.exec_driver_sql("SHOW search_path").scalar(),
            connection.exec_driver_sql("SELECT current_schema()").scalar(),
        )

    with pg_engine.begin() as connection:
        before = namespaces(connection)
        expected = pg_metadata_snapshot(connection, Base.metadata)
        assert namespaces(connection) == before
        live = pg_snapshot(connection, exclude=frozenset({"alembic_version"}))
        assert differences(live, expected) == []
    with pg_engine.connect() as connection:
        assert namespaces(connection) == before


def _legacy_database(url: URL, tmp_path: Path) -> None:
    """What a pre-Alembic InkLinkOS left: the first schema (the baseline's, made by its
    create_all), no alembic_version, one client."""
    _alembic(url, tmp_path, "upgrade", BASELINE_REVISION)
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
        connection.exec_driver_sql(
            "INSERT INTO clients (first_name, last_name, created_at, updated_at) "
            "VALUES ('Legacy', 'Client', now(), now())"
        )
    engine.dispose()


def test_init_db_adopts_a_legacy_database(pg_url: URL, tmp_path: Path) -> None:
    _legacy_database(pg_url, tmp_path)
    result = run_python(
        "from data.db.session import init_db\n"
        "outcome = init_db()\n"
        "print(outcome.action, outcome.from_revision, outcome.backup_path, '|', outcome.note)\n"
        "print(outcome.describe())",
        env=pg_env(pg_url, tmp_path),
    )
    assert result.stdout.splitlines()[0] == f"adopted None None | {NO_BACKUP_NOTE}"
    assert "operator's job" in result.stdout
    assert versions(pg_url) == [HEAD_REVISION]
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT first_name FROM clients").scalar() == "Legacy"
    engine.dispose()


def test_alembic_command_adopts_a_legacy_database(pg_url: URL, tmp_path: Path) -> None:
    _legacy_database(pg_url, tmp_path)
    output = _alembic(pg_url, tmp_path, "upgrade", "head")
    assert "already exists" not in output
    assert versions(pg_url) == [HEAD_REVISION]


def test_a_password_in_the_url_never_reaches_the_logs(pg_url: URL, tmp_path: Path) -> None:
    # The server trusts local connections, so it accepts (and ignores) any password.
    url = pg_url.set(password=PASSWORD)
    decoded = url.password
    assert decoded is not None
    output = _alembic(url, tmp_path, "upgrade", "head")
    child = run_python(
        "import logging; logging.basicConfig(level=logging.DEBUG)\n"
        "from data.db.session import engine, init_db\n"
        "print(init_db(), engine.url, repr(engine.url))",
        env=pg_env(url, tmp_path),
    )
    output += child.stdout + child.stderr
    assert "postgres:***@" in output
    for secret in (PASSWORD, decoded, "Never-Shown"):
        assert secret not in output


def _studio_at_head(url: URL) -> Snapshot:
    """A database the current app made, with a client; returns its schema."""
    studio_at_head(url)
    return schema_of(url)


def test_a_failing_revision_changes_nothing_and_the_fix_then_applies(
    pg_url: URL, tmp_path: Path
) -> None:
    before = _studio_at_head(pg_url)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(BROKEN)
    unused = tmp_path / "unused.db"
    for _attempt in range(2):  # a retry fails the same way: DDL is transactional here
        result = project.init_db(unused, check=False, DATABASE_URL=plain(pg_url))
        assert result.returncode != 0
        assert "MigrationFailedError" in result.stderr and "boom halfway through" in result.stderr
        assert pg_url.render_as_string() in result.stderr
        assert "already exists" not in result.stderr
        assert schema_of(pg_url) == before
        assert versions(pg_url) == [HEAD_REVISION]

    project.write(FIXED, down=HEAD_REVISION)
    result = project.init_db(unused, DATABASE_URL=plain(pg_url))
    assert outcome_line(result) == ["upgraded", HEAD_REVISION, FIXED.revision, "None"]
    assert f"PROGRESS 1 1 {FIXED.revision}" in result.stdout
    assert versions(pg_url) == [FIXED.revision]
    engine = create_engine(pg_url, poolclass=NullPool)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT loyalty_points FROM clients").all() == [(10,)]
    engine.dispose()

    # The newer app's own `alembic downgrade` goes back through the same runner.
    project.alembic("downgrade", HEAD_REVISION, db_path=unused, DATABASE_URL=plain(pg_url))
    assert versions(pg_url) == [HEAD_REVISION]
    assert schema_of(pg_url) == before
