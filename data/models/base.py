"""Declarative base: the constraint naming convention and the portable column types."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from sqlalchemy import DateTime, Dialect, Integer, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, mapped_column

# Every constraint gets a deterministic name, so a migration can drop or alter it by name
# on SQLite (batch mode) and PostgreSQL alike.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite's DATETIME keeps no offset, so values are converted to UTC before they are
    written and read back with ``tzinfo=UTC``. A naive datetime is refused: its meaning
    (local time? UTC?) cannot be known, and guessing corrupts a studio's appointments.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} refused: pass a timezone-aware value, "
                "for example datetime.now(UTC)"
            )
        utc = value.astimezone(dt.UTC)
        # SQLite stores text: one offset-free UTC form keeps comparisons and sorting right.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        general = super().bind_processor(dialect)
        if dialect.name == "sqlite" or general is None:
            return general
        utc = dt.UTC
        datetime = dt.datetime

        def process(value: Any) -> Any:
            # A server takes the aware value itself: one already in UTC (every value the
            # models read back) is what process_bind_param would return, unchanged.
            if value.__class__ is datetime and value.tzinfo is utc:
                return value
            return general(value)

        return process

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        # psycopg answers in the session's time zone: convert, do not just relabel.
        return value.astimezone(dt.UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # SQLite hands back text: parse and label it in one step (a history of a hundred
        # payments reads hundreds of these, and the generic two-step chain doubles the cost).
        parse = dt.datetime.fromisoformat
        utc = dt.UTC

        def process(value: Any) -> dt.datetime | None:
            if value is None:
                return None
            try:
                # Stored offset-free in UTC: parsing with the offset attached is ~8x faster
                # than datetime.replace(tzinfo=...) afterwards.
                parsed = parse(value + "+00:00")
            except ValueError:  # written by something else, with an offset of its own
                parsed = parse(value)
            if parsed.tzinfo is None:  # a bare date ignores the attached offset
                return parsed.replace(tzinfo=utc)
            return parsed if parsed.tzinfo is utc else parsed.astimezone(utc)

        return process


class StrEnumType(TypeDecorator[Any]):
    """A Python enum stored as its lower-case string value.

    The allowed values are enforced by a named CHECK declared on the table, which
    revisions spell out explicitly; this type only converts.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum_class: type[enum.Enum], length: int = 20) -> None:
        super().__init__(length=length)
        self.enum_class = enum_class

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return str(self.enum_class(value).value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return self.enum_class(value)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        general = super().bind_processor(dialect)
        if general is None:
            return None
        # A member (or its value) -> the value stored, by a dict lookup in C; anything else
        # (NULL, an unknown value, which raises) goes the general way.
        stored = {}
        for member in self.enum_class:
            stored[member] = stored[member.value] = general(member)
        fallback = general

        def process(value: Any) -> Any:
            try:
                return stored[value]
            except (KeyError, TypeError):
                return fallback(value)

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        # A dict lookup in C for every known value; NULL and unknown values fall through to
        # __missing__, where an unknown one raises as Enum(value) would.
        return _MemberLookup(self.enum_class).__getitem__


class _MemberLookup(dict[Any, Any]):
    """Stored value -> enum member."""

    def __init__(self, enum_class: type[enum.Enum]) -> None:
        super().__init__(enum_class._value2member_map_)
        self.enum_class = enum_class

    def __missing__(self, value: Any) -> Any:
        return None if value is None else self.enum_class(value)


def rule(sentence: str, *, parent: str | None = None) -> dict[str, str]:
    """A constraint's ``info``: the rule it enforces, as the sentence a refused write shows.

    ``sentence`` completes "The change was refused because ...". For a foreign key,
    ``parent`` is the sentence when the row referred to is what changed (deleted, or its
    key updated); ``sentence`` is for the row that refers. ``data.models.rules`` reads them.
    """
    info = {"rule": sentence}
    if parent is not None:
        info["parent_rule"] = parent
    return info


def noun(name: str) -> dict[str, dict[str, str]]:
    """A table's ``__table_args__`` entry: what one row is called in a sentence for people."""
    return {"info": {"noun": name}}


def enum_words(enum_class: type[enum.Enum]) -> str:
    """The values of ``enum_class`` as a sentence lists them: "a, b or c"."""
    values = [str(member.value).replace("_", " ") for member in enum_class]
    return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]


def enum_check(column: str, enum_class: type[enum.Enum]) -> str:
    """The SQL of a CHECK that limits ``column`` to the values of ``enum_class``."""
    values = ", ".join(f"'{member.value}'" for member in enum_class)
    return f"{column} IN ({values})"


intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
cents = Annotated[int, mapped_column(Integer)]
utc_datetime = Annotated[dt.datetime, mapped_column(UTCDateTime())]
str100 = Annotated[str, mapped_column(String(100))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime()}
