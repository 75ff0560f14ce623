"""Every revision keeps a studio's data: seed at the revision before it, step, compare.

Nothing here is written for one schema. The tables are reflected from the real file at each
revision (SQLAlchemy's inspector), and rows are made for whatever is there, parents before
children: the columns of a small studio's story (clients, sessions in every status, payments
of every kind) get realistic values while they exist, and every other column gets a value
that fits its type, its nullability, its CHECK's list of values and its foreign keys. Plain
SQL with foreign keys enforced, never the models, which describe only the newest schema.

What survives a step is compared with what was seeded: rows per table, every value of every
column present before and after, each client's payment total while those columns exist,
every link a foreign key makes. A column that is gone is found again under a new name when a
new column holds exactly its values (a rename needs no registration); otherwise it must be
acknowledged in the revision's ``acknowledged_drops``. Where the downgrade can keep the data,
down and up again keep it too.

New revisions are picked up automatically and need nothing here. The one declaration there
is: a revision whose data step rewrites existing values on purpose names those columns in
``REWRITTEN`` below, one line.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
)
from sqlalchemy.pool import NullPool

from data.db.head import recorded_history
from data.db.policy import create_migration_engine
from data.db.revision_lint import parse_revision
from data.db.revisions import chain
from tests.conftest import PROJECT_ROOT, sqlite_url
from tests.file_kind import INTEGRITY_ERRORS, connect, is_encrypted, studio_key

MIGRATIONS = PROJECT_ROOT / "migrations"
VERSION_TABLE = "alembic_version"
ROWID = "__rowid__"

# revision -> {"table.column", ...} whose existing values its data step rewrites on purpose
# (e.g. "normalise phone numbers"). Filling a *new* column needs no entry.
REWRITTEN: dict[str, frozenset[str]] = {}

Key = tuple[Any, ...]
Rows = dict[Key, dict[str, Any]]


# --- the live schema -------------------------------------------------------------------------


def live_tables(db: Path) -> list[Table]:
    """The file's tables as they are now, parents before children (the version table aside)."""
    engine = create_engine(sqlite_url(db), poolclass=NullPool)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
    finally:
        engine.dispose()
    return [table for table in metadata.sorted_tables if table.name != VERSION_TABLE]


def key_columns(table: Table) -> list[str]:
    """What identifies a row across a step: the primary key, else SQLite's rowid."""
    return [column.name for column in table.primary_key.columns] or [ROWID]


def allowed_values(table: Table) -> dict[str, list[Any]]:
    """``column IN ('a', 'b')`` CHECKs: the values a column may take."""
    allowed: dict[str, list[Any]] = {}
    for constraint in table.constraints:
        if not isinstance(constraint, CheckConstraint):
            continue
        text = str(constraint.sqltext).strip()
        name, _, rest = text.partition(" IN ")
        if rest.startswith("(") and rest.endswith(")") and name.strip() in table.columns:
            allowed[name.strip()] = [
                item.strip().strip("'") for item in rest[1:-1].split(",") if item.strip()
            ]
    return allowed


# --- a small studio's story: realistic values for the columns it knows ------------------------

_FIRST = ["Ava", "Noah", "Mia", "Liam", "Zoe", "Omar", "Ines", "Kai", "Lena", "Ravi", "Yuki", "Sam"]
_LAST = ["Okafor", "Lindqvist", "Moreau", "Silva", "Nakamura", "Byrne", "Haddad", "Novak"]
_STATUSES = ["scheduled", "in_progress", "completed", "completed", "cancelled", "no_show"]
_METHODS = ["cash", "card", "card", "bank_transfer", "other"]


