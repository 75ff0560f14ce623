"""The schema as PostgreSQL stores it (read from pg_catalog), in the shape of schema.Snapshot.

Read through pg_catalog, not information_schema: the latter lists NOT NULL as CHECK
constraints whose OID-based names differ from one database to the next.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from sqlalchemy import Connection, MetaData

from data.migration.schema import Snapshot

# Everything is read in current_schema(): the first schema of the search path, where the
# app's unqualified tables live (and where a scratch schema is put while it is read).
_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_INDEXES = """
SELECT t.relname, i.relname, ix.indisunique, ix.indisprimary, pg_get_indexdef(ix.indexrelid)
FROM pg_catalog.pg_index ix
JOIN pg_catalog.pg_class i ON i.oid = ix.indexrelid
JOIN pg_catalog.pg_class t ON t.oid = ix.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND t.relkind IN ('r', 'p')
ORDER BY t.relname, i.relname
"""

_CONSTRAINTS = """
SELECT t.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND k.contype IN ('p', 'u', 'f', 'c')
ORDER BY t.relname, k.conname
"""

_TABLES = """
SELECT c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""


def pg_tables(connection: Connection) -> frozenset[str]:
    """The tables of the current schema."""
    return frozenset(row[0] for row in connection.exec_driver_sql(_TABLES))


def pg_snapshot(connection: Connection, *, exclude: frozenset[str] = frozenset()) -> Snapshot:
    """Columns, indexes and constraints (p, u, f, c) of every table in the current schema."""
    snapshot: Snapshot = {}

    def table(name: str) -> dict[str, dict[str, str]]:
        return snapshot.setdefault(name, {"columns": {}, "indexes": {}, "constraints": {}})

    for name, column, type_, notnull, default, identity, generated in connection.exec_driver_sql(
        _COLUMNS
    ):
        if name in exclude:
            continue
        text = f"type={type_} notnull={bool(notnull)} default={default}"
        if identity:
            text += f" identity={identity}"
        if generated:
            text += f" generated={generated}"
        table(name)["columns"][column] = text
    for name, index, unique, primary, definition in connection.exec_driver_sql(_INDEXES):
        if name in exclude:
            continue
        # pg_get_indexdef always qualifies the table with its schema: keep only the method,
        # the keys and any predicate, which say what the index is.
        _, _, shape = str(definition).partition(" USING ")
        table(name)["indexes"][index] = f"{shape} unique={bool(unique)} primary={bool(primary)}"
    for name, constraint, _kind, definition in connection.exec_driver_sql(_CONSTRAINTS):
        if name in exclude:
            continue
        table(name)["constraints"][constraint] = str(definition)
    return snapshot


@contextlib.contextmanager
def scratch_schema(connection: Connection) -> Iterator[None]:
    """A throw-away schema, first on the search path, inside a savepoint that is rolled back.

    Unqualified DDL (``create_all``, Alembic's revisions) lands there, and pg_snapshot reads
    it with the same search path, so its definitions render exactly like the live schema's.
    """
    name = f"inklink_scratch_{secrets.token_hex(6)}"
    savepoint = connection.begin_nested()
    try:
        connection.exec_driver_sql(f"CREATE SCHEMA {name}")
        # SET LOCAL is undone by the rollback to the savepoint below, like the schema.
        connection.exec_driver_sql(f"SET LOCAL search_path TO {name}")
        yield
    finally:
        savepoint.rollback()


def pg_metadata_snapshot(connection: Connection, metadata: MetaData) -> Snapshot:
    """What ``create_all`` of ``metadata`` stores on this server, built and then rolled back."""
    from data.migration import guards

    with scratch_schema(connection):
        metadata.create_all(connection)
        guards.sync(connection)
        return pg_snapshot(connection)
