"""The verified copy of a studio's rows from one database into another at the same head.

Used by ``move-to`` (a SQLite file into a PostgreSQL server) and ``export`` (any database
into a new SQLite file). The caller opens both transactions (a read transaction on the
source, one write transaction on the target) and holds the locks; this module copies every
table of the models, parents first, and before the caller commits proves the copy equal:

- row counts, and a hash of every row *as the models read it* on both sides (values through
  the models' column types, so a datetime is compared as the UTC moment it means, never as
  text, whatever the server's time zone);
- each client's payments: count and sum of ``amount_cents`` per client and kind, tallied
  from the rows as they are copied and asked of the target with SQL.

Rows are streamed in batches (memory stays flat in the number of rows). Into PostgreSQL
they go through psycopg's binary ``COPY``, converted by the models' column types; into SQLite
through the models' INSERT. The target is read back the same way before commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.pool import NullPool

from data.db.errors import CopyMismatchError, TargetNotEmptyError
from data.db.outcome import CopyProgress, ProgressCallback
from data.db.policy import busy_timeout_ms
from data.migration import raw_sqlite
from data.migration.guards import quote_identifier

if TYPE_CHECKING:
    from data.db.keys import DatabaseKey

# Rows fetched, converted and written per step: large enough that the per-batch costs vanish,
# small enough that memory stays flat (a few MB) whatever the table's size.
BATCH_ROWS = 5_000


def studio_tables() -> list[Table]:
    """Every table of the models, parents before the tables that refer to them."""
    import data.models  # noqa: F401 (completes Base.metadata)
    from data.models.base import Base

    return list(Base.metadata.sorted_tables)


# --- the rows' hash --------------------------------------------------------------------------


@dataclass(frozen=True)
class TableDigest:
    """A table's row count and the sum of its rows' hashes (order does not matter)."""

    rows: int
    digest: int


class RowHasher:
    """Sums the hashes of rows as the models read them.

    A row is the tuple of its values after the models' result processing: a datetime is
    the aware UTC moment (so one stored as other text, or shifted by a time zone, hashes
    differently), an enum its member, text its characters. Both sides are hashed in the
    same process, so Python's own hash of the tuple serves, computed in C.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.digest = 0

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        self.digest += sum(map(hash, map(tuple, rows)))
        self.rows += len(rows)

    def result(self) -> TableDigest:
        return TableDigest(self.rows, self.digest)


def read_digest(connection: Connection, table: Table) -> TableDigest:
    """``table``'s digest in the database behind ``connection``, streamed through the models."""
    hasher = RowHasher()
    result = connection.execution_options(yield_per=BATCH_ROWS).execute(select(*table.columns))
    for batch in result.partitions():
        hasher.add(batch)
    return hasher.result()


# --- payments per client ---------------------------------------------------------------------


def _payments_table() -> Table:
    from data.models import Transaction

    table = Transaction.__table__
    assert isinstance(table, Table)
    return table


class PaymentTally:
    """The same totals, counted from the rows as they are copied (no second read)."""

    def __init__(self, table: Table) -> None:
        names = [column.name for column in table.columns]
        self.client, self.kind, self.amount = (
            names.index("client_id"),
            names.index("kind"),
            names.index("amount_cents"),
        )
        self.totals: dict[tuple[Any, ...], tuple[int, int]] = {}

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        totals = self.totals
        client, kind, amount = self.client, self.kind, self.amount
        for row in rows:
            key = (row[client], row[kind])
            count, total = totals.get(key, (0, 0))
            totals[key] = (count + 1, total + row[amount])


def payment_totals(connection: Connection) -> dict[tuple[Any, ...], tuple[int, int]]:
    """(client, kind) -> (payments, sum of amount_cents), as the models read them."""
    table = _payments_table()
    query = select(
        table.c.client_id, table.c.kind, func.count(), func.sum(table.c.amount_cents)
    ).group_by(table.c.client_id, table.c.kind)
    return {(row[0], row[1]): (int(row[2]), int(row[3])) for row in connection.execute(query)}


# --- writing ---------------------------------------------------------------------------------


def _converters(connection: Connection, table: Table) -> list[Callable[[Any], Any] | None]:
    """Each column's conversion to what the driver is given, by the models' own types."""
    return [column.type.bind_processor(connection.dialect) for column in table.columns]


