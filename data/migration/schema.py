"""The schema as SQLite stores it, compared table by table, for parity and verification."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, MetaData, create_engine

Query = Callable[[str], Sequence[Sequence[Any]]]
# {table: {aspect: {key: description}}}; aspects are columns, indexes, foreign_keys, constraints.
Snapshot = dict[str, dict[str, dict[str, str]]]

_NAMED_CONSTRAINT = re.compile(
    r"CONSTRAINT\s+\"?(\w+)\"?\s+(CHECK|UNIQUE|PRIMARY\s+KEY|FOREIGN\s+KEY)\s*", re.IGNORECASE
)


def sqlite_query(connection: Connection) -> Query:
    """A query function reading through an open SQLAlchemy connection (in its transaction)."""
    return lambda sql: connection.exec_driver_sql(sql).fetchall()


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _balanced(text: str, start: int) -> str:
    """The parenthesised expression that opens at ``text[start]``."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
    return text[start:]


def _normalise_sql(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("( ", "(").replace(" )", ")").strip()


def _trigger_digest(sql: str) -> str:
    """A trigger, short enough for a message: its event, statement count and a digest of its
    whole normalised text (any change to it shows as a different digest)."""
    text = _normalise_sql(sql)
    head = re.match(r"CREATE\s+TRIGGER\s+\S+\s+(.*?)\s+BEGIN", text, re.IGNORECASE | re.DOTALL)
    statements = text.count(";")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"{head.group(1) if head else 'trigger'}: {statements} statements, sha256 {digest}"


def sqlite_snapshot(query: Query, *, exclude: frozenset[str] = frozenset()) -> Snapshot:
    """Columns, indexes, foreign keys and named constraints of every table, as stored."""
    snapshot: Snapshot = {}
    tables = query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    for name, create_sql in tables:
        if name in exclude:
            continue
        table = quote_identifier(name)
        columns = {
            row[
                1
            ]: f"type={str(row[2]).upper()} notnull={bool(row[3])} default={row[4]} pk={row[5]}"
            for row in query(f"PRAGMA table_info({table})")
        }
        indexes: dict[str, str] = {}
        for _seq, index_name, unique, origin, partial in query(f"PRAGMA index_list({table})"):
            keys = [
                f"{row[2]}{' DESC' if row[3] else ''}"
                for row in query(f"PRAGMA index_xinfo({quote_identifier(index_name)})")
                if row[5]
            ]
            # Automatic indexes (behind UNIQUE and PRIMARY KEY) are numbered by SQLite in
            # creation order, so they are keyed by what they cover, not by name.
            key = (
                f"<{origin}>({', '.join(keys)})" if index_name.startswith("sqlite_") else index_name
            )
            indexes[key] = (
                f"columns=({', '.join(keys)}) unique={bool(unique)} partial={bool(partial)}"
            )
        foreign_keys: dict[int, dict[str, Any]] = {}
        for row in query(f"PRAGMA foreign_key_list({table})"):
            entry = foreign_keys.setdefault(
                row[0],
                {"table": row[2], "from": [], "to": [], "on_update": row[5], "on_delete": row[6]},
            )
            entry["from"].append(row[3])
            entry["to"].append(row[4])
        fks = {
            f"({', '.join(fk['from'])}) -> {fk['table']}({', '.join(str(c) for c in fk['to'])})": (
                f"on_delete={fk['on_delete']} on_update={fk['on_update']}"
            )
            for fk in foreign_keys.values()
        }
        constraints: dict[str, str] = {}
        for match in _NAMED_CONSTRAINT.finditer(create_sql or ""):
            kind = re.sub(r"\s+", " ", match.group(2).upper())
            body = (
                _balanced(create_sql, match.end())
                if create_sql[match.end() : match.end() + 1] == "("
                else ""
            )
            constraints[match.group(1)] = f"{kind} {_normalise_sql(body)}"
        snapshot[name] = {
            "columns": columns,
            "indexes": indexes,
            "foreign_keys": fks,
            "constraints": constraints,
        }
        triggers = {
            str(trigger): _trigger_digest(str(sql))
            for trigger, sql in query(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                f"AND tbl_name = '{name.replace(chr(39), chr(39) * 2)}' ORDER BY name"
            )
        }
        if triggers:  # left out when empty: schemas exported before triggers stay valid
            snapshot[name]["triggers"] = triggers
    return snapshot


def metadata_snapshot(metadata: MetaData, *, guarded: bool = True) -> Snapshot:
    """What ``create_all`` of ``metadata`` stores in a fresh SQLite database (with the storage
    guards the runner adds to a new database, unless ``guarded`` is false)."""
    from data.migration import guards

    engine = create_engine("sqlite://")
    try:
        with engine.begin() as connection:
            metadata.create_all(connection)
            if guarded:
                guards.sync(connection)
            return sqlite_snapshot(sqlite_query(connection))
    finally:
        engine.dispose()


_LABELS = {
    "columns": "column",
    "indexes": "index",
    "foreign_keys": "foreign key",
    "constraints": "constraint",
    "triggers": "trigger",
}


def differences(found: Snapshot, expected: Snapshot, *, allow_extra: bool = False) -> list[str]:
    """Readable lines saying how ``found`` differs from ``expected``.

    With ``allow_extra``, what ``found`` has beyond ``expected`` (a table, a column, an
    index) is not a difference; everything ``expected`` declares must be there, unchanged.
    """
    lines: list[str] = []
    for table in sorted(expected.keys() - found.keys()):
        lines.append(f"table {table} is missing")
    if not allow_extra:
        for table in sorted(found.keys() - expected.keys()):
            lines.append(f"table {table} is not expected")
    for table in sorted(expected.keys() & found.keys()):
        for aspect, wanted in expected[table].items():
            have = found[table].get(aspect, {})
            label = _LABELS[aspect]
            for key in sorted(wanted.keys() - have.keys()):
                lines.append(f"table {table}: {label} {key} is missing ({wanted[key]})")
            if not allow_extra:
                for key in sorted(have.keys() - wanted.keys()):
                    lines.append(f"table {table}: {label} {key} is not expected ({have[key]})")
            for key in sorted(wanted.keys() & have.keys()):
                if wanted[key] != have[key]:
                    lines.append(
                        f"table {table}: {label} {key} is {have[key]}, expected {wanted[key]}"
                    )
    return lines


def extras(found: Snapshot, expected: Snapshot) -> list[str]:
    """What ``found`` has beyond ``expected``: tolerated, but worth a log line."""
    lines = [f"table {table}" for table in sorted(found.keys() - expected.keys())]
    for table in sorted(expected.keys() & found.keys()):
        extra_columns = found[table]["columns"].keys() - expected[table]["columns"].keys()
        lines.extend(f"column {table}.{column}" for column in sorted(extra_columns))
    return lines