def _stamp(moment: dt.datetime) -> str:
    """How SQLAlchemy's DateTime stores a UTC moment in SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def studio_story() -> dict[str, list[dict[str, Any]]]:
    """A small studio's year, by table, in the columns the first schema named.

    Used for whichever of these tables and columns exist at a revision; the rest of a row is
    filled from the live schema. Phones are unique and notes repeat on purpose: the schema
    change catalogue relies on both.
    """
    rng = random.Random(20261127)
    start = dt.datetime(2026, 1, 5, 10, 0)
    clients: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    transactions: list[dict[str, Any]] = []

    def pay(client: int, session: int | None, kind: str, cents: int, at: dt.datetime) -> None:
        transactions.append({
            "id": len(transactions) + 1, "client_id": client, "session_id": session,
            "kind": kind, "method": _METHODS[len(transactions) % len(_METHODS)],
            "amount_cents": cents, "occurred_at": _stamp(at),
            "note": "aftercare balm" if session is None else None, "created_at": _stamp(at),
        })  # fmt: skip

    for client in range(1, len(_FIRST) + 1):
        first, last = _FIRST[client - 1], _LAST[client % len(_LAST)]
        joined = start + dt.timedelta(days=client * 9)
        clients.append({
            "id": client, "first_name": first, "last_name": last,
            "email": None if client % 5 == 0 else f"{first}.{last}@example.org".lower(),
            "phone": f"+44 7700 900{client:03d}",
            "date_of_birth": f"19{70 + client}-0{client % 9 + 1}-1{client % 9}",
            "notes": "allergic to latex" if client % 4 == 0 else None,
            "created_at": _stamp(joined), "updated_at": _stamp(joined),
            "archived_at": _stamp(joined + dt.timedelta(days=200)) if client == 7 else None,
        })  # fmt: skip
        for visit in range(client % 4):
            session = len(sessions) + 1
            status = _STATUSES[session % len(_STATUSES)]
            starts = joined + dt.timedelta(days=14 * (visit + 1), hours=rng.randrange(8))
            price = rng.randrange(8, 60) * 1000
            deposit = rng.choice([0, 5000, 10000]) if price > 10000 else 0
            sessions.append({
                "id": session, "client_id": client, "artist": rng.choice(["Jo", "Marta", "Dev"]),
                "starts_at": _stamp(starts),
                "ends_at": _stamp(starts + dt.timedelta(hours=3)) if status == "completed" else None,
                "status": status, "placement": rng.choice(["forearm", "back", "ankle", None]),
                "description": "fine-line botanical", "price_cents": price,
                "deposit_cents": deposit, "created_at": _stamp(starts), "updated_at": _stamp(starts),
            })  # fmt: skip
            if deposit:
                pay(client, session, "deposit", deposit, starts - dt.timedelta(days=7))
            if status == "completed":
                pay(client, session, "payment", price - deposit, starts)
                pay(client, session, "tip", 1500 + visit * 500, starts)
            if status == "cancelled" and deposit:
                pay(client, session, "refund", deposit, starts)
        if client % 3 == 0:
            pay(client, None, "payment", 1200, joined + dt.timedelta(days=30))
    return {"clients": clients, "tattoo_sessions": sessions, "transactions": transactions}


# --- rows for whatever the schema is ---------------------------------------------------------

_EPOCH = dt.datetime(2026, 2, 1, 9, 0)


def generic_value(table: Table, column: Column[Any], row: int, allowed: list[Any] | None) -> Any:
    """A value that fits the column: its CHECK's list, else its type. Unique per row."""
    if allowed:
        return allowed[row % len(allowed)]
    position = list(table.columns).index(column)
    kind = column.type
    if isinstance(kind, Boolean):
        return row % 2
    if isinstance(kind, Integer):
        return (row + 1) * 100 + position
    if isinstance(kind, Numeric | Float):
        return row + 0.5
    if isinstance(kind, DateTime):
        # Later columns hold later moments: "ends_at > starts_at" style CHECKs hold.
        return _stamp(_EPOCH + dt.timedelta(days=row, minutes=position))
    if isinstance(kind, Date):
        return (_EPOCH.date() + dt.timedelta(days=row)).isoformat()
    text = f"{column.name.replace('_', ' ')} {row + 1}"
    length = getattr(kind, "length", None) if isinstance(kind, String) else None
    if length is not None and len(text) > length:
        text = str(row + 1)[:length]
    return text