class _Writer:
    """Writes batches of rows (as the models read them) into one table of the target."""

    def __init__(self, connection: Connection, table: Table) -> None:
        self.connection = connection
        self.table = table

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        keys = [column.key for column in self.table.columns]
        self.connection.execute(
            self.table.insert(), [dict(zip(keys, row, strict=True)) for row in rows]
        )


class _CopyWriter(_Writer):
    """PostgreSQL: one ``COPY ... FROM STDIN`` per table, in the caller's transaction, each
    value converted by its column's type (UTC datetimes, enum values) before psycopg sends it."""

    def __enter__(self) -> _Writer:
        driver = self.connection.connection.driver_connection
        assert driver is not None
        columns = ", ".join(quote_identifier(column.name) for column in self.table.columns)
        # The column types as the server has them, for a binary COPY: the server parses no
        # text (a timestamp in text costs it more than the row's other values together).
        oids: dict[str, int] = dict(
            self.connection.exec_driver_sql(
                "SELECT attname, atttypid::int FROM pg_catalog.pg_attribute "
                "WHERE attrelid = %(table)s::regclass AND attnum > 0 AND NOT attisdropped",
                {"table": quote_identifier(self.table.name)},
            ).all()
        )
        self._cursor = driver.cursor()
        self._copy_context = self._cursor.copy(
            f"COPY {quote_identifier(self.table.name)} ({columns}) FROM STDIN (FORMAT BINARY)"
        )
        self._copy = self._copy_context.__enter__()
        self._copy.set_types([oids[column.name] for column in self.table.columns])
        converters = _converters(self.connection, self.table)
        self._converters = [(i, c) for i, c in enumerate(converters) if c is not None]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._copy_context.__exit__(*exc)
        finally:
            self._cursor.close()

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        # Column by column: each conversion runs as one map() over the batch.
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for index, convert in self._converters:
            columns[index] = list(map(convert, columns[index]))
        write_row = self._copy.write_row
        for values in zip(*columns, strict=True):
            write_row(values)


def _writer(connection: Connection, table: Table) -> _Writer:
    if connection.dialect.name == "postgresql":
        return _CopyWriter(connection, table)
    return _Writer(connection, table)


def reset_sequences(connection: Connection, tables: Sequence[Table]) -> list[str]:
    """After rows were written with their ids: every sequence behind a column of ``tables``
    continues after the highest value (a sequence never goes back below a copied id)."""
    if connection.dialect.name != "postgresql":
        return []  # SQLite's next rowid is the highest one plus one
    reset = []
    for table in tables:
        for column in table.columns:
            sequence = connection.exec_driver_sql(
                "SELECT pg_get_serial_sequence(%(table)s, %(column)s)",
                {"table": quote_identifier(table.name), "column": column.name},
            ).scalar()
            if sequence is None:
                continue
            quoted = quote_identifier(column.name)
            connection.exec_driver_sql(
                f"SELECT setval(%(sequence)s, coalesce(max({quoted}), 1), "
                f"max({quoted}) IS NOT NULL) FROM {quote_identifier(table.name)}",
                {"sequence": sequence},
            )
            reset.append(str(sequence))
    return reset


# --- the copy --------------------------------------------------------------------------------


def refuse_rows_in_target(connection: Connection, display: str, tables: Sequence[Table]) -> None:
    """A copy goes only into a database with no studio rows: it never merges."""
    held = {}
    for table in tables:
        count = connection.execute(select(func.count()).select_from(table)).scalar_one()
        if count:
            held[table.name] = int(count)
    if held:
        listed = ", ".join(f"{name} {count:,}" for name, count in held.items())
        raise TargetNotEmptyError(
            display,
            f"it already holds studio rows ({listed}); a copy never merges into existing rows",
            "Name a new, empty database (for example: createdb inklink_studio), or empty this "
            "one if its rows are not needed. Nothing was changed on either side.",
        )


