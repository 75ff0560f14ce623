"""The rules the database enforces, each as a sentence for people, read from the models.

Every sentence is declared beside its constraint (``info=rule(...)`` in the model modules);
a constraint without one still gets a plain sentence built from its table and columns. The
engine that turns a refused write into ``WriteRefusedError`` asks here by the name the
constraint has in the database, so nothing outside ``data/models`` spells today's names.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from sqlalchemy import (
    CheckConstraint,
    Column,
    Constraint,
    ForeignKeyConstraint,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
)

from data.models.base import Base


@dataclass(frozen=True)
class Rule:
    """One rule: the constraint's name in the database, and its sentence."""

    name: str
    sentence: str


@dataclass(frozen=True)
class ForeignKeyRule:
    """A foreign key, with what a probe needs to tell whether it is the one that failed."""

    name: str
    sentence: str
    parent_sentence: str
    table: str
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]


def _tables() -> dict[str, Table]:
    import data.models  # noqa: F401 (completes Base.metadata)

    return dict(Base.metadata.tables)


def _noun(table: Table) -> str:
    return str(table.info.get("noun", table.name))


def _words(columns: tuple[str, ...]) -> str:
    return " and ".join(column.replace("_", " ") for column in columns)


def _sentence(constraint: Constraint, default: str, key: str = "rule") -> str:
    infos = [constraint.info]
    if isinstance(constraint, ForeignKeyConstraint):
        infos += [element.info for element in constraint.elements]
    for info in infos:
        if key in info:
            return str(info[key])
    return default


def _default(constraint: Constraint, table: Table) -> str:
    noun = _noun(table)
    columns = tuple(column.name for column in getattr(constraint, "columns", ()))
    if isinstance(constraint, PrimaryKeyConstraint):
        return f"each {noun} needs its own {_words(columns)}"
    if isinstance(constraint, UniqueConstraint):
        return f"two {noun}s cannot have the same {_words(columns)}"
    if isinstance(constraint, CheckConstraint):
        return f"a {noun} must satisfy the rule {constraint.name}"
    return f"a {noun} must satisfy the rule {constraint.name}"


@functools.cache
def _by_name() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for table in _tables().values():
        for constraint in table.constraints:
            if constraint.name and not isinstance(constraint, ForeignKeyConstraint):
                name = str(constraint.name)
                rules[name] = Rule(name, _sentence(constraint, _default(constraint, table)))
        for index in table.indexes:
            if index.unique and index.name:
                columns = tuple(column.name for column in index.columns)
                sentence = f"two {_noun(table)}s cannot have the same {_words(columns)}"
                rules[str(index.name)] = Rule(str(index.name), index.info.get("rule", sentence))
    return rules


@functools.cache
def foreign_keys() -> tuple[ForeignKeyRule, ...]:
    """Every foreign key of the models, with its two sentences."""
    tables = _tables()
    found = []
    for table in tables.values():
        for constraint in table.foreign_key_constraints:
            referred = constraint.referred_table
            columns = tuple(column.name for column in constraint.columns)
            child, parent = _noun(table), _noun(referred)
            found.append(
                ForeignKeyRule(
                    name=str(constraint.name),
                    sentence=_sentence(
                        constraint, f"a {child}'s {_words(columns)} must name an existing {parent}"
                    ),
                    parent_sentence=_sentence(
                        constraint,
                        f"a {parent} that {child}s refer to cannot be deleted",
                        key="parent_rule",
                    ),
                    table=table.name,
                    columns=columns,
                    referred_table=referred.name,
                    referred_columns=tuple(element.column.name for element in constraint.elements),
                )
            )
    return tuple(found)


def named(name: str, *, parent_changed: bool = False) -> Rule:
    """The rule of the constraint the database calls ``name``.

    For a foreign key, ``parent_changed`` picks the sentence for the row referred to.
    """
    for key in foreign_keys():
        if key.name == name:
            return Rule(name, key.parent_sentence if parent_changed else key.sentence)
    return (
        _by_name().get(name)
        or guard_check_rule(name)
        or Rule(name, f"the database's rule {name} must hold")
    )


