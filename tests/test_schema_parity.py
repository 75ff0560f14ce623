"""create_all and the migration chain are two roads to one schema, compared on what SQLite stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from data.db.head import exported_schema, recorded_history
from data.db.runner import ensure_current
from data.db.schema import differences, sqlite_snapshot
from data.db.session import create_app_engine
from tests.conftest import run_alembic, sqlite_url


def _snapshot(path: Path) -> dict[str, dict[str, dict[str, str]]]:
    connection = sqlite3.connect(path)
    try:
        return sqlite_snapshot(lambda sql: connection.execute(sql).fetchall())
    finally:
        connection.close()


def test_create_all_and_migrations_store_the_same_schema(tmp_path: Path) -> None:
    created = tmp_path / "created.db"
    migrated = tmp_path / "migrated.db"
    engine = create_app_engine(sqlite_url(created))
    assert ensure_current(engine).action == "created"
    engine.dispose()
    run_alembic("upgrade", "head", db_path=migrated)

    by_create_all = _snapshot(created)
    by_migrations = _snapshot(migrated)
    head_tables = set(exported_schema(recorded_history().head))
    assert set(by_create_all) == head_tables | {"alembic_version"}
    assert differences(by_migrations, by_create_all) == []
    assert by_migrations == by_create_all


def test_snapshot_sees_every_aspect_the_comparison_promises(tmp_path: Path) -> None:
    """Guard the comparison itself: each kind of drift must show up as a difference.

    On the baseline's schema, which is released and never changes, whatever head adds.
    """
    path = tmp_path / "drift.db"
    run_alembic("upgrade", recorded_history().baseline, db_path=path)
    before = _snapshot(path)
    tables = before["transactions"]
    assert tables["columns"]["amount_cents"] == "type=INTEGER notnull=True default=None pk=0"
    assert "ix_transactions_occurred_at" in tables["indexes"]
    assert tables["foreign_keys"]["(session_id, client_id) -> tattoo_sessions(id, client_id)"] == (
        "on_delete=RESTRICT on_update=NO ACTION"
    )
    assert tables["constraints"]["ck_transactions_amount_positive"] == "CHECK (amount_cents > 0)"
    assert "<u>(id, client_id)" in before["tattoo_sessions"]["indexes"]

    drifts = {
        "DROP INDEX ix_transactions_occurred_at": "index ix_transactions_occurred_at is missing",
        "ALTER TABLE clients ADD COLUMN loyalty INTEGER": "column loyalty is not expected",
        "CREATE INDEX ix_extra ON clients (last_name DESC)": "index ix_extra is not expected",
    }
    for statement, expected in drifts.items():
        copy = tmp_path / f"copy-{abs(hash(statement))}.db"
        copy.write_bytes(path.read_bytes())
        connection = sqlite3.connect(copy)
        connection.execute(statement)
        connection.commit()
        connection.close()
        found = differences(_snapshot(copy), before)
        assert any(expected in line for line in found), (statement, found)
