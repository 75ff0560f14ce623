"""The database refuses what the models refuse, through raw SQL too, on SQLite and PostgreSQL.

The guards arrive with a real revision (``guards.SINCE``): a studio's file from before it is
upgraded with every row kept, and a file whose saved rows already break a guard is refused
with the list of rows, byte-for-byte unchanged. Later revisions get guards for what they add
without writing anything for them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from data.db.errors import MigrationFailedError, SchemaDriftError, WriteRefusedError
from data.db.head import migrations_dir, recorded_history
from data.db.runner import ensure_current
from data.migration import guards
from data.models import Client
from tests.clone import Clone, ok
from tests.conftest import run_alembic, sha256, sqlite_url
from tests.head_schema import noun, plain_limited_text_column, text_length
from tests.postgres import plain, studio_at_head
from tests.studio_data import STAMP, seed_baseline_rows, studio_invariants

GOOD = STAMP  # the stored form of a datetime
# The lengths today's models give the names: the guards follow them, and so do these tests.
FIRST_NAME = text_length("clients", "first_name")
LAST_NAME = text_length("clients", "last_name")


def refused_raw(db: Path, statement: str, match: str) -> None:
    """``statement`` through a plain connection (another tool) is refused by a guard."""
    connection = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match=match):
            connection.execute(statement)
    finally:
        connection.close()


def before_guards() -> str:
    """The revision the guards were added on top of (stable whatever the head is)."""
    step = ScriptDirectory(str(migrations_dir())).get_revision(guards.SINCE)
    assert step is not None and isinstance(step.down_revision, str)
    return step.down_revision


@pytest.fixture
def studio(db_path: Path) -> Path:
    """A studio created by the current app, with one client and one payment."""
    engine = create_engine(sqlite_url(db_path), poolclass=NullPool)
    try:
        ensure_current(engine)
    finally:
        engine.dispose()
    connection = sqlite3.connect(db_path)
    with connection:
        connection.execute(
            "INSERT INTO clients (id, first_name, last_name, created_at, updated_at) "
            "VALUES (1, 'Ada', 'Lovelace', ?, ?)",
            (GOOD, GOOD),
        )
        connection.execute(
            "INSERT INTO transactions (id, client_id, kind, method, amount_cents, occurred_at, "
            "created_at) VALUES (1, 1, 'payment', 'card', 5000, ?, ?)",
            (GOOD, GOOD),
        )
    connection.close()
    return db_path


# Each: an UPDATE a raw-SQL tool might run, its value, and the rule's words.
REFUSED = [
    ("UPDATE transactions SET amount_cents = ?", 10.5, "whole number"),
    ("UPDATE transactions SET amount_cents = ?", "ten", "whole number"),
    ("UPDATE transactions SET amount_cents = ?", 2**31, "between -2147483648 and 2147483647"),
    (
        "UPDATE clients SET first_name = ?",
        "x" * (FIRST_NAME + 1),
        f"at most {FIRST_NAME} characters",
    ),
    ("UPDATE clients SET first_name = ?", "Ada\x00Eve", "NUL"),
    ("UPDATE clients SET notes = ?", "fine\x00not", "NUL"),
    ("UPDATE clients SET notes = ?", b"\x00\x01", "must be text"),
    ("UPDATE transactions SET occurred_at = ?", "tomorrow", "date and time"),
    ("UPDATE transactions SET occurred_at = ?", "2026-02-30 10:00:00.000000", "date and time"),
    ("UPDATE transactions SET occurred_at = ?", "2026-03-01T10:00:00+02:00", "date and time"),
    ("UPDATE transactions SET occurred_at = ?", "2026-03-01 10:00:00", "date and time"),
    ("UPDATE transactions SET occurred_at = ?", 1767261600, "date and time"),
    ("UPDATE clients SET date_of_birth = ?", "1990-13-01", "date between"),
    ("UPDATE clients SET date_of_birth = ?", "01/02/1990", "date between"),
]


@pytest.mark.parametrize(("statement", "value", "words"), REFUSED)
def test_raw_sql_cannot_store_what_the_models_refuse(
    studio: Path, statement: str, value: object, words: str
) -> None:
    before = studio_invariants(studio)
    connection = sqlite3.connect(studio)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="InkLinkOS rule") as refused:
            connection.execute(statement, (value,))
        assert words in str(refused.value)
        connection.rollback()
    finally:
        connection.close()
    assert studio_invariants(studio) == before


@pytest.mark.parametrize(
    ("statement", "value"),
    [
        ("UPDATE transactions SET amount_cents = ?", 10.0),  # SQLite stores 10
        ("UPDATE transactions SET amount_cents = ?", 2**31 - 1),
        ("UPDATE clients SET first_name = ?", "x" * FIRST_NAME),
        ("UPDATE clients SET first_name = ?", "Zoë 🐉"),
        ("UPDATE clients SET notes = ?", None),
        ("UPDATE transactions SET occurred_at = ?", "2024-02-29 23:59:59.999999"),
        ("UPDATE clients SET date_of_birth = ?", "2000-02-29"),
    ],
)
def test_what_the_models_write_is_still_accepted(
    studio: Path, statement: str, value: object
) -> None:
    connection = sqlite3.connect(studio)
    try:
        with connection:
            connection.execute(statement, (value,))
    finally:
        connection.close()


def test_a_refused_write_through_the_app_names_the_rule(studio: Path, app_engine: Engine) -> None:
    with app_engine.connect() as connection, pytest.raises(WriteRefusedError) as refused:
        connection.execute(text("UPDATE transactions SET amount_cents = 10.5"))
    assert "a payment's amount cents must be a whole number" in str(refused.value)
    assert isinstance(refused.value.__cause__, Exception)  # the driver's error, chained

    from sqlalchemy.orm import Session

    with Session(app_engine) as session, pytest.raises(WriteRefusedError) as refused:
        client = session.get(Client, 1)
        assert client is not None
        client.last_name = "L" * (LAST_NAME + 1)
        session.commit()
    assert f"a client's last name can be at most {LAST_NAME} characters long" in str(refused.value)


def _file_at_revision_before_guards(db_path: Path) -> None:
    run_alembic("upgrade", before_guards(), db_path=db_path)
    seed_baseline_rows(db_path, clients=30, payments_per_client=4)


def test_an_existing_studio_is_upgraded_with_every_row_kept(db_path: Path) -> None:
    _file_at_revision_before_guards(db_path)
    kept = studio_invariants(db_path)
    engine = create_engine(sqlite_url(db_path), poolclass=NullPool)
    try:
        outcome = ensure_current(engine)
    finally:
        engine.dispose()
    assert outcome.action == "upgraded"
    assert outcome.to_revision == recorded_history().head
    assert studio_invariants(db_path) == kept
    refused_raw(db_path, "UPDATE transactions SET amount_cents = 0.5 WHERE id = 1", "whole number")


def test_rows_that_already_break_a_guard_stop_the_upgrade_with_their_list(db_path: Path) -> None:
    _file_at_revision_before_guards(db_path)
    connection = sqlite3.connect(db_path)
    with connection:
        connection.execute("UPDATE transactions SET amount_cents = 10.5 WHERE id IN (3, 7)")
        connection.execute("UPDATE transactions SET occurred_at = 'tomorrow' WHERE id = 9")
        connection.execute("UPDATE clients SET first_name = ? WHERE id = 4", ("N" * 150,))
    connection.close()
    before = sha256(db_path)
    engine = create_engine(sqlite_url(db_path), poolclass=NullPool)
    try:
        with pytest.raises(MigrationFailedError) as refused:
            ensure_current(engine)
    finally:
        engine.dispose()
    message = str(refused.value)
    assert "transactions row 3: a payment's amount cents must be a whole number" in message
    assert "transactions row 7" in message
    assert "transactions row 9: a payment's occurred at must be a date and time" in message
    assert "clients row 4: a client's first name can be at most 100 characters long" in message
    assert "Nothing was dropped or changed" in message
    assert sha256(db_path) == before
    # The command line refuses the same way, and changes nothing either.
    result = run_alembic("upgrade", "head", db_path=db_path, check=False)
    assert result.returncode != 0
    assert "transactions row 3" in result.stdout + result.stderr
    assert sha256(db_path) == before


def test_downgrade_drops_the_guards_and_upgrade_makes_them_again(db_path: Path) -> None:
    run_alembic("upgrade", guards.SINCE, db_path=db_path)
    run_alembic("downgrade", before_guards(), db_path=db_path)
    assert _triggers(db_path) == []
    run_alembic("upgrade", "head", db_path=db_path)
    assert _triggers(db_path)


def _triggers(db_path: Path) -> list[str]:
    connection = sqlite3.connect(db_path)
    try:
        return [
            str(row[0])
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        ]
    finally:
        connection.close()


def test_offline_sql_writes_the_guards(db_path: Path) -> None:
    result = run_alembic("upgrade", f"{before_guards()}:{guards.SINCE}", "--sql", db_path=db_path)
    assert 'CREATE TRIGGER "guard_transactions_insert"' in result.stdout
    assert "InkLinkOS rule transactions.amount_cents integer" in result.stdout


@pytest.mark.slow
def test_a_later_revision_gets_guards_without_writing_any(tmp_path: Path) -> None:
    """A new column, then its rename: guarded at once; the rows are kept; and a column added
    with a default that breaks its own guard is refused with the rows, file unchanged."""
    clone = Clone(tmp_path / "project")
    db = tmp_path / "studio.db"
    ok(clone.alembic("upgrade", "head", db_path=db))
    seed_baseline_rows(db, clients=5, payments_per_client=2)
    kept = studio_invariants(db)

    clone.add_client_column("    nickname: Mapped[str | None] = mapped_column(String(12))")
    ok(clone.alembic("revision", "--autogenerate", "-m", "client nickname", db_path=db))
    ok(clone.alembic("upgrade", "head", db_path=db))
    assert studio_invariants(db) == kept
    refused_raw(db, "UPDATE clients SET nickname = 'much too long a name'", "at most 12 characters")

    clone.edit("data/models/client.py", "    nickname:", "    alias:")
    written = clone.alembic("revision", "--autogenerate", "-m", "nickname is alias", db_path=db)
    assert (
        "possible-rename" in written.stdout + written.stderr
    )  # the lint asks for the rename below
    revision = clone.revision_file(clone.manifest()[-1])
    source = revision.read_text()
    # What autogenerate wrote for a rename (a drop and an add) is made a rename by hand.
    steps = source[source.index("def upgrade") :]
    fixed = (
        'def upgrade() -> None:\n    """nickname is alias"""\n'
        '    with op.batch_alter_table("clients") as batch_op:\n'
        '        batch_op.alter_column("nickname", new_column_name="alias")\n\n\n'
        'def downgrade() -> None:\n    """Undo: nickname is alias"""\n'
        '    with op.batch_alter_table("clients") as batch_op:\n'
        '        batch_op.alter_column("alias", new_column_name="nickname")\n'
    )
    revision.write_text(source.replace(steps, fixed))
    ok(clone.python("-m", "data.authoring.revisions", "--update", db_path=db))
    ok(clone.alembic("upgrade", "head", db_path=db))
    assert studio_invariants(db) == kept
    connection = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match=r"clients\.alias length"):
            connection.execute("UPDATE clients SET alias = 'much too long a name'")
        assert "nickname" not in " ".join(
            str(row[0]) for row in connection.execute("SELECT sql FROM sqlite_master")
        )
    finally:
        connection.close()

    clone.add_client_column(
        "    code: Mapped[str] = mapped_column(String(3), server_default='TOO-LONG')"
    )
    ok(clone.alembic("revision", "--autogenerate", "-m", "client code", db_path=db))
    before = sha256(db)
    refused = clone.alembic("upgrade", "head", db_path=db)
    assert refused.returncode != 0
    assert "clients row 1: a client's code can be at most 3 characters long" in (
        refused.stdout + refused.stderr
    )
    assert sha256(db) == before


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
def pg_studio(pg_url: URL) -> Iterator[Engine]:
    """A server database the current app created, with one client, behind the app's engine."""
    from data.db.session import create_app_engine

    studio_at_head(pg_url)
    engine = create_app_engine(pg_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("value", ["infinity", "-infinity", "10000-01-01 00:00:00+00"])
def test_the_server_refuses_datetimes_python_cannot_read(pg_studio: Engine, value: str) -> None:
    with pytest.raises(WriteRefusedError) as refused, pg_studio.begin() as connection:
        connection.exec_driver_sql(f"UPDATE clients SET created_at = '{value}'")
    assert "a client's created at must be a date and time between the years 1 and 9999" in str(
        refused.value
    )


def test_a_server_with_unreadable_dates_is_refused_with_the_rows(
    pg_url: URL, tmp_path: Path
) -> None:
    run_alembic(
        "upgrade", before_guards(), db_path=tmp_path / "unused.db", DATABASE_URL=plain(pg_url)
    )
    engine = create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO clients (id, first_name, last_name, created_at, updated_at) "
                "VALUES (5, 'Ada', 'Lovelace', 'infinity', now())"
            )
        with pytest.raises(MigrationFailedError, match="clients row 5: a client's created at"):
            ensure_current(engine)
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT count(*) FROM clients").scalar_one()
            version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert (rows, version.scalar_one()) == (1, before_guards())
    finally:
        engine.dispose()


def test_a_guard_dropped_by_another_tool_is_noticed_at_the_next_start(studio: Path) -> None:
    connection = sqlite3.connect(studio)
    with connection:
        connection.execute('DROP TRIGGER "guard_transactions_update"')
    connection.close()
    before = sha256(studio)
    engine = create_engine(sqlite_url(studio), poolclass=NullPool)
    try:
        with pytest.raises(SchemaDriftError, match="trigger guard_transactions_update is missing"):
            ensure_current(engine)
    finally:
        engine.dispose()
    assert sha256(studio) == before


@pytest.mark.slow
def test_a_data_step_after_a_rebuild_is_checked_against_every_guard(tmp_path: Path) -> None:
    """A rebuilt table has no guard triggers until the revision ends: what a data step writes
    into it then is checked before commit, and the upgrade refused with the rows."""
    clone = Clone(tmp_path / "project")
    db = tmp_path / "studio.db"
    ok(clone.alembic("upgrade", "head", db_path=db))
    seed_baseline_rows(db, clients=3, payments_per_client=1)
    ok(clone.alembic("revision", "-m", "pad names", db_path=db))
    revision = clone.revision_file(clone.manifest()[-1])
    source = revision.read_text()
    steps = source[source.index("def upgrade") :]
    revision.write_text(
        source.replace(
            steps,
            'def upgrade() -> None:\n    """pad names"""\n'
            '    with op.batch_alter_table("clients", recreate="always"):\n'
            "        pass  # a rebuild, whatever the columns are\n"
            '    op.execute("UPDATE clients SET first_name = first_name || '
            f"printf('%.{FIRST_NAME + 20}c', 'x') WHERE id = 2\")\n\n\n"
            'def downgrade() -> None:\n    """Undo: pad names"""\n'
            '    raise NotImplementedError("padded names cannot be told apart")\n',
        )
    )
    ok(clone.python("-m", "data.authoring.revisions", "--update", db_path=db))
    before = sha256(db)
    refused = clone.alembic("upgrade", "head", db_path=db)
    assert refused.returncode != 0
    assert f"clients row 2: a client's first name can be at most {FIRST_NAME} characters long" in (
        refused.stdout + refused.stderr
    )
    assert sha256(db) == before


