"""A table rebuilt once is stored with its name quoted; rebuilding it again must still work."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

from data.migration.rebuild import rebuild_table


def test_a_table_can_be_rebuilt_twice(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'rebuild.db'}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
            connection.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            connection.exec_driver_sql("INSERT INTO notes (body) VALUES ('kept'), ('also kept')")
            rebuild_table(connection, "notes")
            stored = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'notes'"
            ).scalar()
            assert '"notes"' in str(stored)  # SQLite quotes the name after the rename
            rebuild_table(connection, "notes")
            rows = connection.exec_driver_sql("SELECT body FROM notes ORDER BY id").all()
            assert [row[0] for row in rows] == ["kept", "also kept"]
    finally:
        engine.dispose()
