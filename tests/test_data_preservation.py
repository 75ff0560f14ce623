"""Every revision keeps a studio's data: seed at the revision before it, step, compare.

A revision's step is tested on a database seeded with realistic rows in plain SQL (not the
models, which describe only the newest schema). What matters to a studio is compared before
and after: row counts, each client's payment total, every session and payment still tied to
its client. Where the downgrade can keep the data, down and up again keep it too.

New revisions are picked up automatically. When one renames or drops something the seeder
or the reader below use, register new ones under that revision's id in ``SEEDERS`` /
``READERS``: the newest registration at or before a revision is the one used for it.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection

from data.db.head import BASELINE_REVISION, HEAD_REVISION
from data.db.policy import create_migration_engine
from data.db.revision_lint import parse_revision
from tests.conftest import PROJECT_ROOT, sqlite_url

MIGRATIONS = PROJECT_ROOT / "migrations"


@dataclass
class StudioFacts:
    """What a studio must find again after any upgrade."""

    counts: dict[str, int] = field(default_factory=dict)
    # client id -> deposits + payments + tips - refunds, in cents
    paid_cents: dict[int, int] = field(default_factory=dict)
    session_client: dict[int, int] = field(default_factory=dict)
    # transaction id -> (client id, session id or None)
    transaction_links: dict[int, tuple[int, int | None]] = field(default_factory=dict)

    def differences(self, found: StudioFacts) -> list[str]:
        lines = [
            f"{table}: {self.counts.get(table)} rows expected, {found.counts.get(table)} found"
            for table in sorted(self.counts.keys() | found.counts.keys())
            if self.counts.get(table) != found.counts.get(table)
        ]
        lines += [
            f"client {client}: paid {self.paid_cents.get(client)} cents expected, "
            f"{found.paid_cents.get(client)} found"
            for client in sorted(self.paid_cents.keys() | found.paid_cents.keys())
            if self.paid_cents.get(client) != found.paid_cents.get(client)
        ]
        lines += [
            f"session {session}: client {self.session_client.get(session)} expected, "
            f"{found.session_client.get(session)} found"
            for session in sorted(self.session_client.keys() | found.session_client.keys())
            if self.session_client.get(session) != found.session_client.get(session)
        ]
        lines += [
            f"transaction {tx}: (client, session) {self.transaction_links.get(tx)} expected, "
            f"{found.transaction_links.get(tx)} found"
            for tx in sorted(self.transaction_links.keys() | found.transaction_links.keys())
            if self.transaction_links.get(tx) != found.transaction_links.get(tx)
        ]
        return lines


def assert_same(expected: StudioFacts, found: StudioFacts, when: str) -> None:
    problems = expected.differences(found)
    assert not problems, f"{when}, the studio's data changed:\n  " + "\n  ".join(problems)


# --- seeding and reading, in plain SQL, per schema generation --------------------------------

_FIRST = ["Ava", "Noah", "Mia", "Liam", "Zoe", "Omar", "Ines", "Kai", "Lena", "Ravi", "Yuki", "Sam"]
_LAST = ["Okafor", "Lindqvist", "Moreau", "Silva", "Nakamura", "Byrne", "Haddad", "Novak"]
_STATUSES = ["scheduled", "in_progress", "completed", "completed", "cancelled", "no_show"]
_METHODS = ["cash", "card", "card", "bank_transfer", "other"]


def _stamp(moment: dt.datetime) -> str:
    """How SQLAlchemy's DateTime stores a UTC moment in SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def seed_baseline(connection: sqlite3.Connection) -> StudioFacts:
    """A small studio's year: clients, sessions in every status, payments of every kind."""
    rng = random.Random(20261127)
    facts = StudioFacts()
    start = dt.datetime(2026, 1, 5, 10, 0)
    sessions = transactions = 0

    def pay(client: int, session: int | None, kind: str, cents: int, at: dt.datetime) -> None:
        nonlocal transactions
        transactions += 1
        connection.execute(
            "INSERT INTO transactions (id, client_id, session_id, kind, method, amount_cents, "
            "occurred_at, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (transactions, client, session, kind, rng.choice(_METHODS), cents, _stamp(at),
             "aftercare balm" if session is None else None, _stamp(at)),
        )  # fmt: skip
        facts.transaction_links[transactions] = (client, session)
        sign = -1 if kind == "refund" else 1
        facts.paid_cents[client] = facts.paid_cents.get(client, 0) + sign * cents

    for client in range(1, len(_FIRST) + 1):
        first, last = _FIRST[client - 1], _LAST[client % len(_LAST)]
        joined = start + dt.timedelta(days=client * 9)
        connection.execute(
            "INSERT INTO clients (id, first_name, last_name, email, phone, date_of_birth, notes, "
            "created_at, updated_at, archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (client, first, last,
             None if client % 5 == 0 else f"{first}.{last}@example.org".lower(),
             f"+44 7700 900{client:03d}", f"19{70 + client}-0{client % 9 + 1}-1{client % 9}",
             "allergic to latex" if client % 4 == 0 else None, _stamp(joined), _stamp(joined),
             _stamp(joined + dt.timedelta(days=200)) if client == 7 else None),
        )  # fmt: skip
        facts.paid_cents.setdefault(client, 0)
        for visit in range(client % 4):
            sessions += 1
            status = rng.choice(_STATUSES)
            starts = joined + dt.timedelta(days=14 * (visit + 1), hours=rng.randrange(8))
            price = rng.randrange(8, 60) * 1000
            deposit = rng.choice([0, 5000, 10000]) if price > 10000 else 0
            connection.execute(
                "INSERT INTO tattoo_sessions (id, client_id, artist, starts_at, ends_at, status, "
                "placement, description, price_cents, deposit_cents, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sessions, client, rng.choice(["Jo", "Marta", "Dev"]), _stamp(starts),
                 _stamp(starts + dt.timedelta(hours=3)) if status == "completed" else None,
                 status, rng.choice(["forearm", "back", "ankle", None]), "fine-line botanical",
                 price, deposit, _stamp(starts), _stamp(starts)),
            )  # fmt: skip
            facts.session_client[sessions] = client
            if deposit:
                pay(client, sessions, "deposit", deposit, starts - dt.timedelta(days=7))
            if status == "completed":
                pay(client, sessions, "payment", price - deposit, starts)
                pay(client, sessions, "tip", 1500 + visit * 500, starts)
            if status == "cancelled" and deposit:
                pay(client, sessions, "refund", deposit, starts)
        if client % 3 == 0:
            pay(client, None, "payment", 1200, joined + dt.timedelta(days=30))

    facts.counts = {
        "clients": len(_FIRST),
        "tattoo_sessions": sessions,
        "transactions": transactions,
    }
    return facts


def read_baseline(connection: sqlite3.Connection) -> StudioFacts:
    def rows(sql: str) -> list[tuple[int, ...]]:
        return [tuple(row) for row in connection.execute(sql)]

    return StudioFacts(
        counts={
            table: rows(f"SELECT count(*) FROM {table}")[0][0]
            for table in ("clients", "tattoo_sessions", "transactions")
        },
        paid_cents=dict(
            rows(
                "SELECT c.id, coalesce(sum(CASE t.kind WHEN 'refund' THEN -t.amount_cents "
                "ELSE t.amount_cents END), 0) FROM clients c "
                "LEFT JOIN transactions t ON t.client_id = c.id GROUP BY c.id"
            )
        ),
        session_client=dict(rows("SELECT id, client_id FROM tattoo_sessions")),
        transaction_links={
            tx: (client, session)
            for tx, client, session in rows("SELECT id, client_id, session_id FROM transactions")
        },
    )


T = TypeVar("T")
Seeder = Callable[[sqlite3.Connection], StudioFacts]
Reader = Callable[[sqlite3.Connection], StudioFacts]
# Keyed by the revision whose schema they were written for.
SEEDERS: dict[str, Seeder] = {BASELINE_REVISION: seed_baseline}
READERS: dict[str, Reader] = {BASELINE_REVISION: read_baseline}


def _newest_at_or_before(registry: dict[str, T], revision: str, script: ScriptDirectory) -> T:
    for step in script.iterate_revisions(revision, "base"):
        if step.revision in registry:
            return registry[step.revision]
    raise LookupError(f"nothing registered at or before revision {revision}")


# --- migrating a file under the runner's policy, one step at a time --------------------------


def alembic_config(location: Path, connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    return config


def migrate(location: Path, db: Path, target: str, *, down: bool = False) -> None:
    """One transaction with foreign keys off, checked before commit, as the runner does."""
    engine = create_migration_engine(sqlite_url(db))
    try:
        with engine.connect() as connection, connection.begin():
            config = alembic_config(location, connection)
            if down:
                command.downgrade(config, target)
            else:
                command.upgrade(config, target)
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            assert broken == [], f"rows point at missing rows after {target}: {broken[:5]}"
    finally:
        engine.dispose()


@contextmanager
def studio_file(db: Path) -> Iterator[sqlite3.Connection]:
    """The file as the app sees it: foreign keys enforced, so seeding obeys every rule."""
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:
        connection.execute("PRAGMA foreign_keys = ON")
        yield connection


def seed(db: Path, revision: str, script: ScriptDirectory) -> StudioFacts:
    with studio_file(db) as connection:
        connection.execute("BEGIN")
        facts = _newest_at_or_before(SEEDERS, revision, script)(connection)
        connection.execute("COMMIT")
    return facts


def read(db: Path, revision: str, script: ScriptDirectory) -> StudioFacts:
    with studio_file(db) as connection:
        return _newest_at_or_before(READERS, revision, script)(connection)


def version(db: Path) -> list[str]:
    with studio_file(db) as connection:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]


