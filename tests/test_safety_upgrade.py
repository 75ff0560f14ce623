"""A studio's rows survive every upgrade: failures, table rebuilds, broken revisions."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from data.db.backup import backup_database, list_backups, restore_backup
from data.db.errors import DataLayerError
from data.db.head import HEAD_REVISION
from data.db.runner import ensure_current
from data.db.schema import sqlite_snapshot
from data.db.session import create_app_engine
from tests.conftest import db_versions, sha256, sqlite_url
from tests.file_kind import connect, is_encrypted, studio_key
from tests.scratch import Revision, ScratchProject, outcome_line, query
from tests.studio_data import seed_baseline_rows, studio_invariants


def make_studio(db_path: Path, clients: int = 20) -> Path:
    """A database as the current app leaves it: created, filled, in WAL mode."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_app_engine(sqlite_url(db_path))
    ensure_current(engine)
    with engine.connect() as connection:  # the app's first connection switches to WAL
        connection.exec_driver_sql("SELECT 1")
    engine.dispose()
    seed_baseline_rows(db_path, clients=clients)
    # With INKLINK_DB_KEY set (the encrypted runs of conftest.file_kind), encrypted.
    assert is_encrypted(db_path) == bool(studio_key())
    return db_path


def schema(db_path: Path) -> object:
    connection = connect(db_path)
    try:
        return sqlite_snapshot(lambda sql: connection.execute(sql).fetchall())
    finally:
        connection.close()


def state(db_path: Path) -> tuple[object, object, object]:
    return schema(db_path), studio_invariants(db_path), db_versions(db_path)


# Breaks on a studio's rows only: recording replays the chain on an empty database, and a
# revision that failed there could not be recorded at all.
BROKEN = Revision(
    "b0000000fa11",
    upgrade="""
        op.add_column("clients", sa.Column("loyalty_points", sa.Integer(), nullable=True))
        op.execute("UPDATE clients SET loyalty_points = 10")
        op.create_index("ix_clients_last_name", "clients", ["last_name"])
        if op.get_bind().exec_driver_sql("SELECT count(*) FROM clients").scalar():
            raise RuntimeError("boom halfway through")
    """,
)
FIXED = Revision(
    "b0000000fa11",
    upgrade="""
        op.add_column("clients", sa.Column("loyalty_points", sa.Integer(), nullable=True))
        op.execute("UPDATE clients SET loyalty_points = 10")
        op.create_index("ix_clients_last_name", "clients", ["last_name"])
    """,
    downgrade="""
        op.drop_index("ix_clients_last_name", table_name="clients")
        with op.batch_alter_table("clients") as batch:
            batch.drop_column("loyalty_points")
    """,
)


