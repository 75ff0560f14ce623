"""Rows of a SQLite file a PostgreSQL server would refuse: what ``move-to --check`` lists.

A file saved before the storage guards (``guards.py``), or written by another tool with
them dropped, may hold values SQLite keeps and a server refuses: text over its length, NUL
characters, fractions or words in money columns, integers beyond the server's ``integer``,
datetimes and dates not in the stored form. The rules are the guards' own, derived from the
types the file declares, checked on every row. One more is the server's alone: an email a
CHECK keeps lower-case, whose lower case differs between SQLite (ASCII letters only) and
PostgreSQL (all of Unicode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import CheckConstraint, Connection, Table

from data.migration.guards import Guard, column_guards, quote_identifier
from data.models.rules import guard_sentence

# A CHECK that keeps a column lower-case: "email = lower(email)".
_LOWER_CASE_CHECK = re.compile(r"^\s*(\w+)\s*=\s*lower\(\s*(\w+)\s*\)\s*$", re.IGNORECASE)
# Text holding anything but printable ASCII: only there can the two lower cases differ.
_NOT_ASCII = "*[^ -~]*"


@dataclass(frozen=True)
class Finding:
    """One row the server would refuse, and by which rule."""

    table: str
    row: object
    column: str
    rule: str
    sentence: str

    def __str__(self) -> str:
        return f"{self.table} row {self.row}: {self.column}: {self.sentence} (rule {self.rule})"


def _declared_columns(connection: Connection, table: str) -> dict[str, str]:
    return {
        str(row[1]): str(row[2] or "")
        for row in connection.exec_driver_sql(f"PRAGMA table_info({quote_identifier(table)})")
    }


def _row_key(columns: dict[str, str]) -> str:
    return "id" if "id" in columns else "rowid"


def _lower_case_columns(table: Table) -> list[str]:
    found = []
    for constraint in table.constraints:
        if isinstance(constraint, CheckConstraint):
            match = _LOWER_CASE_CHECK.match(str(constraint.sqltext))
            if match and match.group(1) == match.group(2):
                found.append(match.group(1))
    return found


def _guard_findings(
    connection: Connection, table: str, key: str, guards: list[Guard]
) -> list[Finding]:
    quoted = quote_identifier(table)
    conditions = " OR ".join(f"({g.condition(quote_identifier(g.column))})" for g in guards)
    # One pass answers "none", the usual case; only a table with such rows is read per rule.
    if (
        connection.exec_driver_sql(f"SELECT 1 FROM {quoted} WHERE {conditions} LIMIT 1").first()
        is None
    ):
        return []
    found: list[Finding] = []
    for guard in guards:
        condition = guard.condition(quote_identifier(guard.column))
        sentence = guard_sentence(table, guard.column, guard.kind, guard.param)
        rule = f"{guard.kind} {guard.param}".strip()
        found.extend(
            Finding(table, row[0], guard.column, rule, sentence)
            for row in connection.exec_driver_sql(
                f"SELECT {key} FROM {quoted} WHERE {condition} ORDER BY {key}"
            )
        )
    return found


def _lower_case_findings(
    connection: Connection, table: Table, key: str, columns: dict[str, str]
) -> list[Finding]:
    found: list[Finding] = []
    for column in _lower_case_columns(table):
        if column not in columns:
            continue
        quoted = quote_identifier(column)
        rows = connection.exec_driver_sql(
            f"SELECT {key}, {quoted} FROM {quote_identifier(table.name)} "
            f"WHERE typeof({quoted}) = 'text' AND {quoted} GLOB '{_NOT_ASCII}' ORDER BY {key}"
        )
        for row_key, value in rows:
            # Python lower-cases all of Unicode, as PostgreSQL does in a UTF-8 database.
            if str(value).lower() != value:
                found.append(
                    Finding(
                        table.name,
                        row_key,
                        column,
                        "lower case",
                        f"a {table.info.get('noun', table.name)}'s {column.replace('_', ' ')} "
                        "has capital letters outside ASCII, which SQLite's lower() leaves "
                        "and PostgreSQL's lower() changes, so the server refuses it",
                    )
                )
    return found


def unmovable_rows(
    connection: Connection, tables: list[Table], *, guard_rules: bool = True
) -> list[Finding]:
    """Every row of ``tables`` in the SQLite database behind ``connection`` that a
    PostgreSQL server at the same revision would refuse, table by table, in row order.

    Without ``guard_rules`` only the rule no storage guard enforces is checked (lower case):
    in a file at head, every row saved since a full check went through the guards.
    """
    present = {
        str(row[0])
        for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    found: list[Finding] = []
    for table in tables:
        if table.name not in present:
            continue
        columns = _declared_columns(connection, table.name)
        key = _row_key(columns)
        guards = [
            guard
            for column, declared in columns.items()
            for guard in column_guards(table.name, column, declared)
        ]
        if guards and guard_rules:
            found.extend(_guard_findings(connection, table.name, key, guards))
        found.extend(_lower_case_findings(connection, table, key, columns))
    return found
