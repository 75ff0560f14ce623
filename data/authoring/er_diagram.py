"""The schema as a Mermaid ER diagram, generated from the models.

The command: ``python -m data.authoring.er_diagram``.

``render()`` reads a ``MetaData`` (the models' ``Base.metadata`` from the command), so the
diagram in the README is generated, never drawn by hand; the test suite fails when the README's
copy differs from what the models give today.

- One entity per table, sorted by name; one attribute per column, in the table's order.
  Types are SQLAlchemy's generic names (``integer``, ``string``, ``datetime``...); a project
  type such as ``UTCDateTime`` shows as the type it stores.
- Keys: ``PK``, ``FK``, and ``UK`` for a column unique on its own (a composite unique constraint
  makes no single column unique, so it is not marked).
- One relationship per foreign key constraint, labelled with its columns: the parent is
  ``||`` when every column of the key is NOT NULL, ``|o`` when a NULL leaves the row without
  a parent; the child side is ``o|`` when the key's columns are unique, else ``o{``.
"""

from __future__ import annotations

import argparse
import enum
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    MetaData,
    Table,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

START_MARKER = "<!-- er-diagram:start -->"
END_MARKER = "<!-- er-diagram:end -->"
WRITE_COMMAND = "python -m data.authoring.er_diagram --write"

# Mermaid's erDiagram grammar accepts unquoted entity and attribute names of this shape; a
# name outside it would break the diagram, so it is refused rather than mangled.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words Mermaid's lexer takes as keywords whatever their case (checked against Mermaid 11).
_RESERVED_ENTITY_NAMES = frozenset(
    {"accdescr", "acctitle", "class", "classdef", "end", "erdiagram", "many", "one"}
    | {"style", "subgraph", "to"}
)
_RESERVED_ATTRIBUTE_NAMES = frozenset({"fk", "pk", "uk"})


class DiagramError(Exception):
    """The diagram cannot be made or placed; the message says what to do."""


def render(metadata: MetaData) -> str:
    """The ``erDiagram`` source for every table of ``metadata``; the same input, the same text."""
    tables = sorted(metadata.tables.values(), key=lambda table: table.name)
    lines = ["erDiagram"]
    for table in tables:
        lines.append(f"    {_name(table.name, table.name)} {{")
        unique = {next(iter(names)) for names in _unique_sets(table) if len(names) == 1}
        foreign = {element.parent.name for element in table.foreign_keys}
        for column in table.columns:
            lines.append(f"        {_attribute(table, column, unique, foreign)}")
        lines.append("    }")
    relationships = [
        _relationship(table, constraint)
        for table in tables
        for constraint in table.constraints
        if isinstance(constraint, ForeignKeyConstraint)
    ]
    lines.extend(f"    {line}" for line in sorted(relationships))
    return "\n".join(lines) + "\n"


def fenced(metadata: MetaData) -> str:
    """The diagram as the fenced ``mermaid`` block that sits between the README's markers."""
    return f"```mermaid\n{render(metadata)}```\n"


def readme_block(text: str, where: str = "README.md") -> str:
    """What stands between the marker lines of ``text``: the fenced block when it is current."""
    start, end = _marker_span(text, where)
    # The markers sit on lines of their own: the block starts on the line after the first.
    if not text.startswith("\n", start):
        raise DiagramError(
            f"{where}: text follows {START_MARKER} on its line; run {WRITE_COMMAND} {where}"
        )
    return text[start + 1 : end]


def with_block(text: str, block: str, where: str = "README.md") -> str:
    """``text`` with ``block`` between the marker lines and everything else unchanged."""
    start, end = _marker_span(text, where)
    return text[:start] + "\n" + block + text[end:]


