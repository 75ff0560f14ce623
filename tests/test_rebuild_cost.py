"""A rebuild costs about SQLite's own copy, and leaves the runner's connection as it found it."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from sqlalchemy import Connection, create_engine

from data.migration.rebuild import rebuild_table

MARKER = b"rebuild-marker-"


def _notes(connection: Connection) -> None:
    connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
    connection.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    connection.exec_driver_sql("CREATE INDEX ix_notes_body ON notes (body)")
    connection.exec_driver_sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
        f"INSERT INTO notes (body) SELECT '{MARKER.decode()}' || i || printf('%.200c', 'x') FROM n"
    )


def _freelist_pages(db: Path) -> list[bytes]:
    """The free pages' bytes as stored (trunk pages and the leaves they list)."""
    data = db.read_bytes()
    page_size = struct.unpack(">H", data[16:18])[0] or 65536
    trunk = struct.unpack(">I", data[32:36])[0]
    pages: list[bytes] = []
    while trunk:
        start = (trunk - 1) * page_size
        page = data[start : start + page_size]
        pages.append(page)
        next_trunk, leaves = struct.unpack(">II", page[:8])
        for index in range(leaves):
            (leaf,) = struct.unpack(">I", page[8 + 4 * index : 12 + 4 * index])
            pages.append(data[(leaf - 1) * page_size : leaf * page_size])
        trunk = next_trunk
    return pages


def test_the_dropped_tables_pages_are_freed_without_being_zeroed(tmp_path: Path) -> None:
    # With secure_delete on (Debian's SQLite is built so), dropping the old table would zero
    # every page it frees: the whole table written once more, into the WAL and again at the
    # checkpoint. Its rows live on in the rebuilt table and in the backup made before.
    db = tmp_path / "rebuild.db"
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode = DELETE")
            _notes(connection)
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA secure_delete = 1")
            rebuild_table(connection, "notes")
            rows = connection.exec_driver_sql("SELECT count(*) FROM notes").scalar()
            assert rows == 2000
    finally:
        engine.dispose()
    free = _freelist_pages(db)
    assert len(free) > 50, "the old table's pages were freed"
    assert any(MARKER in page for page in free), "every freed page was zeroed"
    check = sqlite3.connect(db)
    try:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        check.close()


def test_the_connections_settings_are_put_back(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'settings.db'}")
    try:
        with engine.begin() as connection:
            _notes(connection)
            connection.exec_driver_sql("PRAGMA secure_delete = 1")
            connection.exec_driver_sql("PRAGMA cache_size = -16384")
            rebuild_table(connection, "notes")
            assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
            # The checks before commit look a parent up for every row in this much cache.
            assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -16384
            indexes = connection.exec_driver_sql("PRAGMA index_list(notes)").all()
            assert [row[1] for row in indexes] == ["ix_notes_body"]
    finally:
        engine.dispose()


def test_a_rebuild_that_drops_a_column_still_zeroes_the_freed_pages(tmp_path: Path) -> None:
    # The dropped column's values live nowhere else in the file: with secure_delete on they
    # must not linger in the old table's free pages (health notes a revision removes).
    db = tmp_path / "rebuild.db"
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode = DELETE")
            _notes(connection)
            connection.exec_driver_sql("ALTER TABLE notes ADD COLUMN health TEXT")
            connection.exec_driver_sql(f"UPDATE notes SET health = '{MARKER.decode()}h' || id")
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA secure_delete = 1")
            rebuild_table(
                connection, "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"
            )
            assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    finally:
        engine.dispose()
    assert len(_freelist_pages(db)) > 50, "the old table's pages were freed"
    assert MARKER + b"h" not in db.read_bytes(), "a dropped column's values linger in the file"
