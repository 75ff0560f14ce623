"""The integrity of what an upgrade touches, checked on the file as it was, beside the upgrade.

In WAL mode a reader sees the last commit, which is the state before the upgrade until it
commits. Each table the upgrade is about to change (the migration transaction's authorizer
names it before the statement runs) is checked there with ``PRAGMA quick_check(table)``, the
check the runner used to make on the whole file before writing, now on what the upgrade
touches only, in a thread of its own while the upgrade works on its connection (SQLite
releases the GIL). Before commit the runner waits for it: damage found refuses the upgrade.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable
from pathlib import Path

from data.db.keys import DatabaseKey
from data.db.policy import busy_timeout_seconds
from data.migration import raw_sqlite
from data.migration.sqlite_file import SCHEMA_TABLE, integrity_problems


class PriorStateCheck:
    """A reader thread checking, table by table, the database as it was before the upgrade."""

    def __init__(
        self, path: Path, existing: Iterable[str], *, key: DatabaseKey | None = None
    ) -> None:
        self.path = path
        self.key = key.pragma() if key else None  # an encrypted file's reader is keyed
        self.existing = {*existing, SCHEMA_TABLE}
        self.problems: list[str] = []
        self.checked: set[str] = set()
        self.error: BaseException | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._connection: raw_sqlite.Connection | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inklink-prior-check", daemon=True)
        self._thread.start()
        self.touch(SCHEMA_TABLE)

    def touch(self, table: str) -> None:
        """Check ``table`` as it was (a table made by the upgrade itself has no past)."""
        if table in self.existing:
            self._queue.put(table)

    def _run(self) -> None:
        try:
            connection = raw_sqlite.connect(self.path, timeout=busy_timeout_seconds(), key=self.key)
        except BaseException as exc:
            self.error = exc
            self._opened.set()
            return
        self._connection = connection
        self._opened.set()
        try:
            connection.execute("PRAGMA query_only = ON")
            while (table := self._queue.get()) is not None:
                if table in self.checked:
                    continue
                self.checked.add(table)
                try:
                    found = integrity_problems(connection, table)
                except raw_sqlite.DATABASE_ERRORS as exc:
                    if raw_sqlite.is_busy(exc) or "interrupt" in str(exc):
                        raise
                    found = [str(exc)]  # "database disk image is malformed"
                self.problems.extend(f"{table}: {problem}" for problem in found)
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    def finish(self, tables: Iterable[str]) -> list[str]:
        """Check ``tables`` too, wait for every check, and return what was found."""
        for table in tables:
            self.touch(table)
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.problems

    def stop(self) -> None:
        """Abandon the checks (the upgrade failed): interrupt the reader and wait for it."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        self._opened.wait()
        if self._connection is not None:
            # The reader may have just finished and closed its connection: nothing to stop.
            with contextlib.suppress(*raw_sqlite.DRIVER_ERRORS):
                self._connection.interrupt()
        self._thread.join()