def unique_on(table_name: str, columns: tuple[str, ...]) -> Rule:
    """The unique rule of ``table_name`` over exactly ``columns`` (SQLite names columns only)."""
    table = _tables().get(table_name)
    if table is not None:
        candidates: list[tuple[str | None, tuple[str, ...]]] = [
            (str(c.name) if c.name else None, tuple(col.name for col in c.columns))
            for c in table.constraints
            if isinstance(c, UniqueConstraint | PrimaryKeyConstraint)
        ]
        candidates += [
            (str(i.name) if i.name else None, tuple(col.name for col in i.columns))
            for i in table.indexes
            if i.unique
        ]
        for name, found in candidates:
            if name and set(found) == set(columns):
                return named(name)
    noun = _noun(table) if table is not None else table_name
    return Rule(
        f"{table_name}({', '.join(columns)}) unique",
        f"two {noun}s cannot have the same {_words(columns)}",
    )


def not_null(table_name: str, column_name: str) -> Rule:
    """The rule that ``table_name.column_name`` must have a value."""
    table = _tables().get(table_name)
    column: Column[object] | None = None
    if table is not None:
        column = table.columns.get(column_name)
    sentence = f"a {_noun(table) if table is not None else table_name}'s " + (
        f"{_words((column_name,))} must be given"
    )
    if column is not None and "rule" in column.info:
        sentence = str(column.info["rule"])
    return Rule(f"{table_name}.{column_name} not null", sentence)


# --- storage guards (data.migration.guards) ---------------------------------------------------

# A PostgreSQL guard CHECK is named ck_<table>_<column><suffix>.
GUARD_CHECK_SUFFIX = "_in_range"
_GUARD_MESSAGE = re.compile(r"^InkLinkOS rule (\w+)\.(\w+) (\w+)(?:\(([^)]*)\))? failed")
_GUARD_WORDS = {
    "integer": "must be a whole number",
    "text": "must be text",
    "nul": "cannot contain a NUL character",
    "datetime": "must be a date and time between the years 1 and 9999, stored in UTC as the "
    "app writes it",
    "date": "must be a date between the years 1 and 9999, written YYYY-MM-DD",
    "boolean": "must be true or false",
    "number": "must be a number",
}


def guard_message(table: str, column: str, kind: str, param: str = "") -> str:
    """The text a guard raises; SQLite shows it as the error, so a raw-SQL user reads it too."""
    detail = f"({param})" if param else ""
    return f"InkLinkOS rule {table}.{column} {kind}{detail} failed: {kind_words(kind, param)}"


def kind_words(kind: str, param: str) -> str:
    if kind == "length":
        return f"can be at most {param} characters long"
    if kind == "range":
        low, _, high = param.partition("..")
        return f"must be between {low} and {high}"
    return _GUARD_WORDS.get(kind, f"must satisfy the rule {kind}")


def guard_sentence(table_name: str, column_name: str, kind: str, param: str = "") -> str:
    """The sentence for people: "a payment's amount cents must be a whole number"."""
    table = _tables().get(table_name)
    noun = _noun(table) if table is not None else table_name
    return f"a {noun}'s {_words((column_name,))} {kind_words(kind, param)}"


def guard_rule(message: str) -> Rule | None:
    """The rule of a SQLite guard's message, or None when ``message`` is not one."""
    match = _GUARD_MESSAGE.match(message)
    if match is None:
        return None
    table, column, kind, param = match.group(1, 2, 3, 4)
    name = f"{table}.{column} {kind}"
    return Rule(name, guard_sentence(table, column, kind, param or ""))


def guard_check_rule(name: str) -> Rule | None:
    """The rule of a PostgreSQL guard CHECK named ``name``, or None."""
    if not name.endswith(GUARD_CHECK_SUFFIX):
        return None
    for table in _tables().values():
        for column in table.columns:
            if name == f"ck_{table.name}_{column.name}{GUARD_CHECK_SUFFIX}":
                kind = "date" if str(column.type).upper() == "DATE" else "datetime"
                return Rule(name, guard_sentence(table.name, column.name, kind))
    return None
