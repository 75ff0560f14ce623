"""What an upgrade touched in a SQLite file, so its checks cost what it changed.

Two records, both kept inside the migration's transaction: SQLite's authorizer names every
table a statement writes (``INSERT``, ``UPDATE``, ``DELETE``, ``DROP``; it is asked when a
statement is prepared, before any row moves), and ``sqlite_master`` read when the
transaction begins and again before it commits shows every table whose definition, root page
(a rebuild) or indexes changed. The checks before commit then run on those tables only:
``PRAGMA quick_check(table)`` on each table touched (with its indexes), and
``PRAGMA foreign_key_check(table)`` on each touched table and on every child of a table
whose rows may have gone or moved (written, rebuilt, dropped, or given other indexes). A
table that only gained a column keeps every row where it was: its children are not read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data.migration.schema import Query, quote_identifier

# Statement kinds whose first argument is the table whose rows they write. (An ALTER TABLE
# is seen in the catalog: a rename or a new column keeps every row where it was.)
_WRITES_ARG1 = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}
_WRITES_ARG1 |= {sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE}
_INDEX_ARG2 = {sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_DROP_INDEX}

# (type, name, tbl_name, rootpage, sql) of every schema object.
Catalog = dict[tuple[str, str], tuple[str, int, str | None]]


def catalog(query: Query) -> Catalog:
    return {
        (str(row[0]), str(row[1])): (str(row[2]), int(row[3] or 0), row[4])
        for row in query("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master")
    }


@dataclass
class Scope:
    """The tables checks must cover after an upgrade."""

    #: Tables whose pages the upgrade wrote or whose definition changed (existing now).
    integrity: list[str] = field(default_factory=list)
    #: Tables whose rows' references must be checked (the touched ones and their children).
    foreign_keys: list[str] = field(default_factory=list)


class Tracker:
    """Records what one migration transaction writes; installed on its driver connection."""

    def __init__(self) -> None:
        self.written: set[str] = set()
        self.reindexed: set[str] = set()
        self.before: Catalog | None = None
        #: Called with each table the first time a statement is about to change it (its
        #: rows, definition or indexes), before the statement runs.
        self.on_touch: Callable[[str], None] | None = None
        self._seen: set[str] = set()

    def authorize(self, action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
        if action in _WRITES_ARG1 and arg1:
            self.written.add(arg1)
            self._touch(arg1)
        elif action in _INDEX_ARG2 and arg2:
            self.reindexed.add(arg2)
            self._touch(arg2)
        elif action == sqlite3.SQLITE_ALTER_TABLE and arg2:
            self._touch(arg2)
        return sqlite3.SQLITE_OK

    def _touch(self, table: str) -> None:
        if table not in self._seen and self.on_touch is not None:
            self._seen.add(table)
            self.on_touch(table)

    def install(self, driver_connection: Any) -> None:
        driver_connection.set_authorizer(self.authorize)

    def start(self, query: Query) -> None:
        """Read the catalog as the transaction found it (call right after BEGIN)."""
        self.before = catalog(query)

    def tables_before(self) -> set[str]:
        return {name for (kind, name) in (self.before or {}) if kind == "table"}

    def scope(self, query: Query) -> Scope:
        """The tables to check, as the transaction leaves them."""
        after = catalog(query)
        before = self.before if self.before is not None else {}
        tables_now = {name for (kind, name) in after if kind == "table"}
        if self.before is None:  # nothing recorded: check everything
            everything = sorted(tables_now)
            return Scope(everything, everything)
        changed_definition: set[str] = set()
        moved = set(self.written) | set(self.reindexed)  # rows or keys may have gone
        for key in before.keys() | after.keys():
            old, new = before.get(key), after.get(key)
            if old == new:
                continue
            kind, name = key
            table = (new or old or ("", 0, None))[0]
            if kind == "table":
                if old is None or new is None or old[1] != new[1]:
                    moved.add(name)  # made, dropped, or rebuilt under the same name
                else:
                    changed_definition.add(name)  # e.g. a column added: rows stay put
            elif kind == "index":
                moved.add(table)  # the keys children may point at changed
            else:  # a trigger or view: what it writes is in `written` when it ran
                changed_definition.add(table)
        # The internal tables SQLite keeps are not checked by name.
        touched = {t for t in moved | changed_definition if not t.startswith("sqlite_")}
        integrity = sorted(t for t in touched if t in tables_now)
        children = {
            child
            for child in tables_now
            if any(parent in moved for parent in _parents(query, child))
        }
        foreign_keys = sorted((set(integrity) | children) & tables_now)
        return Scope(integrity, foreign_keys)


def _parents(query: Query, table: str) -> set[str]:
    rows = query(f"PRAGMA foreign_key_list({quote_identifier(table)})")
    return {str(row[2]) for row in rows}
