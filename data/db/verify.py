"""``python -m data.db verify``: is the database sound, and is it what its revision promises?

A simple version, reading only: on a SQLite file, SQLite's ``integrity_check`` and
``foreign_key_check``, then the schema against the one its revision promises; on a server,
the schema against the chain replayed (the server checks integrity and foreign keys itself).
``verify_database`` is the one function the command calls: a fuller check (a whole-file
integrity check, issue 13) replaces it without touching the command line.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine

from data.db.head import exported_schema, recorded_history
from data.migration.backends import backend_for
from data.migration.schema import differences, sqlite_query, sqlite_snapshot
from data.migration.state import VERSION_TABLE


def verify_database(engine: Engine, *, pages_checked: bool = False) -> list[str]:
    """What is wrong with the database behind ``engine``, one line each; ``[]`` when sound.

    ``pages_checked``: the caller has just found every page of the file sound
    (``check_database()``), so opening it does not read them all again first; the
    ``integrity_check`` here still reads every page. Raises ``DataLayerError`` for a
    database that cannot be opened at all (or whose pages are damaged, unless checked).
    """
    if engine.dialect.name == "sqlite":
        return _verify_file(Path(str(engine.url.database)).absolute(), pages_checked)
    return _verify_server(engine)


def _verify_revision(connection: Connection) -> tuple[str | None, list[str]]:
    """The revision the database records, when it is one this app knows, and what is wrong
    with what it records (the same for a file and a server)."""
    history = recorded_history()
    versions: list[str] = []
    if connection.dialect.has_table(connection, VERSION_TABLE):
        rows = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
        versions = [str(row[0]) for row in rows]
    if len(versions) != 1:
        return None, [f"it records {len(versions)} revisions ({', '.join(versions)}), not one"]
    (version,) = versions
    if version not in history.revisions:
        return None, [f"it is at revision {version}, which this app does not know (newer app?)"]
    if version != history.head:
        return version, [f"it is at revision {version}, behind this app's head {history.head}"]
    return version, []


def _verify_file(path: Path, pages_checked: bool) -> list[str]:
    from data.db.move import check_file_opens  # the same refusals as a move's
    from data.migration.transfer import sqlite_reader

    # An encrypted file is read with its key. A damaged page is refused there (a
    # DatabaseCorruptError with the way back), unless the caller's quick_check has just
    # passed every page: a second one would only repeat it, and integrity_check follows.
    key = check_file_opens(path, every_page=not pages_checked)
    reader = sqlite_reader(path, key)
    problems: list[str] = []
    try:
        with reader.connect() as connection, connection.begin():
            integrity = [
                str(row[0]) for row in connection.exec_driver_sql("PRAGMA integrity_check")
            ]
            if integrity != ["ok"]:
                problems.extend(f"integrity: {line}" for line in integrity)
            problems.extend(
                f"foreign key: {row[0]} row {row[1]} points at a missing {row[2]} row"
                for row in connection.exec_driver_sql("PRAGMA foreign_key_check")
            )
            version, revision_problems = _verify_revision(connection)
            problems.extend(revision_problems)
            if version is not None:
                promised = exported_schema(version)
                if promised is None:
                    problems.append(f"this app has no exported schema for revision {version}")
                else:
                    found = sqlite_snapshot(
                        sqlite_query(connection), exclude=frozenset({VERSION_TABLE})
                    )
                    problems.extend(
                        f"schema: {line}" for line in differences(found, promised, allow_extra=True)
                    )
    finally:
        reader.dispose()
    return problems


def _verify_server(engine: Engine) -> list[str]:
    backend = backend_for(engine)
    problems: list[str] = []
    with engine.connect() as connection, connection.begin():
        version, revision_problems = _verify_revision(connection)
        problems.extend(revision_problems)
        if version is not None:
            expected = backend.promised_schema(connection, version)
            found = backend.live_schema(connection)
            problems.extend(
                f"schema: {line}" for line in differences(found, expected, allow_extra=True)
            )
        connection.rollback()  # the replayed chain was built in a scratch schema: drop it
    return problems