def copy_rows(
    source: Connection,
    target: Connection,
    *,
    revision: str,
    target_display: str,
    progress: ProgressCallback | None = None,
) -> dict[str, int]:
    """Copy every studio table from ``source`` into ``target`` (both in open transactions,
    at ``revision``), reset the target's sequences, and verify; returns rows per table.

    Raises ``CopyMismatchError`` when the target differs from the source: the caller rolls
    the target back.
    """
    tables = studio_tables()
    counts = {
        table.name: int(source.execute(select(func.count()).select_from(table)).scalar_one())
        for table in tables
    }
    grand_total = sum(counts.values())
    done = 0
    source_digests: dict[str, TableDigest] = {}
    payments = _payments_table()
    tally = PaymentTally(payments)
    for number, table in enumerate(tables, 1):
        hasher = RowHasher()

        def report(
            done: int, table: Table = table, number: int = number, hasher: RowHasher = hasher
        ) -> None:
            if progress is not None:
                progress(
                    CopyProgress(
                        revision,
                        table.name,
                        hasher.rows,
                        counts[table.name],
                        number,
                        len(tables),
                        done,
                        grand_total,
                    )
                )

        report(done)
        order = list(table.primary_key.columns) or list(table.columns)
        result = source.execution_options(yield_per=BATCH_ROWS).execute(
            select(*table.columns).order_by(*order)
        )
        with _writer(target, table) as writer:
            for batch in result.partitions():
                writer.write(batch)
                hasher.add(batch)
                if table is payments:
                    tally.add(batch)
                done += len(batch)
                report(done)
        source_digests[table.name] = hasher.result()
    reset_sequences(target, tables)
    _verify(target, tables, counts, source_digests, tally.totals, target_display)
    return {name: digest.rows for name, digest in source_digests.items()}


def _verify(
    target: Connection,
    tables: Sequence[Table],
    counts: dict[str, int],
    source_digests: dict[str, TableDigest],
    before: dict[tuple[Any, ...], tuple[int, int]],
    display: str,
) -> None:
    problems: list[str] = []
    if target.dialect.name == "sqlite":
        broken = target.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        problems.extend(f"{row[0]} row {row[1]} points at a missing {row[2]} row" for row in broken)
    for table in tables:
        read = source_digests[table.name]
        written = read_digest(target, table)
        if read.rows != counts[table.name]:
            problems.append(
                f"{table.name}: the source counts {counts[table.name]:,} rows, "
                f"{read.rows:,} were read"
            )
        if written.rows != read.rows:
            problems.append(f"{table.name}: {read.rows:,} rows read, {written.rows:,} in the copy")
        elif written.digest != read.digest:
            problems.append(f"{table.name}: the copied rows differ from the source's (row hash)")
    after = payment_totals(target)
    if before != after:
        differing = sorted(
            {key[0] for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
        )
        shown = ", ".join(str(client) for client in differing[:10])
        more = f" and {len(differing) - 10} more" if len(differing) > 10 else ""
        problems.append(f"payment totals differ for client(s) {shown}{more}")
    if problems:
        raise CopyMismatchError(
            display,
            "the copy did not match its source before commit:\n  - "
            + "\n  - ".join(problems)
            + "\n",
            "The copy was rolled back whole: nothing was written here, and the source was not "
            "changed. Report this message to support.",
        )


# --- plain SQLite files, opened through the one raw opener ------------------------------------


def sqlite_reader(path: Path, key: DatabaseKey | None = None) -> Engine:
    """An engine whose transactions read ``path`` as one consistent snapshot and cannot write
    (``PRAGMA query_only``; a deferred ``BEGIN`` that never waits for a writer in WAL mode).

    An encrypted file is read with its ``key`` (through SQLCipher, as every raw open of it).
    """
    return _raw_engine(
        path,
        key.pragma() if key is not None else None,
        # Nothing this engine runs can change the file, whatever a bug might send.
        pragmas=("PRAGMA query_only = ON",),
        begin="BEGIN",
    )


def sqlite_writer(path: Path) -> Engine:
    """An engine whose transactions write ``path`` with its rules on: foreign keys checked on
    every insert, the write lock taken at ``BEGIN IMMEDIATE``."""
    return _raw_engine(path, None, pragmas=("PRAGMA foreign_keys = ON",), begin="BEGIN IMMEDIATE")


def _raw_engine(
    path: Path, key_pragma: str | None, *, pragmas: tuple[str, ...], begin: str
) -> Engine:
    """An engine on ``path`` through the one raw opener: each connection waits for locks as
    the app does and runs ``pragmas``; each transaction starts with ``begin``."""
    engine = create_engine(
        "sqlite://", creator=lambda: raw_sqlite.connect(path, key=key_pragma), poolclass=NullPool
    )
    timeout_ms = busy_timeout_ms()

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        for pragma in pragmas:
            dbapi_connection.execute(pragma)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine
