"""What the database itself refuses, turned into errors for people (the engine's handle_error).

A write that breaks a rule becomes ``WriteRefusedError`` naming the rule in a sentence (the
sentences live beside the constraints, in ``data/models``), a write through a reading session
``ReadOnlySessionError``, and a wait for another window's write that ran out
``DatabaseBusyError``. The driver's own error stays chained as ``__cause__``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext

from data.db.errors import DataLayerError, ReadOnlySessionError, WriteRefusedError
from data.db.policy import busy_error, busy_timeout_seconds, is_reading

if TYPE_CHECKING:
    from data.models.rules import Rule

# The statement's verb and table: INSERT [OR ...] INTO t, UPDATE [OR ...] t, DELETE FROM t.
_TARGET = re.compile(
    r"^\s*(?:(INSERT|REPLACE)(?:\s+OR\s+\w+)?\s+INTO|(UPDATE)(?:\s+OR\s+\w+)?|(DELETE)\s+FROM)"
    r"\s+[\"`\[]?(\w+)",
    re.IGNORECASE,
)
# SQLite's constraint messages ("UNIQUE constraint failed: clients.email").
_SQLITE_FAILED = re.compile(r"^(CHECK|UNIQUE|NOT NULL|FOREIGN KEY) constraint failed(?::\s*(.*))?$")
# Probing which foreign key failed reads one row per key and parameter set: keep it cheap.
_MAX_PROBED_ROWS = 50

_PG_READ_ONLY_TRANSACTION = "25006"
_PG_NOT_NULL, _PG_FOREIGN_KEY, _PG_UNIQUE, _PG_CHECK = "23502", "23503", "23505", "23514"

READ_ONLY_ACTION = (
    "Nothing was saved. This is a mistake in the app: a user action must save through "
    "SessionLocal (a writing session), not ReadSessionLocal. Report this message to support."
)


def display_name(engine: Engine) -> str:
    """The database as messages name it: the file, or the URL with the password masked."""
    if engine.dialect.name == "sqlite":
        return str(engine.url.database)
    return engine.url.render_as_string(hide_password=True)


def explain_refusals(engine: Engine) -> None:
    """Raise an error for people instead of the driver's when the database refuses something."""
    database = display_name(engine)

    @event.listens_for(engine, "handle_error")
    def _handle_error(context: ExceptionContext) -> None:
        if context.is_disconnect:
            return  # SQLAlchemy's own handling (invalidate, reconnect) applies
        error = for_people(context, database)
        if error is not None:
            # Raised here, SQLAlchemy re-raises it "from" the driver's error.
            raise error


def for_people(context: ExceptionContext, database: str) -> DataLayerError | None:
    """The error for people matching ``context``, or None to keep SQLAlchemy's."""
    original = context.original_exception
    reading = context.connection is not None and is_reading(context.connection)
    if context.dialect.name == "sqlite":
        return _sqlite(context, original, database, reading)
    if context.dialect.name == "postgresql":
        return _postgresql(context, original, database, reading)
    return None


def _read_only(database: str) -> ReadOnlySessionError:
    return ReadOnlySessionError(
        database, "something tried to save through a session that only reads", READ_ONLY_ACTION
    )


def _refused(database: str, rules: Sequence[Rule]) -> WriteRefusedError:
    sentences = list(dict.fromkeys(rule.sentence for rule in rules))
    sentence = sentences[0] if len(sentences) == 1 else ", or ".join(sentences)
    return WriteRefusedError(database, tuple(rule.name for rule in rules), sentence)


def _target(statement: str | None) -> tuple[str, str] | None:
    """(verb, table) of a write statement, verb one of insert, update, delete."""
    match = _TARGET.match(statement or "")
    if match is None:
        return None
    verb = "insert" if match.group(1) else "update" if match.group(2) else "delete"
    return verb, match.group(4)


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite(
    context: ExceptionContext, original: BaseException, database: str, reading: bool
) -> DataLayerError | None:
    text = str(original)
    if "database is locked" in text or "database table is locked" in text:
        return busy_error(database, busy_timeout_seconds())
    if reading and "readonly" in text:
        return _read_only(database)
    match = _SQLITE_FAILED.match(text)
    if match is None:
        if text.startswith("InkLinkOS rule "):  # a storage guard (data.migration.guards)
            from data.models import rules

            guard = rules.guard_rule(text)
            return _refused(database, [guard]) if guard is not None else None
        return None
    from data.models import rules

    kind, detail = match.group(1), (match.group(2) or "").strip()
    if kind == "CHECK":
        return _refused(database, [rules.named(detail)])
    if kind == "NOT NULL":
        table, _, column = detail.partition(".")
        return _refused(database, [rules.not_null(table, column)])
    if kind == "UNIQUE":
        # "clients.email" or "tattoo_sessions.id, tattoo_sessions.client_id"
        pairs = [part.strip().partition(".") for part in detail.split(",")]
        table = pairs[0][0]
        return _refused(database, [rules.unique_on(table, tuple(p[2] for p in pairs))])
    return _refused(database, _sqlite_foreign_keys(context))


def _sqlite_foreign_keys(context: ExceptionContext) -> list[Rule]:
    """SQLite does not say which foreign key failed: the ones this statement can break,
    narrowed, for the rows being written, to those whose referred row is really missing."""
    from data.models import rules

    target = _target(context.statement)
    keys = rules.foreign_keys()
    if target is None:
        return [rules.Rule(key.name, key.sentence) for key in keys] or [
            rules.Rule("foreign key", "every reference must name an existing row")
        ]
    verb, table = target
    as_child = [key for key in keys if key.table == table] if verb != "delete" else []
    as_parent = [key for key in keys if key.referred_table == table] if verb != "insert" else []
    if as_child and not as_parent:
        as_child = _missing_parents(context, as_child) or as_child
    found = [rules.Rule(key.name, key.sentence) for key in as_child]
    found += [rules.Rule(key.name, key.parent_sentence) for key in as_parent]
    return found or [rules.Rule("foreign key", "every reference must name an existing row")]


def _missing_parents(context: ExceptionContext, keys: list[Any]) -> list[Any]:
    """Of ``keys``, those whose referred row is missing for a row being written; [] if unknown."""
    execution = context.execution_context
    connection = context.connection
    compiled: Sequence[Mapping[str, Any]] | None = getattr(execution, "compiled_parameters", None)
    if connection is None or not compiled:
        return []
    rows = compiled[:_MAX_PROBED_ROWS]
    driver = connection.connection.driver_connection
    failing = []
    try:
        for key in keys:
            for row in rows:
                if not all(column in row for column in key.columns):
                    return []  # not the parameters of a plain INSERT/UPDATE: cannot tell
                values = [row[column] for column in key.columns]
                if any(value is None for value in values):
                    continue  # a NULL in the key: SQLite does not check it
                where = " AND ".join(f'"{column}" = ?' for column in key.referred_columns)
                probe = f'SELECT 1 FROM "{key.referred_table}" WHERE {where} LIMIT 1'
                if driver is None or driver.execute(probe, values).fetchone() is None:
                    failing.append(key)
                    break
    except Exception:  # a probe that fails only loses the narrowing
        return []
    return failing


# --- PostgreSQL ------------------------------------------------------------------------------


def _postgresql(
    context: ExceptionContext, original: BaseException, database: str, reading: bool
) -> DataLayerError | None:
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate == _PG_READ_ONLY_TRANSACTION:
        return _read_only(database) if reading else None
    if sqlstate not in (_PG_NOT_NULL, _PG_FOREIGN_KEY, _PG_UNIQUE, _PG_CHECK):
        return None
    from data.models import rules

    diag = getattr(original, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    if sqlstate == _PG_NOT_NULL:
        table = getattr(diag, "table_name", None) or "?"
        column = getattr(diag, "column_name", None) or "?"
        return _refused(database, [rules.not_null(table, column)])
    if not constraint:
        return None
    parent_changed = False
    if sqlstate == _PG_FOREIGN_KEY:
        target = _target(context.statement)
        key = next((k for k in rules.foreign_keys() if k.name == constraint), None)
        parent_changed = (
            target is not None
            and key is not None
            and target[0] != "insert"
            and target[1] == key.referred_table
        )
    return _refused(database, [rules.named(constraint, parent_changed=parent_changed)])
