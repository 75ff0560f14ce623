"""Storage guards: the database refuses what the models refuse, through raw SQL too.

SQLite stores whatever it is given: ``10.5`` in an INTEGER column, ten thousand characters
in a ``VARCHAR(100)``, a NUL byte, ``'tomorrow'`` in a DATETIME (after which every query of
that table fails in the app). PostgreSQL refuses most of that by its types, but accepts
``'infinity'`` and years past 9999 in a timestamp, which Python cannot read back.

The guards are derived from the column types the database declares, never written by hand:

- on SQLite, one ``BEFORE INSERT`` and one ``BEFORE UPDATE`` trigger per table, with one
  ``RAISE(ABORT, ...)`` per rule (whole numbers in the range PostgreSQL's column holds, text
  within its length and without NUL, datetimes and dates in the one form the app writes);
- on PostgreSQL, one CHECK per date or timestamp column, limiting it to years 1 to 9999.

They arrive with the revision that introduced them (``SINCE``) and are kept in step after
every later revision, by the same ``sync`` in every road to a schema: Alembic's run
(``env.py``), the recorded exports and the server's replayed chain, and ``create_all``.
So a revision author writes none of this: a new column, a new table, a renamed column or a
rebuilt table gets its guards when the revision is applied, and rows that already break a
new guard stop the upgrade with the list (nothing is dropped or changed). Triggers, not
CHECK constraints, on SQLite: adding one never rebuilds a table, so an upgrade still costs
what it changes.

The message a guard raises, and the sentence it becomes for people, live in
``data.models.rules`` (``guard_message``, ``guard_sentence``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event

from data.db.errors import MigrationFailedError
from data.models.rules import GUARD_CHECK_SUFFIX, guard_message, guard_sentence

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

# The revision that introduced the guards: every revision from it on keeps them in step.
SINCE = "1e5c2a7d9f30"

VERSION_TABLE = "alembic_version"
TRIGGER_PREFIX = "guard_"
# How many breaking rows a refusal lists (the count is always whole).
LISTED_ROWS = 20

_INT_RANGES = {
    # PostgreSQL's column of the same declared type holds exactly this range.
    "INTEGER": (-(2**31), 2**31 - 1),
    "INT": (-(2**31), 2**31 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1),
}
_TEXT_TYPES = {"VARCHAR", "CHAR", "NVARCHAR", "NCHAR", "TEXT", "CLOB", "CHARACTER VARYING"}
_REAL_TYPES = {"FLOAT", "REAL", "DOUBLE", "DOUBLE PRECISION", "NUMERIC", "DECIMAL"}
_DIGIT = "[0-9]"
_DATE_GLOB = f"{_DIGIT * 4}-{_DIGIT * 2}-{_DIGIT * 2}"
# SQLAlchemy's SQLite DATETIME storage format: always six fractional digits.
_DATETIME_GLOB = f"{_DATE_GLOB} {_DIGIT * 2}:{_DIGIT * 2}:{_DIGIT * 2}.{_DIGIT * 6}"
_DECLARED = re.compile(r"^\s*([A-Z ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*\d+\s*)?\))?\s*$")


@dataclass(frozen=True)
class Guard:
    """One rule on one column: ``breaks`` is the SQL that is true for a value it refuses."""

    table: str
    column: str
    kind: str
    param: str
    breaks: str  # with {v} where the value goes

    def condition(self, value: str) -> str:
        return self.breaks.format(v=value)

    @property
    def message(self) -> str:
        return guard_message(self.table, self.column, self.kind, self.param)

    def statement(self) -> str:
        """The trigger statement: refuse the row being written when it breaks this rule."""
        column = quote_identifier(self.column)
        return f"SELECT RAISE(ABORT, '{self.message}') WHERE {self.condition('NEW.' + column)};"


def column_guards(table: str, column: str, declared: str) -> list[Guard]:
    """The guards SQLite needs for a column of ``declared`` type (as the table declares it)."""
    match = _DECLARED.match(declared.upper())
    if match is None:
        return []
    base, length = match.group(1).strip(), match.group(2)

    def guard(kind: str, breaks: str, param: str = "") -> Guard:
        return Guard(table, column, kind, param, breaks)

    if base in _INT_RANGES or base == "BIGINT":
        found = [guard("integer", "typeof({v}) NOT IN ('integer', 'null')")]
        if base in _INT_RANGES:
            low, high = _INT_RANGES[base]
            found.append(
                guard(
                    "range",
                    f"typeof({{v}}) = 'integer' AND {{v}} NOT BETWEEN {low} AND {high}",
                    f"{low}..{high}",
                )
            )
        return found
    if base in _TEXT_TYPES:
        found = [guard("text", "typeof({v}) NOT IN ('text', 'null')")]
        if length is not None:
            found.append(guard("length", f"length({{v}}) > {int(length)}", length))
        found.append(guard("nul", "instr({v}, char(0)) > 0"))
        return found
    if base in ("DATETIME", "TIMESTAMP"):
        return [
            guard(
                "datetime",
                "{v} IS NOT NULL AND (typeof({v}) != 'text' "
                f"OR {{v}} NOT GLOB '{_DATETIME_GLOB}' OR {{v}} < '0001' "
                "OR datetime(substr({v}, 1, 19), '+0 days') IS NOT substr({v}, 1, 19))",
            )
        ]
    if base == "DATE":
        return [
            guard(
                "date",
                "{v} IS NOT NULL AND (typeof({v}) != 'text' "
                f"OR {{v}} NOT GLOB '{_DATE_GLOB}' OR {{v}} < '0001' "
                "OR date({v}, '+0 days') IS NOT {v})",
            )
        ]
    if base == "BOOLEAN":
        return [
            guard("boolean", "{v} IS NOT NULL AND (typeof({v}) != 'integer' OR {v} NOT IN (0, 1))")
        ]
    if base in _REAL_TYPES:
        return [guard("number", "typeof({v}) NOT IN ('integer', 'real', 'null')")]
    return []


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (schema.py reads what this writes)."""
    return '"' + name.replace('"', '""') + '"'


# --- which revisions have guards -------------------------------------------------------------


def active(script: ScriptDirectory, revision: str | None) -> bool:
    """Whether the schema at ``revision`` has the guards (``SINCE`` is in its history)."""
    if revision is None:
        return False
    return any(step.revision == SINCE for step in script.iterate_revisions(revision, "base"))


def active_in_chain(revisions: Iterable[str]) -> bool:
    """Whether a chain applied in order (oldest first) has reached ``SINCE``."""
    return SINCE in revisions


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_tables(connection: Connection) -> list[str]:
    return [
        str(row[0])
        for row in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            f"AND name != '{VERSION_TABLE}' AND name NOT LIKE '\\_alembic\\_tmp\\_%' ESCAPE '\\' "
            "ORDER BY name"
        )
    ]


def _sqlite_guards(connection: Connection, table: str) -> list[Guard]:
    found: list[Guard] = []
    for row in connection.exec_driver_sql(f"PRAGMA table_info({quote_identifier(table)})"):
        found.extend(column_guards(table, str(row[1]), str(row[2] or "")))
    return in_order(found)


def in_order(found: list[Guard]) -> list[Guard]:
    """By column name: the same trigger whatever order a table's columns were added in (a
    downgrade adds a dropped column back at the end)."""
    return sorted(found, key=lambda guard: guard.column)


def trigger_sql(table: str, event: str, guards: list[Guard]) -> tuple[str, str]:
    """(name, CREATE TRIGGER statement) of ``table``'s guard trigger for ``event``."""
    name = f"{TRIGGER_PREFIX}{table}_{event.lower()}"
    body = "\n".join(f"  {guard.statement()}" for guard in guards)
    sql = (
        f"CREATE TRIGGER {quote_identifier(name)} BEFORE {event} ON {quote_identifier(table)}\n"
        f"BEGIN\n{body}\nEND"
    )
    return name, sql


def sqlite_triggers(connection: Connection) -> dict[str, tuple[str, str]]:
    """The guard triggers the database has: name -> (table, SQL)."""
    return {
        str(name): (str(table), str(sql))
        for name, table, sql in connection.exec_driver_sql(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' "
            f"AND name LIKE '{TRIGGER_PREFIX}%'"
        )
    }


# The table a data-changing statement writes: INSERT/REPLACE INTO t, UPDATE t, DELETE FROM t.
_DML = re.compile(
    r"^\s*(?:(?:INSERT|REPLACE)(?:\s+OR\s+\w+)?\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
    r"\s+[\"`\[]?(\w+)",
    re.IGNORECASE,
)
# A rebuild copies a table's rows into one of these, then renames it: Alembic's batch mode,
# and data.migration.rebuild.rebuild_table (whose prefix this must follow).
_COPY_PREFIXES = ("_alembic_tmp_", "_rebuild_tmp_")


