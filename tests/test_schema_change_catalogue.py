"""The common schema changes, each proved end to end the way a developer makes them.

For each change: edit a scratch copy of the models, run the real ``alembic revision
--autogenerate`` (or write the revision by hand where autogenerate cannot see the change),
check the file (dated name, typed, batch mode, named constraints, ruff, the lint), record it
with ``python -m data.db.revisions --update``, then upgrade a populated database, run
``alembic check``, downgrade and upgrade again: every row kept each time. This guards
``env.py``'s configuration as much as the revisions. Each change starts from whatever today's
head is.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from data.db.head import read_history, recorded_history
from data.db.revision_lint import lint_files, parse_revision
from tests.conftest import run_alembic
from tests.file_kind import is_encrypted
from tests.test_data_preservation import (
    MIGRATIONS,
    assert_kept,
    migrate,
    read,
    seed,
    studio_file,
    version,
)
from tests.test_revision_manifest import run_in, scratch_project

# year_month_day_hourminute-revision_slug.py, from alembic.ini's file_template
DATED_NAME = re.compile(r"^\d{4}_\d{2}_\d{2}_\d{4}-[0-9a-f]{12}_[a-z0-9_]+\.py$")

Probe = Callable[[sqlite3.Connection], None]


def _columns(connection: sqlite3.Connection, table: str) -> dict[str, tuple[str, int, str]]:
    """{column: (declared type, not null, default)}"""
    return {
        row[1]: (row[2], row[3], row[4])
        for row in connection.execute(f"PRAGMA table_info({table})")
    }


def _table_sql(connection: sqlite3.Connection, name: str) -> str:
    row = connection.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return str(row[0]) if row else ""


def _nothing(_connection: sqlite3.Connection) -> None:
    pass


@dataclass(frozen=True)
class Change:
    id: str
    message: str
    # (file under data/models, text to replace, replacement); "" as the text appends.
    edits: tuple[tuple[str, str, str], ...]
    # What the written revision must contain.
    expect: tuple[str, ...]
    # Hand-written (upgrade, downgrade) bodies, for what autogenerate cannot see.
    by_hand: tuple[str, str] | None = None
    acknowledge: str | None = None
    after_upgrade: Probe = _nothing
    after_downgrade: Probe = _nothing


def _instagram_is_empty(connection: sqlite3.Connection) -> None:
    assert _columns(connection, "clients")["instagram"][:2] == ("VARCHAR(100)", 0)
    assert connection.execute(
        "SELECT count(*) FROM clients WHERE instagram IS NOT NULL"
    ).fetchone() == (0,)


def _no_instagram(connection: sqlite3.Connection) -> None:
    assert "instagram" not in _columns(connection, "clients")


def _touch_ups_default_to_zero(connection: sqlite3.Connection) -> None:
    assert _columns(connection, "tattoo_sessions")["touch_up_count"][:2] == ("INTEGER", 1)
    values = {row[0] for row in connection.execute("SELECT touch_up_count FROM tattoo_sessions")}
    assert values == {0}


def _notes_renamed(connection: sqlite3.Connection) -> None:
    assert "notes" not in _columns(connection, "clients")
    kept = connection.execute(
        "SELECT count(*) FROM clients WHERE studio_notes = 'allergic to latex'"
    )
    assert kept.fetchone() == (3,)


def _notes_back(connection: sqlite3.Connection) -> None:
    kept = connection.execute("SELECT count(*) FROM clients WHERE notes = 'allergic to latex'")
    assert kept.fetchone() == (3,)


def _phone(length: int) -> Probe:
    def probe(connection: sqlite3.Connection) -> None:
        assert _columns(connection, "clients")["phone"][0] == f"VARCHAR({length})"
        phones = [row[0] for row in connection.execute("SELECT phone FROM clients ORDER BY id")]
        assert phones == [f"+44 7700 900{n:03d}" for n in range(1, 13)]

    return probe


def _has(name: str, present: bool = True) -> Probe:
    def probe(connection: sqlite3.Connection) -> None:
        schema = " ".join(
            str(row[0]) for row in connection.execute("SELECT sql FROM sqlite_master") if row[0]
        )
        assert (name in schema) is present, f"{name} {'missing' if present else 'still there'}"

    return probe


def _phone_unique(connection: sqlite3.Connection) -> None:
    _has("uq_clients_phone")(connection)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        connection.execute(
            "INSERT INTO clients (first_name, last_name, phone, created_at, updated_at) "
            "VALUES ('Dup', 'Licate', '+44 7700 900001', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
        )


def _deposit_checked(connection: sqlite3.Connection) -> None:
    _has("ck_tattoo_sessions_deposit_within_price")(connection)
    # The table rebuild kept the CHECKs that were already there.
    _has("ck_tattoo_sessions_status")(connection)
    with pytest.raises(sqlite3.IntegrityError, match="deposit_within_price"):
        connection.execute("UPDATE tattoo_sessions SET deposit_cents = price_cents + 1")


def _referrals(connection: sqlite3.Connection) -> None:
    _has("fk_clients_referred_by_id_clients")(connection)
    _has("ix_clients_referred_by_id")(connection)
    foreign_keys = connection.execute("PRAGMA foreign_key_list(clients)").fetchall()
    assert [(row[2], row[3], row[6]) for row in foreign_keys] == [
        ("clients", "referred_by_id", "SET NULL")
    ]


def _no_birthdays(connection: sqlite3.Connection) -> None:
    assert "date_of_birth" not in _columns(connection, "clients")


def _birthdays_column_back(connection: sqlite3.Connection) -> None:
    assert "date_of_birth" in _columns(connection, "clients")


def _display_names_filled(connection: sqlite3.Connection) -> None:
    clients = connection.execute("SELECT count(*) FROM clients").fetchone()[0]
    filled = connection.execute(
        "SELECT count(*) FROM clients WHERE display_name = first_name || ' ' || last_name"
    ).fetchone()[0]
    assert clients > 0 and filled == clients, (filled, clients)


def _no_display_names(connection: sqlite3.Connection) -> None:
    assert "display_name" not in _columns(connection, "clients")


def _consent_forms(connection: sqlite3.Connection) -> None:
    assert connection.execute("SELECT count(*) FROM consent_forms").fetchone() == (0,)
    _has("fk_consent_forms_client_id_clients")(connection)
    _has("ix_consent_forms_client_id")(connection)


CLIENT = "client.py"
SESSION = "tattoo_session.py"
PHONE = "    phone: Mapped[str | None] = mapped_column(String(40))\n"
DEPOSIT = "    deposit_cents: Mapped[cents] = mapped_column(default=0)\n"
CONSENT_FORM = '''"""A consent form a client signed before a session."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from data.models.base import Base, intpk, utcnow


