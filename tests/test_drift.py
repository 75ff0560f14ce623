"""A schema changed outside the migrations is noticed at the next start, and refused.

When the runner commits, it records SQLite's schema cookie (``PRAGMA schema_version``) in
``PRAGMA user_version``; every start compares the two in one read, whatever the size of the
file. When they differ the schema is verified in full against the one its revision promises:
a missing index, CHECK, UNIQUE or foreign key is refused with the list of differences and the
file is left byte-for-byte; a schema that still matches (a VACUUM moves the cookie too) is
recorded again and answered "current".
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from data.db.errors import SchemaDriftError
from tests.app_start import start_app
from tests.conftest import run_alembic, sha256


def cookies(db: Path) -> tuple[int, int]:
    """(schema_version, user_version) of ``db``."""
    connection = sqlite3.connect(db)
    try:
        row = connection.execute("SELECT * FROM pragma_schema_version, pragma_user_version")
        schema_version, user_version = row.fetchone()
        return int(schema_version), int(user_version)
    finally:
        connection.close()


def _other_tool(db: Path, script: Callable[[sqlite3.Connection], None]) -> None:
    """Change ``db`` as another program would: a plain connection, its own transaction."""
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute("BEGIN IMMEDIATE")
        script(connection)
        connection.execute("COMMIT")
    finally:
        connection.close()


def _table_sql(connection: sqlite3.Connection) -> list[tuple[str, str]]:
    return [
        (str(name), str(sql))
        for name, sql in connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version' ORDER BY name"
        )
    ]


def _without_clause(create_sql: str, name: str) -> str:
    """``create_sql`` without the table constraint ``CONSTRAINT name ...``."""
    start = re.search(rf",\s*CONSTRAINT\s+\"?{re.escape(name)}\"?\s", create_sql)
    assert start is not None, (name, create_sql)
    depth = 0
    for end in range(start.end(), len(create_sql)):
        char = create_sql[end]
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            break
    return create_sql[: start.start()] + create_sql[end:]


def _drop_constraint(kind: str) -> Callable[[sqlite3.Connection], str]:
    """A script that rebuilds the first table with a named ``kind`` constraint without it
    (SQLite cannot drop a constraint in place: other tools rebuild the table); it returns
    the constraint's name."""

    def script(connection: sqlite3.Connection) -> str:
        for table, create_sql in _table_sql(connection):
            found = re.search(rf"CONSTRAINT\s+\"?(\w+)\"?\s+{kind}", create_sql)
            if found is None:
                continue
            name = found.group(1)
            indexes = [
                str(row[0])
                for row in connection.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                    "AND sql IS NOT NULL",
                    (table,),
                )
            ]
            rebuilt = _without_clause(create_sql, name).replace(
                f"CREATE TABLE {table}", "CREATE TABLE rebuilt_by_another_tool", 1
            )
            connection.execute(rebuilt)
            connection.execute(f"INSERT INTO rebuilt_by_another_tool SELECT * FROM {table}")
            connection.execute(f"DROP TABLE {table}")
            connection.execute(f"ALTER TABLE rebuilt_by_another_tool RENAME TO {table}")
            for index_sql in indexes:
                connection.execute(index_sql)
            return name
        raise AssertionError(f"no table has a named {kind} constraint")

    return script


def _drop_index(connection: sqlite3.Connection) -> str:
    (name,) = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
    ).fetchone()
    connection.execute(f'DROP INDEX "{name}"')
    return str(name)


DRIFTS: dict[str, Callable[[sqlite3.Connection], str]] = {
    "index": _drop_index,
    "check": _drop_constraint("CHECK"),
    "unique": _drop_constraint("UNIQUE"),
    "foreign-key": _drop_constraint("FOREIGN KEY"),
}


@pytest.fixture
def studio(tmp_path: Path) -> Path:
    db = tmp_path / "studio" / "inklink.db"
    assert start_app(db)["action"] == "created"
    return db


def test_the_runner_records_the_schema_cookie_when_it_commits(studio: Path, tmp_path: Path) -> None:
    schema_version, recorded = cookies(studio)
    assert recorded == schema_version != 0
    # The command line records it too.
    deployed = tmp_path / "deployed.db"
    run_alembic("upgrade", "head", db_path=deployed)
    schema_version, recorded = cookies(deployed)
    assert recorded == schema_version != 0


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_a_rule_dropped_by_another_tool_is_refused_with_the_list(studio: Path, drift: str) -> None:
    dropped: list[str] = []
    _other_tool(studio, lambda connection: dropped.append(DRIFTS[drift](connection)))
    digest = sha256(studio)

    report = start_app(studio)

    assert report.get("error") == SchemaDriftError.__name__, report
    message = str(report["message"])
    assert str(studio) in message
    assert dropped[0] in message, message
    assert "changed outside" in message
    assert sha256(studio) == digest
    assert sorted(p.name for p in studio.parent.iterdir()) == [
        studio.name,
        studio.name + ".lock",
    ]
    # Refused again at the next start: a refusal records nothing.
    assert start_app(studio).get("error") == SchemaDriftError.__name__


def test_the_command_line_refuses_a_drifted_database_too(studio: Path) -> None:
    dropped: list[str] = []
    _other_tool(studio, lambda connection: dropped.append(_drop_index(connection)))
    digest = sha256(studio)

    result = run_alembic("upgrade", "head", db_path=studio, check=False)

    assert result.returncode != 0
    assert "changed outside" in result.stdout + result.stderr
    assert dropped[0] in result.stdout + result.stderr
    assert sha256(studio) == digest


def test_a_cookie_moved_without_a_schema_change_is_verified_and_recorded_again(
    studio: Path,
) -> None:
    _other_tool_vacuum(studio)
    schema_version, recorded = cookies(studio)
    assert schema_version != recorded  # VACUUM moved the cookie: the start cannot tell why

    report = start_app(studio)

    assert report["action"] == "current", report
    assert "schema verified" in report["stderr"]
    schema_version, recorded = cookies(studio)
    assert recorded == schema_version
    # Recorded again: the next start is the cheap one.
    again = start_app(studio)
    assert again["action"] == "current" and not again["alembic_imported"], again


def _other_tool_vacuum(db: Path) -> None:
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("VACUUM")
    finally:
        connection.close()


def test_a_file_from_before_the_cookie_is_verified_once_then_recorded(studio: Path) -> None:
    # An older version of this code left user_version at 0: not drift, just no record yet.
    connection = sqlite3.connect(studio, isolation_level=None)
    try:
        connection.execute("PRAGMA user_version = 0")
    finally:
        connection.close()

    assert start_app(studio)["action"] == "current"

    schema_version, recorded = cookies(studio)
    assert recorded == schema_version
    again = start_app(studio)
    assert again["action"] == "current" and not again["alembic_imported"], again