def test_revision_that_raises_halfway_changes_nothing_and_the_fix_then_applies(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = state(db)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(BROKEN)

    for _attempt in range(2):  # a retry fails the same way, never with "duplicate column"
        result = project.init_db(db, check=False)
        assert result.returncode != 0
        assert "MigrationFailedError" in result.stderr
        assert "boom halfway through" in result.stderr
        assert str(db) in result.stderr
        assert "duplicate column" not in result.stderr
        assert state(db) == before

    project.write(FIXED, down=HEAD_REVISION)
    action, from_revision, to_revision, backup = outcome_line(project.init_db(db))
    assert (action, from_revision, to_revision) == ("upgraded", HEAD_REVISION, FIXED.revision)
    assert Path(backup).is_file()
    assert query(db, "SELECT DISTINCT loyalty_points FROM clients") == [(10,)]
    assert studio_invariants(db) == before[1]


CASCADING_CHILD = Revision(
    "cafe00000001",
    doc="photos of a client's tattoos, deleted with the client",
    upgrade="""
        op.create_table(
            "client_photos",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("client_id", sa.Integer(), nullable=False),
            sa.Column("session_id", sa.Integer(), nullable=True),
            sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE",
                                    name="fk_client_photos_client_id_clients"),
            sa.ForeignKeyConstraint(["session_id"], ["tattoo_sessions.id"], ondelete="CASCADE",
                                    name="fk_client_photos_session_id_tattoo_sessions"),
        )
        op.execute("INSERT INTO client_photos (client_id, session_id) SELECT id, id FROM clients")
    """,
    downgrade='op.drop_table("client_photos")',
)
REBUILD_PARENTS = Revision(
    "cafe00000002",
    doc="rebuild the two parent tables",
    upgrade="""
        # A rebuild of each, whatever their columns are by then.
        with op.batch_alter_table("clients", recreate="always"):
            pass
        with op.batch_alter_table("tattoo_sessions", recreate="always"):
            pass
    """,
)


def _rebuild_project(root: Path) -> ScratchProject:
    project = ScratchProject(root)
    project.add(CASCADING_CHILD)
    project.add(REBUILD_PARENTS)
    return project


def test_rebuilding_parent_tables_keeps_every_child_row_even_with_cascades(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = studio_invariants(db)
    project = _rebuild_project(tmp_path / "newer-app")
    action, *_ = outcome_line(project.init_db(db))
    assert action == "upgraded"
    assert db_versions(db) == [REBUILD_PARENTS.revision]
    assert studio_invariants(db) == before
    assert query(db, "SELECT count(*) FROM client_photos") == [(20,)]
    assert query(db, "PRAGMA foreign_key_check") == []
    assert not query(db, "SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp%'")


def test_the_command_line_rebuilds_under_the_same_policy(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = studio_invariants(db)
    project = _rebuild_project(tmp_path / "newer-app")
    project.alembic("upgrade", "head", db_path=db)
    assert db_versions(db) == [REBUILD_PARENTS.revision]
    assert studio_invariants(db) == before
    assert query(db, "SELECT count(*) FROM client_photos") == [(20,)]
    assert len(list_backups(db)) == 1


def test_the_command_line_rolls_back_a_failing_revision_whole(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = state(db)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(BROKEN)
    result = project.alembic("upgrade", "head", db_path=db, check=False)
    assert result.returncode != 0
    assert "boom halfway through" in result.stdout + result.stderr
    assert state(db) == before


def test_revision_that_would_leave_orphans_is_rolled_back_whole(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = state(db)
    project = ScratchProject(tmp_path / "newer-app")
    project.add(
        Revision(
            "0a0a0a0a0a0a",
            upgrade="""
                op.add_column("clients", sa.Column("vip", sa.Boolean(), nullable=True))
                op.execute("DELETE FROM clients WHERE id = 3")
            """,
        )
    )
    result = project.init_db(db, check=False)
    assert "SchemaVerificationError" in result.stderr
    assert "pointing at missing rows" in result.stderr
    assert state(db) == before


def test_upgrade_that_breaks_its_revisions_promise_is_rolled_back(tmp_path: Path) -> None:
    """The migrated file is checked against the schema its revision promises (the export)."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = state(db)
    project = ScratchProject(tmp_path / "newer-app")
    # On the empty database the export is replayed on, it keeps the index; on rows, not.
    project.add(
        Revision(
            "1d1d1d1d1d1d",
            upgrade="""
                if op.get_bind().exec_driver_sql("SELECT count(*) FROM clients").scalar():
                    op.drop_index("ix_transactions_occurred_at", table_name="transactions")
            """,
        )
    )
    result = project.init_db(db, check=False)
    assert "SchemaVerificationError" in result.stderr
    assert "ix_transactions_occurred_at is missing" in result.stderr
    assert state(db) == before


def test_outcome_progress_and_backup_of_an_upgrade(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = studio_invariants(db)
    project = _rebuild_project(tmp_path / "newer-app")
    result = project.init_db(db)
    progress = [
        line.split()[1:] for line in result.stdout.splitlines() if line.startswith("PROGRESS")
    ]
    assert progress == [
        ["1", "2", CASCADING_CHILD.revision],
        ["2", "2", REBUILD_PARENTS.revision],
    ]
    action, from_revision, to_revision, backup_text = outcome_line(result)
    assert (action, from_revision, to_revision) == (
        "upgraded",
        HEAD_REVISION,
        REBUILD_PARENTS.revision,
    )
    backup = Path(backup_text)
    assert backup.parent == db.parent / "backups"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.parent.stat().st_mode) == 0o700
    # The backup is a consistent copy of the database before the upgrade, in plain journal mode.
    assert db_versions(backup) == [HEAD_REVISION]
    assert studio_invariants(backup) == before
    assert query(backup, "PRAGMA journal_mode") == [("delete",)]
    assert query(backup, "PRAGMA quick_check") == [("ok",)]

    again = outcome_line(project.init_db(db))
    assert again[0] == "current"
    assert len(list_backups(db)) == 1


def _touch_client(db: Path, n: int) -> None:
    connection = connect(db)
    with connection:
        connection.execute("UPDATE clients SET notes = ? WHERE id = 1", (f"change {n}",))
    connection.close()


def test_only_the_newest_five_backups_are_kept(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    made = []
    for n in range(7):  # each of another state: an unchanged file is not copied twice
        _touch_client(db, n)
        made.append(backup_database(db, label=f"n{n}"))
    assert list_backups(db) == sorted(made[2:], reverse=True)
    assert not list(db.parent.joinpath("backups").glob("*.partial"))


def test_restore_puts_a_backup_back_and_keeps_the_current_file_aside(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    before = studio_invariants(db)
    backup = backup_database(db, label="before-mistake")
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("DELETE FROM transactions WHERE client_id = 1")
    connection.close()
    assert studio_invariants(db) != before

    aside = restore_backup(backup, db)
    assert studio_invariants(db) == before
    assert query(aside, "SELECT count(*) FROM transactions") == [(95,)]
    assert os.stat(aside).st_mode & 0o077 == 0


def test_restore_refuses_a_damaged_backup_and_changes_nothing(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    damaged = tmp_path / "backups-from-usb" / "inklink-old.db"
    damaged.parent.mkdir()
    damaged.write_bytes(b"not a database at all" * 100)
    digest = sha256(db)
    with pytest.raises(DataLayerError, match="not a SQLite database"):
        restore_backup(damaged, db)
    assert sha256(db) == digest