def _marker_span(text: str, where: str) -> tuple[int, int]:
    """From the end of the start marker to the beginning of the end marker."""
    starts, ends = text.count(START_MARKER), text.count(END_MARKER)
    if starts != 1 or ends != 1:
        raise DiagramError(
            f"{where}: expected one {START_MARKER} and one {END_MARKER}, found {starts} and "
            f"{ends}; put one pair, each on a line of its own, where the diagram goes, then run "
            f"{WRITE_COMMAND} {where}"
        )
    start = text.index(START_MARKER) + len(START_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        raise DiagramError(f"{where}: {END_MARKER} comes before {START_MARKER}; swap them")
    return start, end


def _name(name: str, table: str, reserved: frozenset[str] = _RESERVED_ENTITY_NAMES) -> str:
    """``name`` as Mermaid takes it unquoted, or an error naming the table it belongs to."""
    if not _IDENTIFIER.fullmatch(name) or name.lower() in reserved:
        raise DiagramError(
            f"table {table!r}: Mermaid cannot draw the name {name!r}: it takes letters, digits "
            "and underscores, not starting with a digit, and no keyword such as "
            f"{', '.join(sorted(reserved))}"
        )
    return name


def _attribute(table: Table, column: Column[object], unique: set[str], foreign: set[str]) -> str:
    keys = [
        marker
        for marker, present in (
            ("PK", column.primary_key),
            ("FK", column.name in foreign),
            # A primary key is unique already: UK would only repeat it.
            ("UK", column.name in unique and not column.primary_key),
        )
        if present
    ]
    parts = [_type_word(column.type), _name(column.name, table.name, _RESERVED_ATTRIBUTE_NAMES)]
    if keys:
        parts.append(", ".join(keys))
    comment = _comment(column)
    if comment:
        parts.append(f'"{comment}"')
    return " ".join(parts)


def _unique_sets(table: Table) -> list[set[str]]:
    """The sets of column names the table holds unique, however each was declared."""
    sets = [{column.name for column in table.primary_key.columns}]
    sets += [
        {column.name for column in unique.columns}
        for unique in table.constraints
        if isinstance(unique, UniqueConstraint)
    ]
    sets += [{column.name for column in index.columns} for index in table.indexes if index.unique]
    sets += [{column.name} for column in table.columns if column.unique]
    return [names for names in sets if names]


def _type_word(type_: TypeEngine[object]) -> str:
    # A project's own TypeDecorator (UTC datetimes, enums as strings) is shown as what it
    # stores; SQLAlchemy's own decorators (Interval, PickleType) keep their names.
    while isinstance(type_, TypeDecorator) and not type(type_).__module__.startswith("sqlalchemy."):
        type_ = type_.impl_instance
    try:
        generic = type_.as_generic()
    except NotImplementedError:
        generic = type_
    word: str = generic.__visit_name__
    if word == "type_decorator":
        word = type(generic).__name__
    word = re.sub(r"[^A-Za-z0-9_]", "_", word.lower())
    return word if _IDENTIFIER.fullmatch(word) else f"type_{word}"


def _comment(column: Column[object]) -> str:
    notes = []
    if not column.nullable and not column.primary_key:
        notes.append("not null")
    values = _enum_values(column.type)
    if values:
        notes.append("one of: " + ", ".join(values))
    # Mermaid ends a comment at the next double quote.
    return ", ".join(notes).replace('"', "'")


def _enum_values(type_: TypeEngine[object]) -> list[str]:
    enums = getattr(type_, "enums", None)  # sqlalchemy.Enum
    if isinstance(enums, list):
        return [str(value) for value in enums]
    enum_class = getattr(type_, "enum_class", None)  # data.models.base.StrEnumType
    if isinstance(enum_class, type) and issubclass(enum_class, enum.Enum):
        return [str(member.value) for member in enum_class]
    return []


def _relationship(table: Table, constraint: ForeignKeyConstraint) -> str:
    columns = list(constraint.columns)
    parent = constraint.referred_table
    # A row whose key has a NULL in any column references nothing (SQL's MATCH SIMPLE).
    parent_side = "|o" if any(column.nullable for column in columns) else "||"
    # A child row per parent at most when the key's columns (or some of them) are unique.
    key = {column.name for column in columns}
    child_side = "o|" if any(names <= key for names in _unique_sets(table)) else "o{"
    label = ", ".join(column.name for column in columns)
    return (
        f"{_name(parent.name, parent.name)} {parent_side}--{child_side} "
        f'{_name(table.name, table.name)} : "{label}"'
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.authoring.er_diagram",
        description="Print the schema as a Mermaid ER diagram, or write or check a README's copy.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", metavar="README", type=Path, help="replace the diagram")
    action.add_argument("--check", metavar="README", type=Path, help="exit 1 if it is stale")
    args = parser.parse_args(argv)

    # Imported here: the models are only needed when the command runs.
    from data.models import Base

    block = fenced(Base.metadata)
    path: Path | None = args.write or args.check
    if path is None:
        sys.stdout.write(block)
        return 0
    try:
        # Bytes in, bytes out: the rest of the README keeps its exact line endings.
        text = path.read_bytes().decode("utf-8")
        if args.check:
            if readme_block(text, str(path)) != block:
                print(
                    f"{path}: the ER diagram differs from the models; run {WRITE_COMMAND} {path}",
                    file=sys.stderr,
                )
                return 1
            return 0
        updated = with_block(text, block, str(path))
    except (OSError, DiagramError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if updated != text:
        path.write_bytes(updated.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
