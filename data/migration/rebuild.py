"""A SQLite table rebuild that SQLite can copy page by page, for revisions on big tables.

Alembic's batch mode copies with ``INSERT INTO tmp (a, b, ...) SELECT a, b, ... FROM t``: the
column list stops SQLite's transfer optimisation, so every row is decoded, checked and
re-encoded. ``INSERT INTO tmp SELECT * FROM t`` into an empty table with the same columns,
types, NOT NULLs and CHECKs (foreign keys off) lets SQLite copy the table's pages instead.
Revisions may use ``rebuild_table`` where batch mode would rebuild a large table; it keeps to
the standalone-revision rule by taking the new definition as SQL, never from the models.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection

from data.migration.schema import quote_identifier as _quote

_TEMP_PREFIX = "_rebuild_tmp_"
# The page cache (and so the sort runs) of the index builds: SQLite's default, 2000 KiB.
INDEX_BUILD_CACHE_SIZE = -2000


def _columns(connection: Connection, table: str) -> list[str]:
    return [
        str(row[1]) for row in connection.exec_driver_sql(f"PRAGMA table_info({_quote(table)})")
    ]


def _renamed(create_sql: str, table: str, new_name: str) -> str:
    """``create_sql`` (a CREATE TABLE for ``table``) creating ``new_name`` instead."""
    pattern = re.compile(
        r"^\s*CREATE\s+TABLE\s+(?:\""
        + re.escape(table)
        + r"\"|"
        + re.escape(table)
        + r")(?=[\s(])",
        re.IGNORECASE,
    )
    renamed, count = pattern.subn(f"CREATE TABLE {_quote(new_name)}", create_sql, count=1)
    if count != 1:
        raise ValueError(f"not a CREATE TABLE statement for {table}: {create_sql[:80]}")
    return renamed


def rebuild_table(connection: Connection, table: str, create_sql: str | None = None) -> None:
    """Rebuild ``table`` as ``create_sql`` (default: as it is), keeping its rows and indexes.

    Runs inside the caller's transaction, which must have foreign keys off (the runner's
    migration policy): with them on, dropping the old table would cascade or fail. Columns
    are copied by name; when the new table has the same columns in the same order the copy
    is ``SELECT *``, which SQLite turns into a page copy if the definitions are compatible.
    Indexes and triggers on the table are recreated as they were.
    """
    if connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            f"rebuilding {table} needs foreign keys off (run it under the migration runner)"
        )
    rows = connection.exec_driver_sql(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL",
        (table,),
    ).fetchall()
    table_sql = [str(sql) for kind, sql in rows if kind == "table"]
    if len(table_sql) != 1:
        raise ValueError(f"no table named {table}")
    dependents = [str(sql) for kind, sql in rows if kind in ("index", "trigger")]
    temp = _TEMP_PREFIX + table
    connection.exec_driver_sql(_renamed(create_sql or table_sql[0], table, temp))
    old_columns = _columns(connection, table)
    new_columns = _columns(connection, temp)
    if new_columns == old_columns:
        copy = f"INSERT INTO {_quote(temp)} SELECT * FROM {_quote(table)}"
    else:
        shared = ", ".join(_quote(name) for name in new_columns if name in old_columns)
        copy = f"INSERT INTO {_quote(temp)} ({shared}) SELECT {shared} FROM {_quote(table)}"
    connection.exec_driver_sql(copy)
    # This SQLite may be built with SECURE_DELETE (Debian's is): dropping the old table would
    # then zero every page it frees, writing the whole table once more into the WAL and again
    # at the checkpoint. When every old column is kept, its rows live on in the copy (and all
    # of it in the backup made before the upgrade), so the freed pages are left as they are;
    # deleted cells are still zeroed in place (FAST). A rebuild that drops a column (say,
    # health notes) keeps the connection's setting: those values must not linger in free
    # pages. The connection's own setting is put back right after.
    secure_delete = int(connection.exec_driver_sql("PRAGMA secure_delete").scalar_one())
    if set(old_columns) <= set(new_columns):
        connection.exec_driver_sql("PRAGMA secure_delete = FAST")
    try:
        connection.exec_driver_sql(f"DROP TABLE {_quote(table)}")
    finally:
        connection.exec_driver_sql(f"PRAGMA secure_delete = {secure_delete}")
    connection.exec_driver_sql(f"ALTER TABLE {_quote(temp)} RENAME TO {_quote(table)}")
    # An index build sorts in runs as large as the page cache. The runner's 16 MiB (kept for
    # the reference checks before commit) made the three indexes of a 1M-row table build in
    # about twice the time SQLite's default 2 MB does: small runs sort in the CPU's caches.
    cache_size = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    connection.exec_driver_sql(f"PRAGMA cache_size = {INDEX_BUILD_CACHE_SIZE}")
    try:
        for sql in dependents:
            connection.exec_driver_sql(sql)
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {cache_size}")