def check_step(location: Path, step: Script, db: Path) -> None:
    """Seed before ``step``, upgrade one step, and (when it can) down and up again."""
    script = ScriptDirectory(str(location))
    before = step.down_revision
    assert not isinstance(before, tuple), "merge revisions: seed each parent (not needed yet)"
    if before is None:
        # The baseline: before it there is nothing to keep. Seed right after it instead.
        migrate(location, db, step.revision)
        expected = seed(db, step.revision, script)
    else:
        migrate(location, db, before)
        expected = seed(db, before, script)
        assert_same(expected, read(db, before, script), f"seeded at {before}")
        migrate(location, db, step.revision)
    assert version(db) == [step.revision]
    assert_same(expected, read(db, step.revision, script), f"after upgrading to {step.revision}")

    source = parse_revision(Path(step.path))
    if source.downgrade_refuses:
        with pytest.raises(NotImplementedError):
            migrate(location, db, before or "base", down=True)
        assert version(db) == [step.revision]
        assert_same(expected, read(db, step.revision, script), "after a refused downgrade")
    elif source.downgrade_discards_data:
        # The revision says so in acknowledged_drops; the lint made its author write why.
        migrate(location, db, before or "base", down=True)
        migrate(location, db, step.revision)
        assert version(db) == [step.revision]
    else:
        migrate(location, db, before or "base", down=True)
        assert_same(expected, read(db, before or "base", script), f"after downgrading to {before}")
        migrate(location, db, step.revision)
        assert_same(expected, read(db, step.revision, script), "after upgrading again")


# --- every real revision ---------------------------------------------------------------------

_SCRIPT = ScriptDirectory(str(MIGRATIONS))
REVISIONS = [step.revision for step in reversed(list(_SCRIPT.walk_revisions()))]


@pytest.mark.parametrize("revision", REVISIONS)
def test_each_revision_keeps_the_studio_s_data(revision: str, db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    step = _SCRIPT.get_revision(revision)
    assert step is not None
    check_step(MIGRATIONS, step, db_path)


def test_every_revision_is_covered_and_the_seed_is_realistic(db_path: Path) -> None:
    assert REVISIONS[0] == BASELINE_REVISION
    assert REVISIONS[-1] == HEAD_REVISION
    db_path.parent.mkdir(parents=True)
    migrate(MIGRATIONS, db_path, HEAD_REVISION)
    facts = seed(db_path, HEAD_REVISION, _SCRIPT)
    assert_same(facts, read(db_path, HEAD_REVISION, _SCRIPT), "right after seeding")
    kinds = {kind for (kind,) in sqlite3.connect(db_path).execute("SELECT kind FROM transactions")}
    assert kinds == {"deposit", "payment", "tip", "refund"}
    assert facts.counts["tattoo_sessions"] >= 10
    assert any(session is None for _, session in facts.transaction_links.values())


# --- the harness itself, on synthetic next revisions -----------------------------------------

_REBUILD = '''
def upgrade() -> None:
    """Rebuild every table, as any ALTER beyond adding a column does on SQLite."""
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column("phone", existing_type=sa.String(length=40), type_=sa.String(length=64))
    for table in ("tattoo_sessions", "transactions"):
        with op.batch_alter_table(table, recreate="always"):
            pass
{extra}

def downgrade() -> None:
    """Undo the widening; every row stays."""
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column("phone", existing_type=sa.String(length=64), type_=sa.String(length=40))
'''


def synthetic_next_revision(tmp_path: Path, extra: str = "") -> tuple[Path, Script]:
    """A copy of the migrations with one more revision after head."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
    body = _REBUILD.format(extra=extra)
    (location / "versions" / "2099_01_01_0000-feedfacecafe_rebuild.py").write_text(
        '"""rebuild every table"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f'revision = "feedfacecafe"\ndown_revision = "{HEAD_REVISION}"\n'
        "branch_labels = None\ndepends_on = None\n" + body
    )
    step = ScriptDirectory(str(location)).get_revision("feedfacecafe")
    assert step is not None
    return location, step


def test_a_table_rebuild_after_head_keeps_every_row_both_ways(
    tmp_path: Path, db_path: Path
) -> None:
    db_path.parent.mkdir(parents=True)
    location, step = synthetic_next_revision(tmp_path)
    check_step(location, step, db_path)


@pytest.mark.parametrize(
    ("mistake", "reported"),
    [
        ("    op.execute(\"DELETE FROM transactions WHERE kind = 'refund'\")", "transactions: "),
        (
            '    op.execute("UPDATE transactions SET client_id = 1 WHERE session_id IS NULL")',
            "paid",
        ),
        (
            '    op.execute("UPDATE tattoo_sessions SET client_id = 1 WHERE id = 3")\n'
            '    op.execute("UPDATE transactions SET client_id = 1 WHERE session_id = 3")',
            "session 3",
        ),
    ],
    ids=["loses-refunds", "moves-walk-in-payments", "moves-a-session"],
)
def test_the_harness_catches_a_revision_that_loses_or_moves_money(
    tmp_path: Path, db_path: Path, mistake: str, reported: str
) -> None:
    db_path.parent.mkdir(parents=True)
    location, step = synthetic_next_revision(tmp_path, extra=mistake)
    # Caught at the step itself, not only later when the downgrade cannot restore it.
    with pytest.raises(AssertionError, match=rf"after upgrading to feedfacecafe(?s:.)*{reported}"):
        check_step(location, step, db_path)
