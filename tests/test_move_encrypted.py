"""``move-to``, ``export``, ``status`` and ``verify`` on an encrypted studio, and the copy
against the storage guards, through the real command and a real server.

Encrypted files are made the way a studio gets one: a plain studio, then the real
``python -m data.db encrypt``, with the key in ``INKLINK_DB_KEY`` (no keyring). What the app
would see is compared: every table of the models read through the models (an encrypted file
read through the app's keyed engine). Values at the edges of the storage guards (longest
text, integer range ends, the first and last moments the app can hold) must pass the guards
of the target both ways: the server's CHECKs and the new file's triggers.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from data.db.cipher import cipher_url
from data.db.head import recorded_history
from data.migration.backup import list_backups
from data.migration.guards import column_guards
from tests.conftest import inklink_db, legacy_database, sha256, subprocess_env
from tests.postgres import plain
from tests.studio_data import seed_baseline_rows
from tests.test_move import (
    REFUSED_ROWS,
    make_studio,
    model_rows,
    rows_of_file,
    rows_of_server,
    write_unguarded,
)

pytestmark = pytest.mark.postgres

KEY = secrets.token_hex(32)


def run(
    *args: str, db_path: Path, key: str | None = KEY, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(db_path, **extra)
    env.pop("INKLINK_DB_KEY", None)
    if key is not None:
        env["INKLINK_DB_KEY"] = key
    return inklink_db(*args, db_path=db_path, env=env)


def encrypt(path: Path) -> Path:
    result = run("encrypt", db_path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert path.read_bytes()[:16] != b"SQLite format 3\x00"
    return path


def rows_of_encrypted(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    engine: Engine = create_engine(cipher_url(str(path), f"x'{KEY}'"), poolclass=NullPool)
    try:
        return model_rows(engine)
    finally:
        engine.dispose()


@pytest.fixture
def encrypted_studio(tmp_path: Path) -> tuple[Path, dict[str, list[tuple[Any, ...]]]]:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = rows_of_file(db)
    encrypt(db)
    assert rows_of_encrypted(db) == before
    return db, before


# --- an encrypted studio ----------------------------------------------------------------------


def test_an_encrypted_studio_moves_to_the_server(
    encrypted_studio: tuple[Path, dict[str, list[tuple[Any, ...]]]], pg_url: URL
) -> None:
    db, before = encrypted_studio
    digest = sha256(db)

    result = run("move-to", plain(pg_url), db_path=db)

    assert result.returncode == 0, result.stderr
    assert rows_of_server(pg_url) == before
    assert sum(len(rows) for rows in before.values()) > 0
    assert sha256(db) == digest  # only read, and still encrypted


def test_check_reads_an_encrypted_file_and_lists_what_the_server_refuses(
    tmp_path: Path, pg_url: URL
) -> None:
    db = make_studio(tmp_path / "inklink.db")
    write_unguarded(db, *(statement for statement, *_ in REFUSED_ROWS))
    encrypt(db)
    digest = sha256(db)

    check = run("move-to", plain(pg_url), "--check", db_path=db)
    move = run("move-to", plain(pg_url), db_path=db)

    assert check.returncode == 1, check.stderr
    assert len(check.stdout.splitlines()) == len(REFUSED_ROWS), check.stdout
    for _, table, row, column, rule in REFUSED_ROWS:
        assert f"{table} row {row}: {column}:" in check.stdout and f"(rule {rule}" in check.stdout
    assert move.returncode == 2
    assert move.stderr.count(f"Database {db}") == 1
    assert sha256(db) == digest
    assert not _has_tables(pg_url)  # refused before the server was touched


def _has_tables(url: URL) -> bool:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return bool(
                connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                ).scalar()
            )
    finally:
        engine.dispose()


def test_an_encrypted_file_behind_head_is_backed_up_encrypted_before_the_move(
    tmp_path: Path, pg_url: URL
) -> None:
    db = legacy_database(tmp_path / "old.db")
    seed_baseline_rows(db)
    encrypt(db)
    before = list_backups(db)  # encrypt leaves one verified encrypted backup

    result = run("move-to", plain(pg_url), db_path=db)

    assert result.returncode == 0, result.stderr
    backups = list_backups(db)
    assert len(backups) == len(before) + 1 and backups[1:] == before
    # The backup the upgrade made is encrypted too, as every other: a move leaves no
    # readable copy behind.
    for backup in backups:
        assert backup.read_bytes()[:16] != b"SQLite format 3\x00"
    assert rows_of_server(pg_url) == rows_of_encrypted(db)


def test_export_from_an_encrypted_file_makes_a_plain_verified_file_at_head(
    encrypted_studio: tuple[Path, dict[str, list[tuple[Any, ...]]]], tmp_path: Path
) -> None:
    db, before = encrypted_studio
    digest = sha256(db)
    copy = tmp_path / "portable.db"

    result = run("export", str(copy), db_path=db)

    assert result.returncode == 0, result.stderr
    assert copy.read_bytes()[:16] == b"SQLite format 3\x00"  # plain: opens without a key
    assert rows_of_file(copy) == before
    versions = sqlite3.connect(copy).execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(recorded_history().head,)]
    assert sha256(db) == digest
    assert run("verify", db_path=copy, key=None).returncode == 0


def test_status_and_verify_report_an_encrypted_file(
    encrypted_studio: tuple[Path, dict[str, list[tuple[Any, ...]]]],
) -> None:
    db, _ = encrypted_studio
    digest = sha256(db)

    status = run("status", db_path=db)
    verify = run("verify", db_path=db)

    assert status.returncode == 0, status.stderr
    lines = dict(line.split(": ", 1) for line in status.stdout.splitlines())
    assert lines["Encryption"].startswith("SQLCipher"), lines
    assert "INKLINK_DB_KEY" in lines["Encryption"]
    assert lines["Revision"] == f"{recorded_history().head} (head)"
    assert lines["Journal mode"] == "wal"
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert sha256(db) == digest


def test_without_its_key_every_subcommand_refuses_once_and_changes_nothing(
    encrypted_studio: tuple[Path, dict[str, list[tuple[Any, ...]]]],
    tmp_path: Path,
    pg_url: URL,
) -> None:
    db, _ = encrypted_studio
    digest = sha256(db)
    listing = sorted(p.name for p in db.parent.iterdir())
    copy = tmp_path / "portable.db"
    commands = (
        ("status",),
        ("verify",),
        ("backup",),
        ("move-to", plain(pg_url), "--check"),
        ("move-to", plain(pg_url)),
        ("export", str(copy)),
    )
    for command in commands:
        result = run(*command, db_path=db, key=None)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.count(f"Database {db}") == 1, (command, result.stderr)
        assert "recovery key" in result.stderr and "Traceback" not in result.stderr
        assert sha256(db) == digest, command
        assert sorted(p.name for p in db.parent.iterdir()) == listing, command
    assert not copy.exists()
    assert not _has_tables(pg_url)


# --- the copy against the storage guards -------------------------------------------------------


def new_york(url: URL) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(
                f"ALTER DATABASE \"{url.database}\" SET timezone = 'America/New_York'"
            )
    finally:
        engine.dispose()


DATETIME_EDGES = ("0001-01-01 00:00:00.000000", "9999-12-31 23:59:59.999999")


def _edges(db: Path) -> None:
    """Every guarded column of clients, sessions and payments at the edge its guard allows,
    written through the guards (SQLite accepts them: they are valid rows)."""
    connection = sqlite3.connect(db, isolation_level=None)
    moments = 0
    try:
        connection.execute("BEGIN")
        for table in ("clients", "tattoo_sessions", "transactions"):
            declared = {
                str(row[1]): str(row[2] or "")
                for row in connection.execute(f'PRAGMA table_info("{table}")')
            }
            references = {
                str(row[3]) for row in connection.execute(f'PRAGMA foreign_key_list("{table}")')
            }
            for column, type_name in declared.items():
                if column == "id" or column in references:
                    continue
                kinds = {g.kind: g.param for g in column_guards(table, column, type_name)}
                value: object
                if "datetime" in kinds:
                    # The first and the last moments the app holds, in turn.
                    value = DATETIME_EDGES[moments % 2]
                    moments += 1
                if "length" in kinds:
                    value = "é" * int(kinds["length"])  # longest text, outside ASCII
                elif "range" in kinds:
                    value = int(kinds["range"].split("..")[1])  # the largest integer
                elif "datetime" in kinds:
                    pass
                elif "date" in kinds:
                    value = "0001-01-01"
                else:
                    continue
                try:
                    connection.execute(
                        f'UPDATE "{table}" SET "{column}" = ? WHERE id = 5', (value,)
                    )
                except sqlite3.IntegrityError:
                    # Another rule of the models (a CHECK, a foreign key) forbids this edge
                    # for this column: keep its value.
                    continue
        connection.execute("COMMIT")
    finally:
        connection.close()


def test_values_at_the_guards_edges_pass_both_targets_guards(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    _edges(db)
    new_york(pg_url)  # the first moment (UTC) is in the year 0 there
    before = rows_of_file(db)
    assert any(
        isinstance(value, str) and value.startswith("éé")
        for rows in before.values()
        for row in rows
        for value in row
    ), "no text column was set to its longest value"

    check = run("move-to", plain(pg_url), "--check", db_path=db, key=None)
    moved = run("move-to", plain(pg_url), db_path=db, key=None)
    copy = tmp_path / "back.db"
    back = run("export", str(copy), db_path=db, key=None, DATABASE_URL=plain(pg_url))

    assert check.returncode == 0, check.stdout + check.stderr
    assert moved.returncode == 0, moved.stderr
    # Read in UTC: a New York session cannot hold the year 0 in a Python datetime.
    assert rows_of_server(pg_url.update_query_dict({"options": "-c timezone=UTC"})) == before
    # The server holds its guards (the date and timestamp range CHECKs) and the new file its
    # triggers: the valid edge rows went through both.
    assert back.returncode == 0, back.stderr
    assert rows_of_file(copy) == before
    triggers = (
        sqlite3.connect(copy)
        .execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'guard_%'"
        )
        .fetchone()[0]
    )
    assert triggers > 0


_LISTED = re.compile(r"^(\w+) row (\d+): (\w+): .* \(rule ([^)]*)\)$")


def _parse(line: str) -> tuple[str, str, str, str]:
    match = _LISTED.match(line)
    assert match is not None, line
    table, row, column, rule = match.groups()
    return table, row, column, rule


def _breaking(kind: str, param: str) -> str | None:
    """A SQL literal that breaks a guard of ``kind`` (and that the column's affinity keeps)."""
    if kind == "range":
        return str(int(param.split("..")[1]) + 1)
    return {
        "integer": "10.5",
        "text": "X'01FF'",
        "length": "'" + "x" * (int(param or 0) + 1) + "'",
        "nul": "'a' || char(0) || 'b'",
        "datetime": "'2026-02-30 10:00:00.000000'",
        "date": "'2026-02-30'",
        "boolean": "2",
        "number": "X'01'",
    }.get(kind)


def test_check_lists_each_guard_of_the_file_broken_under_its_rule(tmp_path: Path) -> None:
    """--check uses the storage guards' own rules: every guard the file's columns carry
    (derived by the guards' code from the declared types), broken once on a row of its own
    with the triggers dropped, is listed with that row, column and rule, and nothing else."""
    db = make_studio(tmp_path / "inklink.db", clients=60)
    connection = sqlite3.connect(db)
    planned: list[tuple[str, tuple[str, int, str, str]]] = []
    kinds: set[str] = set()
    try:
        for table in ("clients", "tattoo_sessions", "transactions"):
            ids = [row[0] for row in connection.execute(f'SELECT id FROM "{table}" ORDER BY id')]
            declared = connection.execute(f'PRAGMA table_info("{table}")').fetchall()
            for column, type_name in ((str(r[1]), str(r[2] or "")) for r in declared):
                if column == "id":
                    continue
                for guard in column_guards(table, column, type_name):
                    kinds.add(guard.kind)
                    literal = _breaking(guard.kind, guard.param)
                    assert literal is not None, f"no breaking value for a {guard.kind} guard"
                    row = ids.pop()
                    planned.append(
                        (
                            f'UPDATE "{table}" SET "{column}" = {literal} WHERE id = {row}',
                            (table, row, column, guard.kind),
                        )
                    )
    finally:
        connection.close()
    # Rows a CHECK of the models refuses too are not this test's subject: written one by one.
    written: set[tuple[str, int, str, str]] = set()
    for statement, item in planned:
        try:
            write_unguarded(db, statement)
        except sqlite3.IntegrityError:
            continue
        written.add(item)
    assert {kind for *_, kind in written} == kinds, "some kind of guard was never broken"
    digest = sha256(db)

    check = run("move-to", "postgresql://nobody@127.0.0.1:1/none", "--check", db_path=db, key=None)

    assert check.returncode == 1, check.stderr
    listed = {
        (table, int(row), column, rule.split()[0])
        for table, row, column, rule in (_parse(line) for line in check.stdout.splitlines())
    }
    assert written <= listed, sorted(written - listed)
    assert {(t, r, c) for t, r, c, _ in listed} <= {(t, r, c) for t, r, c, _ in written}
    assert sha256(db) == digest