class ConsentForm(Base):
    __tablename__ = "consent_forms"

    id: Mapped[intpk]
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="RESTRICT"), index=True
    )
    signed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
'''

CHANGES = [
    Change(
        "data-step-fills-a-new-column",
        "show each client by one name",
        ((CLIENT, PHONE, PHONE + "    display_name: Mapped[str | None] = mapped_column(String(201))\n"),),
        ("live_table(\"clients\")",),
        by_hand=(
            """
            # The table as it is at this revision, never the models (README, 'A data step').
            from data.migration.data_steps import live_table

            with op.batch_alter_table("clients", schema=None) as batch_op:
                batch_op.add_column(sa.Column("display_name", sa.String(length=201), nullable=True))
            clients = live_table("clients")
            op.execute(
                clients.update().values(display_name=clients.c.first_name + " " + clients.c.last_name)
            )
            """,
            """
            with op.batch_alter_table("clients", schema=None) as batch_op:
                batch_op.drop_column("display_name")
            """,
        ),
        after_upgrade=_display_names_filled,
        after_downgrade=_no_display_names,
    ),
    Change(
        "add-nullable-column",
        "add clients.instagram",
        ((CLIENT, PHONE, PHONE + "    instagram: Mapped[str | None] = mapped_column(String(100))\n"),),
        ('batch_op.add_column(sa.Column("instagram", sa.String(length=100), nullable=True))',),
        after_upgrade=_instagram_is_empty,
        after_downgrade=_no_instagram,
    ),
    Change(
        "add-not-null-column-with-server-default",
        "count touch-ups per session",
        ((SESSION, DEPOSIT, DEPOSIT + '    touch_up_count: Mapped[int] = mapped_column(server_default="0")\n'),),
        ('"touch_up_count", sa.Integer(), server_default="0", nullable=False',),
        after_upgrade=_touch_ups_default_to_zero,
    ),
    Change(
        "rename-column",
        "rename clients.notes to studio_notes",
        ((CLIENT, "    notes: Mapped", "    studio_notes: Mapped"),),
        ('new_column_name="studio_notes"', "batch_alter_table"),
        by_hand=(
            """
            with op.batch_alter_table("clients", schema=None) as batch_op:
                batch_op.alter_column(
                    "notes", new_column_name="studio_notes", existing_type=sa.Text(), existing_nullable=True
                )
            """,
            """
            with op.batch_alter_table("clients", schema=None) as batch_op:
                batch_op.alter_column(
                    "studio_notes", new_column_name="notes", existing_type=sa.Text(), existing_nullable=True
                )
            """,
        ),
        after_upgrade=_notes_renamed,
        after_downgrade=_notes_back,
    ),
    Change(
        "widen-string",
        "allow longer phone numbers",
        ((CLIENT, PHONE, PHONE.replace("String(40)", "String(64)")),),
        ("batch_alter_table", "type_=sa.String(length=64)", "type_=sa.VARCHAR(length=40)"),
        after_upgrade=_phone(64),
        after_downgrade=_phone(40),
    ),
    Change(
        "add-index",
        "index clients by last name",
        ((CLIENT, "    last_name: Mapped[str100]", "    last_name: Mapped[str] = mapped_column(String(100), index=True)"),),
        ('batch_op.create_index(batch_op.f("ix_clients_last_name")',),
        after_upgrade=_has("ix_clients_last_name"),
        after_downgrade=_has("ix_clients_last_name", present=False),
    ),
    Change(
        "add-unique-constraint",
        "one client per phone number",
        ((CLIENT, PHONE, PHONE.replace("String(40))", "String(40), unique=True)")),),
        ('batch_op.create_unique_constraint(batch_op.f("uq_clients_phone")',),
        after_upgrade=_phone_unique,
        after_downgrade=_has("uq_clients_phone", present=False),
    ),
    Change(
        "add-check",
        "deposit within the price",
        ((SESSION, '    __table_args__ = (\n',
          '    __table_args__ = (\n'
          '        CheckConstraint("deposit_cents <= price_cents", name="deposit_within_price"),\n'),),
        ("create_check_constraint",),
        by_hand=(
            """
            with op.batch_alter_table("tattoo_sessions", schema=None) as batch_op:
                batch_op.create_check_constraint(
                    batch_op.f("ck_tattoo_sessions_deposit_within_price"), "deposit_cents <= price_cents"
                )
            """,
            """
            with op.batch_alter_table("tattoo_sessions", schema=None) as batch_op:
                batch_op.drop_constraint(batch_op.f("ck_tattoo_sessions_deposit_within_price"), type_="check")
            """,
        ),
        after_upgrade=_deposit_checked,
        after_downgrade=_has("ck_tattoo_sessions_deposit_within_price", present=False),
    ),
    Change(
        "add-foreign-key",
        "record who referred a client",
        (
            (CLIENT, "CheckConstraint, Date,", "CheckConstraint, Date, ForeignKey,"),
            (CLIENT, PHONE, PHONE + '    referred_by_id: Mapped[int | None] = mapped_column(\n'
             '        ForeignKey("clients.id", ondelete="SET NULL"), index=True\n    )\n'),
        ),
        ('batch_op.create_foreign_key(\n            batch_op.f("fk_clients_referred_by_id_clients")',),
        after_upgrade=_referrals,
        after_downgrade=_has("fk_clients_referred_by_id_clients", present=False),
    ),
    Change(
        "drop-column",
        "stop keeping dates of birth",
        ((CLIENT, "    date_of_birth: Mapped[dt.date | None] = mapped_column(Date)\n", ""),),
        ('batch_op.drop_column("date_of_birth")',),
        acknowledge='"clients.date_of_birth": "the studio decided not to keep birth dates"',
        after_upgrade=_no_birthdays,
        after_downgrade=_birthdays_column_back,
    ),
    Change(
        "add-table",
        "consent forms",
        (
            ("consent_form.py", "", CONSENT_FORM),
            ("__init__.py", "", "from data.models.consent_form import ConsentForm  # noqa: E402, F401\n"),
        ),
        ('op.create_table(\n        "consent_forms"', 'name=op.f("fk_consent_forms_client_id_clients")'),
        after_upgrade=_consent_forms,
        after_downgrade=_has("consent_forms", present=False),
    ),
]  # fmt: skip


def edit_models(root: Path, change: Change) -> None:
    for name, old, new in change.edits:
        path = root / "data" / "models" / name
        text = path.read_text() if path.exists() else ""
        if old:
            assert text.count(old) == 1, f"{name}: {old!r} not found once"
            path.write_text(text.replace(old, new))
        else:
            path.write_text(text + new)


def _indent(body: str) -> str:
    lines = [
        line[12:] if line.startswith(" " * 12) else line for line in body.strip("\n").split("\n")
    ]
    return "\n".join("    " + line for line in lines) + "\n"


def write_by_hand(path: Path, upgrade: str, downgrade: str) -> None:
    """Fill the template's two ``pass`` bodies, as a developer would."""
    text = path.read_text()
    head, tail = text.split("def downgrade() -> None:")
    assert head.count("    pass\n") == 1 and tail.count("    pass\n") == 1, text
    head = head.replace("    pass\n", _indent(upgrade))
    tail = tail.replace("    pass\n", _indent(downgrade))
    path.write_text(head + "def downgrade() -> None:" + tail)


def acknowledge(path: Path, entries: str) -> None:
    text = path.read_text()
    anchor = "depends_on: str | Sequence[str] | None = None\n"
    assert anchor in text
    path.write_text(
        text.replace(anchor, anchor + f"\nacknowledged_drops: dict[str, str] = {{{entries}}}\n")
    )


def ruff(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


# Two worked examples also run on an encrypted studio (conftest.file_kind): the file made
# encrypted, autogenerate and the alembic command run against it.
ON_ENCRYPTED = ("add-nullable-column", "rename-column")
CASES = [pytest.param(change, "plain", id=change.id) for change in CHANGES] + [
    pytest.param(change, "encrypted", id=f"{change.id}-encrypted")
    for change in CHANGES
    if change.id in ON_ENCRYPTED
]


@pytest.mark.parametrize(("change", "file_kind"), CASES, indirect=["file_kind"])
def test_schema_change(change: Change, file_kind: str, tmp_path: Path) -> None:
    root = scratch_project(tmp_path)
    versions = root / "migrations" / "versions"
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir()
    head = recorded_history().head
    # A studio's database at today's head, with a year of rows in it.
    migrate(MIGRATIONS, db, head)
    expected = seed(db)

    def alembic(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_alembic(*args, db_path=db, cwd=root, check=check, PYTHONPATH=str(root))

    def rows_kept(when: str, probe: Probe) -> None:
        # What the revision lets go on purpose (acknowledged_drops) is not expected back.
        assert_kept(expected, read(db), when, parse_revision(revision_file).acknowledged)
        with studio_file(db) as connection:
            probe(connection)

    # 1. The developer's change, and the revision it yields.
    edit_models(root, change)
    before = set(versions.glob("*.py"))
    if change.by_hand is None:
        written_by = alembic("revision", "--autogenerate", "-m", change.message, check=False)
        # The file is written and recorded either way; a drop fails the lint until it is
        # acknowledged, and the command says so.
        assert (written_by.returncode != 0) is (change.acknowledge is not None), (
            written_by.stdout + written_by.stderr
        )
    else:
        alembic("revision", "-m", change.message)
    written = set(versions.glob("*.py")) - before
    assert len(written) == 1, written
    (revision_file,) = written
    if change.by_hand is not None:
        write_by_hand(revision_file, *change.by_hand)
    if change.acknowledge is not None:
        drops = [f.rule for f in lint_files([revision_file])]
        assert drops and set(drops) == {"acknowledged-drop"}, drops
        acknowledge(revision_file, change.acknowledge)
    if change.by_hand is not None or change.acknowledge is not None:
        # What the README asks after editing a revision by hand.
        assert ruff(root, "check", "--fix", "--quiet", str(revision_file)).returncode == 0
        assert ruff(root, "format", "--quiet", str(revision_file)).returncode == 0

    # 2. The file itself.
    assert DATED_NAME.match(revision_file.name), revision_file.name
    source = revision_file.read_text()
    assert source.startswith(f'"""{change.message}\n')
    assert f'down_revision: str | Sequence[str] | None = "{head}"' in source
    assert "def upgrade() -> None:" in source and "def downgrade() -> None:" in source
    assert "data.models" not in source
    for expected_text in change.expect:
        assert expected_text in source, f"{expected_text!r} not in:\n{source}"
    findings = lint_files([revision_file])
    assert findings == [], "\n".join(str(f) for f in findings)
    checked = ruff(root, "check", str(revision_file))
    assert checked.returncode == 0, checked.stdout
    formatted = ruff(root, "format", "--check", str(revision_file))
    assert formatted.returncode == 0, formatted.stdout

    # 3. Recorded (again, after the edits) with the one documented command: the manifest's
    # new head and its exported schema. The revision never left this machine: no flags.
    recorded = run_in(root, "-m", "data.db.revisions", "--update", db_path=db)
    assert recorded.returncode == 0, recorded.stderr
    new_head = re.search(r'^revision: str = "(\w+)"', source, re.MULTILINE)
    assert new_head is not None
    assert read_history(root / "migrations").head == new_head[1]
    checked_record = run_in(root, "-m", "data.db.revisions", "--check", db_path=db)
    assert checked_record.returncode == 0, checked_record.stderr

    # 4. Up, check, down, up: a populated database keeps every row.
    alembic("upgrade", "head")
    assert version(db) == [new_head[1]]
    rows_kept("after the upgrade", change.after_upgrade)
    check = alembic("check")
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    alembic("downgrade", "-1")
    assert version(db) == [head]
    rows_kept("after the downgrade", change.after_downgrade)
    alembic("upgrade", "head")
    assert version(db) == [new_head[1]]
    rows_kept("after upgrading again", change.after_upgrade)
    assert is_encrypted(db) == (file_kind == "encrypted")
