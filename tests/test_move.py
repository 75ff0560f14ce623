"""Moving a studio's file to a PostgreSQL server (and back), through the real command.

Every move runs ``python -m data.db move-to URL`` in a child process against a real server
database made for the test; every file is a real SQLite file under ``tmp_path``. What is
compared is what the app would see: every table of the models read through the models on
both sides (tables come from the models' metadata, so a new table or column is covered).
Files holding rows the server would refuse are made the way a file from before the storage
guards holds them: raw rows written with the guard triggers dropped, then put back.
"""

from __future__ import annotations

import fcntl
import os
import pty
import sqlite3
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from data.db.head import recorded_history
from data.db.outcome import CopyProgress, RevisionProgress
from data.db.runner import ensure_current
from data.migration.backup import list_backups
from data.migration.transfer import studio_tables
from tests.conftest import (
    PROJECT_ROOT,
    inklink_db,
    legacy_database,
    sha256,
    sqlite_url,
    subprocess_env,
)
from tests.head_schema import text_length
from tests.postgres import plain, studio_at_head
from tests.studio_data import seed_baseline_rows

pytestmark = pytest.mark.postgres

# A session from a year's last microsecond into the next year: what a text copy shifts.
MOMENTS = ("2025-12-31 23:59:59.999999", "2026-03-01 10:00:00.123456")


def make_studio(path: Path, clients: int = 12) -> Path:
    """A studio the current app created, with clients, sessions and payments in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(sqlite_url(path), poolclass=NullPool)
    try:
        ensure_current(engine)
    finally:
        engine.dispose()
    seed_baseline_rows(path, clients=clients, payments_per_client=4)
    connection = sqlite3.connect(path)
    with connection:
        # Values that go wrong when copied as text: microseconds, a year's last moment, a
        # session with no end, text outside ASCII, a date.
        connection.execute(
            "UPDATE tattoo_sessions SET starts_at = ?, ends_at = ? WHERE id = 1", MOMENTS
        )
        connection.execute("UPDATE tattoo_sessions SET ends_at = NULL WHERE id = 2")
        connection.execute(
            "UPDATE clients SET first_name = 'Zoë', notes = 'línea 1\nlínea 2 ✓', "
            "date_of_birth = '1990-02-28', email = 'zoë@example.com' WHERE id = 3"
        )
    connection.close()
    return path


def model_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the models, as the models read them, in key order."""
    with engine.connect() as connection:
        return {
            table.name: [
                tuple(row)
                for row in connection.execute(
                    select(*table.columns).order_by(*table.primary_key.columns)
                )
            ]
            for table in studio_tables()
        }