def _foreign_keys(table: Table) -> list[ForeignKeyConstraint]:
    """Wider keys first: a composite key settles the columns a narrower one shares."""
    keys = [c for c in table.constraints if isinstance(c, ForeignKeyConstraint)]
    return sorted(keys, key=lambda fk: -len(fk.column_keys))


def _referred(fk: ForeignKeyConstraint) -> tuple[str, list[str]]:
    return fk.referred_table.name, [element.column.name for element in fk.elements]


def make_rows(
    table: Table, inserted: dict[str, list[dict[str, Any]]], story: list[dict[str, Any]] | None
) -> Iterator[dict[str, Any]]:
    """Rows for ``table``: the story's where it has them, filled and linked from the schema."""
    keys = _foreign_keys(table)
    parents = [
        inserted.get(_referred(fk)[0], [])
        for fk in keys
        if _referred(fk)[0] != table.name and not all(table.c[c].nullable for c in fk.column_keys)
    ]
    if story is not None:
        count = len(story)
    elif parents:
        count = max(8, min(2 * min(len(p) for p in parents), 40))
    else:
        count = 12
    allowed = allowed_values(table)
    key = [column.name for column in table.primary_key.columns]
    own = inserted.setdefault(table.name, [])
    for row in range(count):
        told = story[row] if story is not None else {}
        values: dict[str, Any] = {}
        for column in table.columns:
            if column.name in told:
                values[column.name] = told[column.name]
            elif key == [column.name] and isinstance(column.type, Integer):
                values[column.name] = row + 1
            elif column.foreign_keys:
                continue  # below, per foreign key
            elif column.server_default is not None:
                continue  # what the database fills in is what the app would get
            elif column.nullable and row % 4 == 3:
                values[column.name] = None
            else:
                values[column.name] = generic_value(table, column, row, allowed.get(column.name))
        settled: set[str] = set()
        for fk in keys:
            local = list(fk.column_keys)
            parent_table, remote = _referred(fk)
            choices = own if parent_table == table.name else inserted.get(parent_table, [])
            chosen = [values.get(c) for c in local]
            if all(c in told for c in local) and (
                None in chosen
                or any([p.get(r) for r in remote] == chosen for p in choices)  # a story link
            ):
                settled.update(local)
                continue
            if set(local) <= settled:
                continue
            optional = all(table.c[c].nullable for c in local)
            if not choices or (optional and row % 3 == 2):
                if not optional:
                    raise AssertionError(
                        f"cannot seed {table.name}: no {parent_table} row for {local} to point at"
                    )
                values.update(dict.fromkeys(local, None))
                continue
            parent = choices[row % len(choices)]
            values.update({c: parent[r] for c, r in zip(local, remote, strict=True)})
            settled.update(local)
        yield values


def insert(connection: sqlite3.Connection, table: Table, values: dict[str, Any]) -> None:
    names = ", ".join(f'"{name}"' for name in values)
    marks = ", ".join("?" for _ in values)
    connection.execute(
        f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', list(values.values())
    )


def seed(db: Path) -> Facts:
    """Rows in every table of the file as it is now, parents first, foreign keys enforced."""
    story = studio_story()
    inserted: dict[str, list[dict[str, Any]]] = {}
    with studio_file(db) as connection:
        connection.execute("BEGIN")
        for table in live_tables(db):
            for values in make_rows(table, inserted, story.get(table.name)):
                try:
                    insert(connection, table, values)
                except INTEGRITY_ERRORS as exc:
                    raise AssertionError(
                        f"cannot seed {table.name} with {values}: {exc}. Teach studio_story() "
                        "or generic_value() in tests/test_data_preservation.py this column"
                    ) from exc
                stored = connection.execute(
                    f'SELECT * FROM "{table.name}" WHERE rowid = last_insert_rowid()'
                )
                names = [d[0] for d in stored.description]
                inserted[table.name].append(dict(zip(names, stored.fetchone(), strict=True)))
        connection.execute("COMMIT")
    return read(db)