class Watch:
    """What one revision did that the guards must know: the guard triggers there were before
    it, and which tables it wrote rows into. A rebuild's copy into ``_alembic_tmp_<t>`` (or
    ``rebuild_table``'s ``_rebuild_tmp_<t>``) counts as a copy of ``t``, whose rows were
    guarded already; any other write counts as a write, and a statement that cannot be read
    as one marks every table written."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        sqlite = connection.dialect.name == "sqlite"
        self.triggers = sqlite_triggers(connection) if sqlite else {}
        self.written: set[str] = set()
        self.copied: set[str] = set()
        self.unknown = False
        event.listen(connection, "after_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        statement = str(args[2])
        verb = statement.lstrip()[:7].upper()
        if not verb.startswith(("INSERT", "REPLACE", "UPDATE", "DELETE", "WITH")):
            return
        match = _DML.match(statement)
        if match is None:
            self.unknown = True
            return
        table = match.group(1)
        prefix = next((p for p in _COPY_PREFIXES if table.startswith(p)), None)
        if prefix is not None:
            self.copied.add(table.removeprefix(prefix))
        elif table != VERSION_TABLE:
            self.written.add(table)

    def wrote(self, table: str) -> bool:
        return self.unknown or table in self.written

    def close(self) -> None:
        if event.contains(self.connection, "after_cursor_execute", self._seen):
            event.remove(self.connection, "after_cursor_execute", self._seen)


def breaking_rows(
    connection: Connection, table: str, guards: list[Guard], *, whole: bool
) -> tuple[int, list[str]]:
    """How many rows of ``table`` break one of ``guards``, and a sample (row, sentence).

    ``whole`` scans every row; otherwise one row is read first (every row holds the same
    value in a column just added by a revision that changed no rows).
    """
    quoted = quote_identifier(table)
    broken: list[str] = []
    count = 0
    if not guards:
        return count, broken
    # One pass answers "none" (the usual case); only a table with breaking rows is read again,
    # guard by guard, for the list.
    conditions = " OR ".join(
        f"({guard.condition(quote_identifier(guard.column))})" for guard in guards
    )
    source = quoted if whole else f"(SELECT * FROM {quoted} LIMIT 1)"
    if (
        connection.exec_driver_sql(f"SELECT 1 FROM {source} WHERE {conditions} LIMIT 1").first()
        is None
    ):
        return count, broken
    for guard in guards:
        condition = guard.condition(quote_identifier(guard.column))
        found = _count_all(connection, quoted, condition)
        if not found:
            continue
        count += found
        sample = connection.exec_driver_sql(
            f"SELECT rowid FROM {quoted} WHERE {condition} ORDER BY rowid LIMIT {LISTED_ROWS}"
        ).fetchall()
        sentence = guard_sentence(guard.table, guard.column, guard.kind, guard.param)
        broken.extend(f"{table} row {row[0]}: {sentence}" for row in sample)
    return count, broken


def _count_all(connection: Connection, quoted: str, condition: str) -> int:
    return int(
        connection.exec_driver_sql(f"SELECT count(*) FROM {quoted} WHERE {condition}").scalar_one()
    )


def raise_breaking(connection: Connection, count: int, broken: list[str]) -> None:
    """Stop the upgrade, listing the rows that break a guard about to be made."""
    listing = "\n".join(f"  - {line}" for line in broken[:LISTED_ROWS])
    more = f"\n  (and {count - LISTED_ROWS} more)" if count > LISTED_ROWS else ""
    url = connection.engine.url
    sqlite = url.get_backend_name() == "sqlite"
    database = str(url.database) if sqlite else url.render_as_string(hide_password=True)
    raise MigrationFailedError(
        database,
        f"{count} saved row(s) break a rule the database is to enforce from this revision "
        f"on, so the upgrade stopped before changing anything:\n{listing}{more}",
        "Nothing was dropped or changed: the upgrade was rolled back and the app keeps using "
        "the database as it was. Correct those rows (or contact support with this message), "
        "then start the app again.",
    )


def sync_sqlite(connection: Connection, watch: Watch | None = None) -> None:
    """Bring the guard triggers in step with the tables' declared types.

    ``watch`` saw the revision just applied; without one, every row of every table is
    checked against its guards (a new database, a replay, the revision that introduced them).
    What is checked, and how much of each table is read:

    - a table the revision wrote rows into (a data step): every guard, every row;
    - otherwise only guards that are new (a new column, a changed type, a new table), on
      every row when the table is new to the guards or was rebuilt (its rows copied), and
      on one row when it was not (``ALTER TABLE ADD COLUMN`` gives every row the same value).
    """
    existing = sqlite_triggers(connection)
    earlier = watch.triggers if watch is not None else {}
    wanted: set[str] = set()
    count, broken = 0, list[str]()
    for table in _sqlite_tables(connection):
        guards = _sqlite_guards(connection, table)
        if not guards:
            continue
        # Checked already: what the table had before the revision, and what this run made
        # since (the revision that introduced the guards made them, after its own check).
        old_bodies = "\n".join(
            sql
            for known in (earlier, existing)
            for (owner, sql) in known.values()
            if owner == table
        )
        if watch is None or watch.wrote(table):
            check, whole = guards, True
        else:
            check = [guard for guard in guards if guard.statement() not in old_bodies]
            whole = not old_bodies or table in watch.copied
        found, sample = breaking_rows(connection, table, check, whole=whole)
        count, broken = count + found, broken + sample
        for when in ("INSERT", "UPDATE"):
            name, sql = trigger_sql(table, when, guards)
            wanted.add(name)
            if existing.get(name) == (table, sql):
                continue
            if name in existing:
                connection.exec_driver_sql(f"DROP TRIGGER {quote_identifier(name)}")
            connection.exec_driver_sql(sql)
    if broken:
        raise_breaking(connection, count, broken)
    for name in existing.keys() - wanted:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {quote_identifier(name)}")


# --- PostgreSQL ------------------------------------------------------------------------------

_PG_DATED = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
  AND format_type(a.atttypid, NULL) IN ('date', 'timestamp with time zone',
                                        'timestamp without time zone')
ORDER BY c.relname, a.attnum
"""

