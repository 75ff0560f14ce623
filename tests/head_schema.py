"""Facts about the schema read from the models, for tests that must follow the head, not spell it."""

from __future__ import annotations

import re

from sqlalchemy import CheckConstraint, Column, String, Table

import data.models  # noqa: F401 (completes Base.metadata)
from data.models.base import Base


def table(name: str) -> Table:
    return Base.metadata.tables[name]


def text_length(table_name: str, column: str) -> int:
    """The length the models give a ``String(n)`` column (what its guard allows)."""
    column_type = table(table_name).c[column].type
    assert isinstance(column_type, String) and column_type.length, (
        f"{table_name}.{column} is no longer a String(n) column in the models: "
        "pick another column for this test"
    )
    return int(column_type.length)


def noun(table_name: str) -> str:
    """What the table's rows are called in the sentences people read ("client")."""
    return str(table(table_name).info.get("noun", table_name))


def _named_by_a_rule(found: Table, column: Column[object]) -> bool:
    for constraint in found.constraints:
        if column.name in getattr(constraint, "columns", {}):
            return True
        if isinstance(constraint, CheckConstraint) and re.search(
            rf"\b{column.name}\b", str(constraint.sqltext)
        ):
            return True
    return any(column.name in index.columns for index in found.indexes)


def plain_limited_text_column(table_name: str) -> tuple[str, int]:
    """The name and length of a nullable ``String(n)`` column of ``table_name`` that no
    constraint or index names, so that only its guards have a say over what it stores."""
    found = table(table_name)
    for column in found.columns:
        if (
            isinstance(column.type, String)
            and column.type.length
            and column.nullable
            and not _named_by_a_rule(found, column)
        ):
            return column.name, int(column.type.length)
    raise AssertionError(f"the models give {table_name} no plain nullable String(n) column")