# --- what a studio must find again -----------------------------------------------------------


@dataclass
class Facts:
    """Every row of every table, by key, and where the money story's columns exist, totals."""

    tables: dict[str, Rows] = field(default_factory=dict)
    links: dict[str, list[tuple[list[str], str]]] = field(default_factory=dict)

    def paid_cents(self) -> dict[Any, int] | None:
        """client id -> deposits + payments + tips - refunds, in cents (None without them)."""
        clients, moves = self.tables.get("clients"), self.tables.get("transactions")
        if clients is None or moves is None:
            return None
        needed = {"client_id", "kind", "amount_cents"}
        if moves and not needed <= next(iter(moves.values())).keys():
            return None
        totals = {row["id"]: 0 for row in clients.values() if "id" in row}
        for row in moves.values():
            sign = -1 if row["kind"] == "refund" else 1
            totals[row["client_id"]] = totals.get(row["client_id"], 0) + sign * row["amount_cents"]
        return totals


def read(db: Path) -> Facts:
    facts = Facts()
    with studio_file(db) as connection:
        for table in live_tables(db):
            key = key_columns(table)
            rowid = f"rowid AS {ROWID}, " if key == [ROWID] else ""
            cursor = connection.execute(f'SELECT {rowid}* FROM "{table.name}"')
            names = [d[0] for d in cursor.description]
            rows: Rows = {}
            for found in cursor:
                values = dict(zip(names, found, strict=True))
                rows[tuple(values[c] for c in key)] = {
                    name: value for name, value in values.items() if name in table.columns
                }
            facts.tables[table.name] = rows
            facts.links[table.name] = [
                (list(fk.column_keys), _referred(fk)[0]) for fk in _foreign_keys(table)
            ]
    return facts


def _show(key: Key) -> str:
    return str(key[0]) if len(key) == 1 else str(key)


def _renamed(before: Rows, after: Rows, gone: str, new: list[str]) -> str | None:
    """The new column holding exactly the values ``gone`` held, row by row, if one does."""
    for candidate in new:
        if all(after.get(key, {}).get(candidate) == row.get(gone) for key, row in before.items()):
            return candidate
    return None


def differences(expected: Facts, found: Facts, ignore: frozenset[str] = frozenset()) -> list[str]:
    """What a studio lost or had moved; ``ignore`` names tables or table.columns let go."""
    lines: list[str] = []
    for table, rows in expected.tables.items():
        if table in ignore:
            continue
        now = found.tables.get(table)
        if now is None:
            lines.append(
                f"{table}: gone, with its {len(rows)} rows (a deliberate drop is named in the "
                "revision's acknowledged_drops)"
            )
            continue
        if len(now) != len(rows):
            lines.append(f"{table}: {len(rows)} rows expected, {len(now)} found")
        before_columns = {c for row in rows.values() for c in row}
        after_columns = {c for row in now.values() for c in row}
        new = sorted(after_columns - before_columns)
        column_map: dict[str, str] = {}
        for column in sorted(before_columns):
            if f"{table}.{column}" in ignore:
                continue
            if column in after_columns:
                column_map[column] = column
                continue
            renamed = _renamed(rows, now, column, new)
            if renamed is not None:
                column_map[column] = renamed
                new.remove(renamed)
                continue
            lines.append(
                f"{table}.{column}: gone with its values, and no new column holds them (a "
                "rename autogenerated as a drop and an add? a deliberate drop is named in the "
                "revision's acknowledged_drops)"
            )
        links = {c: parent for columns, parent in expected.links.get(table, []) for c in columns}
        shown = 0
        for key, row in rows.items():
            if key not in now:
                lines.append(f"{table} row {_show(key)}: missing")
                shown += 1
            else:
                for old, current in column_map.items():
                    if row[old] != now[key][current]:
                        link = f" (its link to {links[old]})" if old in links else ""
                        lines.append(
                            f"{table} row {_show(key)}: {current}{link} {row[old]!r} expected, "
                            f"{now[key][current]!r} found"
                        )
                        shown += 1
            if shown >= 20:
                lines.append(f"{table}: ... and more")
                break
    paid, paid_now = expected.paid_cents(), found.paid_cents()
    if paid is not None and paid_now is not None:
        lines += [
            f"client {client}: paid {paid.get(client)} cents expected, {paid_now.get(client)} found"
            for client in sorted(paid.keys() | paid_now.keys())
            if paid.get(client) != paid_now.get(client)
        ]
    return lines