_PG_GUARD_CHECKS = f"""
SELECT t.relname, k.conname
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND k.contype = 'c' AND k.conname ~ '{GUARD_CHECK_SUFFIX}$'
"""

# Python's datetime and date hold years 1 to 9999; the server holds far more, and infinity.
_PG_LOW = {"date": "'0001-01-01'::date", "timestamp": "'0001-01-01 00:00:00+00'::timestamptz"}
_PG_HIGH = {"date": "'9999-12-31'::date", "timestamp": "'10000-01-01 00:00:00+00'::timestamptz"}


def pg_check_name(table: str, column: str) -> str:
    return f"ck_{table}_{column}{GUARD_CHECK_SUFFIX}"


def pg_condition(column: str, type_name: str) -> str:
    """The CHECK that keeps a date or timestamp column within what the app can read."""
    kind = "date" if type_name == "date" else "timestamp"
    quoted = quote_identifier(column)
    upper = "<=" if kind == "date" else "<"
    return f"{quoted} >= {_PG_LOW[kind]} AND {quoted} {upper} {_PG_HIGH[kind]}"


def sync_postgresql(connection: Connection) -> None:
    """Bring the date and timestamp range CHECKs in step with the current schema's columns."""
    existing = {
        (str(table), str(name)) for table, name in connection.exec_driver_sql(_PG_GUARD_CHECKS)
    }
    wanted: set[tuple[str, str]] = set()
    for table, column, type_name in connection.exec_driver_sql(_PG_DATED).fetchall():
        table, column = str(table), str(column)
        if table == VERSION_TABLE:
            continue
        name = pg_check_name(table, column)
        wanted.add((table, name))
        if (table, name) in existing:
            continue
        condition = pg_condition(column, str(type_name))
        quoted = quote_identifier(table)
        breaking = f"SELECT ctid FROM {quoted} WHERE NOT ({condition})"
        count = int(
            connection.exec_driver_sql(f"SELECT count(*) FROM ({breaking}) AS b").scalar_one()
        )
        if count:
            kind = "date" if str(type_name) == "date" else "datetime"
            sentence = guard_sentence(table, column, kind, "")
            rows = connection.exec_driver_sql(
                f"SELECT {'id' if _has_id(connection, table) else 'ctid'} FROM {quoted} "
                f"WHERE NOT ({condition}) LIMIT {LISTED_ROWS}"
            ).fetchall()
            raise_breaking(connection, count, [f"{table} row {row[0]}: {sentence}" for row in rows])
        connection.exec_driver_sql(
            f"ALTER TABLE {quoted} ADD CONSTRAINT {quote_identifier(name)} CHECK ({condition})"
        )
    for table, name in existing - wanted:
        connection.exec_driver_sql(
            f"ALTER TABLE {quote_identifier(table)} "
            f"DROP CONSTRAINT IF EXISTS {quote_identifier(name)}"
        )


