"""The whole-file integrity check, run after start: off the upgrade's critical path."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from data.db.outcome import IntegrityReport
from data.migration.backends import backend_for


def check_whole_database(engine: Engine) -> IntegrityReport:
    """Every page of the database behind ``engine`` checked, writing nothing.

    On SQLite, ``PRAGMA quick_check`` over the whole file (about 10 ms per MB, through a
    reading connection that never holds up a writer in WAL mode); damage comes back with
    the last backup that passes the same check. A server checks its own pages.
    """
    started = time.perf_counter()
    report = backend_for(engine).check_whole()
    report.seconds = time.perf_counter() - started
    return report