def assert_kept(
    expected: Facts, found: Facts, when: str, ignore: frozenset[str] = frozenset()
) -> None:
    problems = differences(expected, found, ignore)
    assert not problems, f"{when}, the studio's data changed:\n  " + "\n  ".join(problems)


# --- migrating a file under the runner's policy, one step at a time --------------------------


def alembic_config(location: Path, connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    return config


def migrate(location: Path, db: Path, target: str, *, down: bool = False) -> None:
    """One transaction with foreign keys off, checked before commit, as the runner does."""
    url, key = sqlite_url(db), studio_key()
    if key and not db.exists():
        # A file this bare engine creates (the runner is not there to key it) is encrypted
        # only with the key in its URL.
        url = url.set(password=f"x'{key}'")
    engine = create_migration_engine(url)
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
    with closing(connect(db, isolation_level=None)) as connection:  # keyed when encrypted
        connection.execute("PRAGMA foreign_keys = ON")
        yield connection


def version(db: Path) -> list[str]:
    with studio_file(db) as connection:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]


def check_step(location: Path, step: Script, db: Path) -> None:
    """Seed before ``step``, upgrade one step, and (when it can) down and up again."""
    before = step.down_revision
    assert not isinstance(before, tuple), "merge revisions: seed each parent (not needed yet)"
    source = parse_revision(Path(step.path))
    let_go = source.acknowledged | REWRITTEN.get(step.revision, frozenset())
    if before is None:
        # The baseline: before it there is nothing to keep. Seed right after it instead.
        migrate(location, db, step.revision)
        expected = seed(db)
    else:
        migrate(location, db, before)
        expected = seed(db)
        migrate(location, db, step.revision)
    assert version(db) == [step.revision]
    assert_kept(expected, read(db), f"after upgrading to {step.revision}", let_go)

    if source.downgrade_refuses:
        upgraded = read(db)
        with pytest.raises(NotImplementedError):
            migrate(location, db, before or "base", down=True)
        assert version(db) == [step.revision]
        assert_kept(upgraded, read(db), "after a refused downgrade")
    elif source.downgrade_discards_data:
        # The revision says so in acknowledged_drops; the lint made its author write why.
        migrate(location, db, before or "base", down=True)
        migrate(location, db, step.revision)
        assert version(db) == [step.revision]
    else:
        migrate(location, db, before or "base", down=True)
        assert_kept(expected, read(db), f"after downgrading to {before}", let_go)
        migrate(location, db, step.revision)
        assert_kept(expected, read(db), "after upgrading again", let_go)


# --- every real revision ---------------------------------------------------------------------