def _has_id(connection: Connection, table: str) -> bool:
    return bool(
        connection.exec_driver_sql(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            f"AND table_name = '{table}' AND column_name = 'id'"
        ).first()
    )


# --- every road ------------------------------------------------------------------------------


def sync(connection: Connection, watch: Watch | None = None) -> None:
    """Bring the guards in step with the schema (after a revision, or after create_all)."""
    if connection.dialect.name == "sqlite":
        sync_sqlite(connection, watch)
    elif connection.dialect.name == "postgresql":
        sync_postgresql(connection)


def remove(connection: Connection) -> None:
    """Drop every guard (the downgrade of the revision that introduced them)."""
    if connection.dialect.name == "sqlite":
        for name in sqlite_triggers(connection):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {quote_identifier(name)}")
    elif connection.dialect.name == "postgresql":
        for table, name in connection.exec_driver_sql(_PG_GUARD_CHECKS).fetchall():
            connection.exec_driver_sql(
                f"ALTER TABLE {quote_identifier(str(table))} "
                f"DROP CONSTRAINT IF EXISTS {quote_identifier(str(name))}"
            )


class Keeper:
    """Keeps the guards in step through one Alembic run: ``on_version_apply`` after each step
    (in the run's transaction); ``close()`` when the run ends."""

    def __init__(self, connection: Connection, script: ScriptDirectory) -> None:
        self.script = script
        self.watch = Watch(connection)

    def __call__(self, *, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        connection = ctx.connection
        if connection is None:  # --sql: nothing to read; see env.py
            return
        current = step.up_revision_id if step.is_upgrade else _down_target(step)
        self.watch.close()
        if active(self.script, current):
            sync(connection, self.watch)
        self.watch = Watch(connection)

    def close(self) -> None:
        self.watch.close()


def _down_target(step: Any) -> str | None:
    targets = step.down_revision_ids
    return str(targets[0]) if targets else None


def offline_statements(dialect: str, revision: str) -> list[str]:
    """``--sql``: the statements that put the guards in step with ``revision``'s exported
    schema. Nothing can be read offline, so every guard is dropped and made again, and rows
    that already break one are found by the database when the script runs (it fails)."""
    from data.db.head import exported_schema

    schema = exported_schema(revision)
    if schema is None:
        return [f"-- no exported schema for revision {revision}: storage guards not written"]
    statements: list[str] = []
    for table, aspects in sorted(schema.items()):
        found: list[Guard] = []
        for column, description in aspects["columns"].items():
            declared = description.split(" notnull=")[0].removeprefix("type=")
            found.extend(column_guards(table, column, declared))
        found = in_order(found)
        if dialect == "sqlite":
            for when in ("INSERT", "UPDATE"):
                name, sql = trigger_sql(table, when, found)
                statements.append(f"DROP TRIGGER IF EXISTS {quote_identifier(name)}")
                if found:
                    statements.append(sql)
        elif dialect == "postgresql":
            for guard in found:
                if guard.kind not in ("date", "datetime"):
                    continue
                name = quote_identifier(pg_check_name(table, guard.column))
                quoted = quote_identifier(table)
                type_name = "date" if guard.kind == "date" else "timestamp with time zone"
                statements.append(f"ALTER TABLE {quoted} DROP CONSTRAINT IF EXISTS {name}")
                statements.append(
                    f"ALTER TABLE {quoted} ADD CONSTRAINT {name} "
                    f"CHECK ({pg_condition(guard.column, type_name)})"
                )
    return statements


# --- in a revision (keep stable: released revisions call these) ------------------------------


def install() -> None:
    """In ``upgrade()`` of the revision that introduced the guards: make them, after checking
    every saved row against them (rows that break one stop the upgrade, with the list)."""
    from alembic import op

    context = op.get_context()
    if context.as_sql:
        return  # env.py writes them after the step, from the exported schema
    sync(op.get_bind())


def uninstall() -> None:
    """In ``downgrade()`` of that revision: drop every guard."""
    from alembic import op

    context = op.get_context()
    if context.as_sql:
        for statement in offline_statements(context.dialect.name, SINCE):
            if statement.startswith("DROP TRIGGER") or " DROP CONSTRAINT " in statement:
                op.execute(statement)
        return
    remove(op.get_bind())