def rows_of_file(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(sqlite_url(path), poolclass=NullPool)
    try:
        return model_rows(engine)
    finally:
        engine.dispose()


def rows_of_server(url: URL) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return model_rows(engine)
    finally:
        engine.dispose()


def server_scalar(url: URL, sql: str) -> Any:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(sql).scalar()
    finally:
        engine.dispose()


def server_counts(url: URL) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {
                table.name: int(
                    connection.exec_driver_sql(f'SELECT count(*) FROM "{table.name}"').scalar_one()
                )
                for table in studio_tables()
            }
    finally:
        engine.dispose()


def server_at_head(url: URL) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        ensure_current(engine)
    finally:
        engine.dispose()


def write_unguarded(path: Path, *statements: str) -> None:
    """Write rows as a file from before the storage guards holds them: drop each guard
    trigger, write, put the trigger back exactly, and record the schema as the runner does
    (the schema is what its revision promises again, so a start does not refuse it)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        triggers = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'guard_%'"
        ).fetchall()
        assert triggers, "the file has no guard triggers to drop"
        connection.execute("BEGIN")
        for name, _sql in triggers:
            connection.execute(f'DROP TRIGGER "{name}"')
        for statement in statements:
            connection.execute(statement)
        for _name, sql in triggers:
            connection.execute(sql)
        connection.execute("COMMIT")
        (cookie,) = connection.execute("PRAGMA schema_version").fetchone()
        connection.execute(f"PRAGMA user_version = {cookie}")
    finally:
        connection.close()


# --- the move ------------------------------------------------------------------------------


def test_move_copies_every_row_as_the_models_read_it(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = rows_of_file(db)
    digest = sha256(db)

    result = inklink_db("move-to", plain(pg_url), db_path=db)

    assert result.returncode == 0, result.stderr
    assert rows_of_server(pg_url) == before
    assert sum(len(rows) for rows in before.values()) > 0
    assert "verified before commit" in result.stdout
    assert sha256(db) == digest  # the source is only read
    assert server_scalar(pg_url, "SELECT version_num FROM alembic_version") == (
        recorded_history().head
    )


def test_the_servers_sequences_continue_after_the_copied_ids(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    assert inklink_db("move-to", plain(pg_url), db_path=db).returncode == 0
    highest = max(row[0] for row in rows_of_file(db)["clients"])

    engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            new_id = connection.exec_driver_sql(
                "INSERT INTO clients (first_name, last_name, created_at, updated_at) "
                "VALUES ('New', 'Client', now(), now()) RETURNING id"
            ).scalar_one()
    finally:
        engine.dispose()
    assert new_id == highest + 1


def test_a_server_in_new_york_gets_the_same_moments(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    server_scalar(pg_url, "SELECT 1")
    engine = create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(
                f"ALTER DATABASE \"{pg_url.database}\" SET timezone = 'America/New_York'"
            )
    finally:
        engine.dispose()
    assert server_scalar(pg_url, "SHOW timezone") == "America/New_York"

    assert inklink_db("move-to", plain(pg_url), db_path=db).returncode == 0

    # Stored as the same UTC moments the file holds (read as UTC text on the server)...
    stored = server_scalar(
        pg_url,
        "SELECT string_agg(to_char(starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), "
        "',' ORDER BY id) FROM tattoo_sessions WHERE id = 1",
    )
    assert stored == MOMENTS[0]
    # ...and the app, reading through a New York session, sees what it saw on the file.
    assert rows_of_server(pg_url) == rows_of_file(db)


def test_progress_reaches_the_app_in_init_dbs_callback_shape(tmp_path: Path, pg_url: URL) -> None:
    from data.db.move import move_to_server

    db = make_studio(tmp_path / "inklink.db")
    steps: list[RevisionProgress] = []

    outcome = move_to_server(db, pg_url, progress=steps.append)

    assert all(isinstance(step, RevisionProgress) for step in steps)
    copies = [step for step in steps if isinstance(step, CopyProgress)]
    total = sum(outcome.rows.values())
    assert copies[-1].number == copies[-1].total == total
    assert [step.number for step in copies] == sorted(step.number for step in copies)
    assert {step.table for step in copies} == {table.name for table in studio_tables()}


def test_a_terminal_gets_a_bar_per_table_with_rows_per_second(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    leader, follower = pty.openpty()
    # A terminal 120 columns wide, as an operator's is (a new pty has no size).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        process = subprocess.run(
            [sys.executable, "-m", "data.db", "move-to", plain(pg_url)],
            env=subprocess_env(db),
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=300,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, shown
    for table in studio_tables():
        assert f"{table.name} (" in shown
    assert "rows/s" in shown
    assert "\r" in shown  # redrawn in place: a bar, not log lines
    assert "started" not in shown


def test_without_a_terminal_progress_is_plain_lines(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    result = inklink_db("move-to", plain(pg_url), db_path=db)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    for table in studio_tables():
        assert any(table.name in line and line.endswith("done") for line in lines), lines
    assert "\r" not in result.stderr


def test_a_file_behind_head_is_upgraded_with_its_backup_first(tmp_path: Path, pg_url: URL) -> None:
    db = legacy_database(tmp_path / "old.db")
    seed_baseline_rows(db)

    result = inklink_db("move-to", plain(pg_url), db_path=db)

    assert result.returncode == 0, result.stderr
    assert list_backups(db), "no backup made before the file's upgrade"
    assert "backed up" in result.stdout
    assert rows_of_server(pg_url) == rows_of_file(db)


def test_status_and_verify_on_the_server_after_a_move(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    assert inklink_db("move-to", plain(pg_url), db_path=db).returncode == 0
    on_server = subprocess_env(db, DATABASE_URL=plain(pg_url))

    status = inklink_db("status", db_path=db, env=on_server)
    assert status.returncode == 0, status.stderr
    assert f"Revision: {recorded_history().head} (head)" in status.stdout
    assert "***" in status.stdout or pg_url.password is None
    verify = inklink_db("verify", db_path=db, env=on_server)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified" in verify.stdout


# --- refusals: nothing copied, the file byte for byte as it was ----------------------------

REFUSED_ROWS = (
    # an over-long name, a NUL, money with a fraction, an integer past the server's, a
    # datetime not in the stored form, an email whose lower case only the server changes
    (
        "UPDATE clients SET first_name = '{}' WHERE id = 2".format(
            "x" * (text_length("clients", "first_name") + 1)
        ),
        "clients",
        2,
        "first_name",
        "length",
    ),
    ("UPDATE clients SET notes = 'a' || char(0) || 'b' WHERE id = 4", "clients", 4, "notes", "nul"),
    (
        "UPDATE transactions SET amount_cents = 10.5 WHERE id = 3",
        "transactions",
        3,
        "amount_cents",
        "integer",
    ),
    (
        "UPDATE tattoo_sessions SET price_cents = 3000000000 WHERE id = 5",
        "tattoo_sessions",
        5,
        "price_cents",
        "range",
    ),
    (
        "UPDATE tattoo_sessions SET starts_at = '2026-02-30 10:00:00.000000' WHERE id = 6",
        "tattoo_sessions",
        6,
        "starts_at",
        "datetime",
    ),
    (
        "UPDATE clients SET email = 'Éva@example.com' WHERE id = 7",
        "clients",
        7,
        "email",
        "lower case",
    ),
)


@pytest.fixture
def refused_studio(tmp_path: Path) -> Path:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    write_unguarded(db, *(statement for statement, *_ in REFUSED_ROWS))
    return db


def test_check_lists_every_row_the_server_would_refuse(refused_studio: Path, pg_url: URL) -> None:
    digest = sha256(refused_studio)

    result = inklink_db("move-to", plain(pg_url), "--check", db_path=refused_studio)

    assert result.returncode == 1, result.stderr
    listed = result.stdout.splitlines()
    assert len(listed) == len(REFUSED_ROWS), listed
    for _, table, row, column, rule in REFUSED_ROWS:
        assert any(
            line.startswith(f"{table} row {row}: {column}:") and f"(rule {rule}" in line
            for line in listed
        ), (table, row, column, listed)
    assert sha256(refused_studio) == digest
    assert server_scalar(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0


def test_the_move_refuses_to_start_with_that_list(refused_studio: Path, pg_url: URL) -> None:
    digest = sha256(refused_studio)

    result = inklink_db("move-to", plain(pg_url), db_path=refused_studio)

    assert result.returncode == 2
    assert result.stderr.count(f"Database {refused_studio}") == 1  # printed once
    for _, table, row, column, _rule in REFUSED_ROWS:
        assert f"{table} row {row}: {column}:" in result.stderr
    assert sha256(refused_studio) == digest
    # Not even the schema was made on the server: nothing started.
    assert server_scalar(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0


def test_a_server_with_studio_rows_is_never_merged_into(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    studio_at_head(pg_url)  # one client already there
    digest = sha256(db)

    result = inklink_db("move-to", plain(pg_url), db_path=db)

    assert result.returncode == 2
    assert "already holds studio rows (clients 1)" in result.stderr
    assert server_counts(pg_url)["clients"] == 1
    assert sha256(db) == digest


def test_a_difference_before_commit_rolls_the_server_back_whole(
    tmp_path: Path, pg_url: URL
) -> None:
    db = make_studio(tmp_path / "inklink.db")
    digest = sha256(db)
    server_at_head(pg_url)
    engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            # Something on the server changes a payment as it is written: the copy must see it.
            connection.exec_driver_sql(
                "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF NEW.id = 2 THEN NEW.amount_cents := NEW.amount_cents + 1; END IF; "
                "RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER bump BEFORE INSERT ON transactions FOR EACH ROW EXECUTE FUNCTION bump()"
            )
    finally:
        engine.dispose()

    result = inklink_db("move-to", plain(pg_url), db_path=db)

    assert result.returncode == 2
    assert "transactions: the copied rows differ" in result.stderr
    assert "payment totals differ for client(s) 1" in result.stderr
    assert set(server_counts(pg_url).values()) == {0}
    assert sha256(db) == digest


def test_an_error_part_way_rolls_the_server_back_whole(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    digest = sha256(db)
    server_at_head(pg_url)
    engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "ALTER TABLE transactions ADD CONSTRAINT test_refuses_one CHECK (id <> 40)"
            )
    finally:
        engine.dispose()

    result = inklink_db("move-to", plain(pg_url), db_path=db)

    assert result.returncode == 2
    assert "test_refuses_one" in result.stderr
    assert "rolled back whole" in result.stderr
    assert set(server_counts(pg_url).values()) == {0}
    assert sha256(db) == digest


def test_a_url_that_is_not_a_server_is_refused_naming_it(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "inklink.db")
    digest = sha256(db)
    result = inklink_db("move-to", "sqlite:///elsewhere.db", db_path=db)
    assert result.returncode == 2
    assert "sqlite:///elsewhere.db" in result.stderr
    assert "postgresql://" in result.stderr
    assert sha256(db) == digest


# --- and back: export --------------------------------------------------------------------


def test_export_brings_a_servers_studio_back_into_a_new_file(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    assert inklink_db("move-to", plain(pg_url), db_path=db).returncode == 0
    copy = tmp_path / "back" / "portable.db"
    copy.parent.mkdir()

    result = inklink_db(
        "export", str(copy), db_path=db, env=subprocess_env(db, DATABASE_URL=plain(pg_url))
    )

    assert result.returncode == 0, result.stderr
    assert rows_of_file(copy) == rows_of_file(db)
    versions = sqlite3.connect(copy).execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(recorded_history().head,)]


def test_export_never_overwrites_a_file(tmp_path: Path, pg_url: URL) -> None:
    db = make_studio(tmp_path / "inklink.db")
    existing = tmp_path / "taken.db"
    existing.write_bytes(b"someone's file")

    result = inklink_db("export", str(existing), "--from", plain(pg_url), db_path=db)

    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert existing.read_bytes() == b"someone's file"


def test_a_failed_export_leaves_no_file_behind(tmp_path: Path, pg_url: URL) -> None:
    studio_at_head(pg_url)
    engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            # A server some newer app upgraded: this app cannot copy it table for table.
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'fffffffffff1'")
    finally:
        engine.dispose()
    copy = tmp_path / "portable.db"

    result = inklink_db("export", str(copy), "--from", plain(pg_url), db_path=tmp_path / "x.db")

    assert result.returncode == 2
    assert "fffffffffff1" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("portable")) == []