def test_a_type_narrowed_by_the_rebuild_helper_is_checked_on_every_row(tmp_path: Path) -> None:
    """``rebuild_table`` copies rows into ``_rebuild_tmp_<t>``: a rebuild, like Alembic's
    batch copy, so a guard its new types bring is checked on every row, not on the first.

    The column is whichever plain ``String(n)`` column the models give clients today; the
    revision narrows it by one character, so only a value of the full length breaks it."""
    column, length = plain_limited_text_column("clients")
    clone = Clone(tmp_path / "project")
    db = tmp_path / "studio.db"
    ok(clone.alembic("upgrade", "head", db_path=db))
    seed_baseline_rows(db, clients=4, payments_per_client=1)
    connection = sqlite3.connect(db)
    with connection:
        connection.execute(f'UPDATE clients SET "{column}" = NULL')
        connection.execute(f'UPDATE clients SET "{column}" = ? WHERE id = 3', ("x" * length,))
    connection.close()
    ok(clone.alembic("revision", "-m", f"shorter {column}", db_path=db))
    revision = clone.revision_file(clone.manifest()[-1])
    source = revision.read_text()
    steps = source[source.index("def upgrade") :]
    declared = rf"({column}\W+)VARCHAR\({length}\)"
    revision.write_text(
        "import re\n\nfrom data.migration.rebuild import rebuild_table\n"
        + source.replace(
            steps,
            f'def upgrade() -> None:\n    """shorter {column}"""\n'
            "    bind = op.get_bind()\n"
            "    sql = bind.exec_driver_sql(\n"
            "        \"SELECT sql FROM sqlite_master WHERE name = 'clients'\"\n"
            "    ).scalar_one()\n"
            f"    narrowed = re.sub({declared!r}, r'\\1VARCHAR({length - 1})', sql)\n"
            "    assert narrowed != sql\n"
            '    rebuild_table(bind, "clients", narrowed)\n\n\n'
            f'def downgrade() -> None:\n    """Undo: shorter {column}"""\n'
            '    raise NotImplementedError("a test revision")\n',
        )
    )
    ok(clone.python("-m", "data.authoring.revisions", "--update", db_path=db))
    before = sha256(db)
    refused = clone.alembic("upgrade", "head", db_path=db)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    words = column.replace("_", " ")
    assert (
        f"clients row 3: a {noun('clients')}'s {words} can be at most {length - 1} characters long"
        in refused.stdout + refused.stderr
    )
    assert sha256(db) == before