_SCRIPT = ScriptDirectory(str(MIGRATIONS))
REVISIONS = [step.revision for step in reversed(list(_SCRIPT.walk_revisions()))]


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.usefixtures("file_kind")  # on a plain studio file and on an encrypted one
def test_each_revision_keeps_the_studio_s_data(revision: str, db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    step = _SCRIPT.get_revision(revision)
    assert step is not None
    check_step(MIGRATIONS, step, db_path)
    assert is_encrypted(db_path) == bool(studio_key())


def test_every_revision_is_covered_and_the_seed_is_realistic(db_path: Path) -> None:
    history = recorded_history()
    assert list(history.revisions) == REVISIONS
    db_path.parent.mkdir(parents=True)
    migrate(MIGRATIONS, db_path, history.head)
    facts = seed(db_path)
    assert_kept(facts, read(db_path), "right after seeding")
    tables = {table.name: table for table in live_tables(db_path)}
    for name, table in tables.items():
        rows = list(facts.tables[name].values())
        assert rows, f"{name}: no rows seeded"
        for column in table.columns:
            values = [row[column.name] for row in rows]
            assert any(v is not None for v in values), f"{name}.{column.name}: only NULLs"
        for column, allowed in allowed_values(table).items():
            used = {row[column] for row in rows}
            assert len(used) >= min(2, len(allowed)), f"{name}.{column}: only {used}"
        for fk in _foreign_keys(table):
            local = list(fk.column_keys)
            if all(table.c[c].nullable for c in local):
                linked = [all(row[c] is not None for c in local) for row in rows]
                assert any(linked) and not all(linked), f"{name}{local}: links all or none"
    paid = facts.paid_cents()
    if paid is not None:
        assert any(paid.values()), "nobody paid anything"


# --- the harness itself, on synthetic revisions after the baseline, which never changes ------

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


def synthetic_revision(tmp_path: Path, body: str) -> tuple[Path, Script]:
    """A copy of the migrations with only the baseline and one revision after it."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
    baseline = recorded_history().baseline
    for revision, path in chain(location / "versions"):
        if revision != baseline:
            path.unlink()
    (location / "versions" / "2099_01_01_0000-feedfacecafe_synthetic.py").write_text(
        '"""a synthetic revision"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f'revision = "feedfacecafe"\ndown_revision = "{baseline}"\n'
        "branch_labels = None\ndepends_on = None\n" + body
    )
    step = ScriptDirectory(str(location)).get_revision("feedfacecafe")
    assert step is not None
    return location, step


def test_a_table_rebuild_keeps_every_row_both_ways(tmp_path: Path, db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    location, step = synthetic_revision(tmp_path, _REBUILD.format(extra=""))
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
            "tattoo_sessions row 3: client_id (its link to clients)",
        ),
        ('    op.execute("UPDATE clients SET notes = NULL")', "clients row 4: notes"),
    ],
    ids=["loses-refunds", "moves-walk-in-payments", "moves-a-session", "blanks-notes"],
)
def test_the_harness_catches_a_revision_that_loses_or_moves_data(
    tmp_path: Path, db_path: Path, mistake: str, reported: str
) -> None:
    db_path.parent.mkdir(parents=True)
    location, step = synthetic_revision(tmp_path, _REBUILD.format(extra=mistake))
    # Caught at the step itself, not only later when the downgrade cannot restore it.
    pattern = rf"after upgrading to feedfacecafe(?s:.)*{re.escape(reported)}"
    with pytest.raises(AssertionError, match=pattern):
        check_step(location, step, db_path)


_RENAME = '''
def upgrade() -> None:
    """Rename clients.notes."""
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column("notes", new_column_name="studio_notes", existing_type=sa.Text())


def downgrade() -> None:
    """Undo the rename."""
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column("studio_notes", new_column_name="notes", existing_type=sa.Text())
'''

_DROP_AND_ADD = '''
def upgrade() -> None:
    """A rename as autogenerate writes it: the values are lost."""
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(sa.Column("studio_notes", sa.Text(), nullable=True))
        batch_op.drop_column("notes")


def downgrade() -> None:
    """Undo it."""
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=True))
        batch_op.drop_column("studio_notes")
'''


def test_a_rename_is_followed_without_registering_anything(tmp_path: Path, db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    location, step = synthetic_revision(tmp_path, _RENAME)
    check_step(location, step, db_path)


def test_a_drop_and_add_that_loses_a_column_s_values_is_caught(
    tmp_path: Path, db_path: Path
) -> None:
    db_path.parent.mkdir(parents=True)
    location, step = synthetic_revision(tmp_path, _DROP_AND_ADD)
    with pytest.raises(AssertionError, match=r"clients\.notes: gone with its values"):
        check_step(location, step, db_path)
