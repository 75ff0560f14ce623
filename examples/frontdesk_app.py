"""The smallest front-desk app: bring the database up to date at start, then use it.

Run it from a checkout (``python examples/frontdesk_app.py``), installed, or frozen with
PyInstaller (see the README's "Freezing the app"); it prints what it did, one fact a line.
"""

from __future__ import annotations

import sys

from sqlalchemy import func, select

from data.db.errors import DataLayerError
from data.db.outcome import BackupReport
from data.db.runner import RevisionProgress
from data.db.session import SessionLocal, backup_if_due, get_db_path, init_db, wait_for_backups
from data.models import Client


def show_progress(step: RevisionProgress) -> None:
    """A splash screen would move its bar here; one revision applied of ``step.total``."""
    print(f"progress: {step.number}/{step.total} {step.revision} {step.description}", flush=True)


def main() -> int:
    print(f"database: {get_db_path()}", flush=True)
    try:
        outcome = init_db(progress=show_progress)
    except DataLayerError as exc:
        # The message names the file, what was found and what to do: show it as it is.
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"outcome: {outcome.action}")
    print(f"revision: {outcome.to_revision}")
    if outcome.backup_path is not None:
        print(f"backup: {outcome.backup_path}")
    if outcome.recovery_key is not None:
        # A new encrypted database whose key went to the OS keyring: a real app shows this
        # once, in a dialog that asks the user to write it down.
        print(f"recovery key: {outcome.recovery_key}")
    print(f"summary: {outcome.describe()}")
    with SessionLocal() as db:
        clients = db.scalar(select(func.count()).select_from(Client))
    print(f"clients: {clients}")
    # At close (and at start), with no session open: a backup when one is due, beside the
    # database and in INKLINK_BACKUP_DIR. Cheap when none is; never raises. The copy is
    # verified in a background thread: on_done gets the final report (a real app hands it
    # to its UI thread), and at close wait_for_backups() lets the check finish.
    backup_if_due(on_done=show_backup)
    wait_for_backups(timeout=120)
    return 0


def show_backup(report: BackupReport) -> None:
    print(f"scheduled backup: {report.describe().splitlines()[0]}", flush=True)
    for warning in report.warnings:
        print(f"backup warning: {warning}", flush=True)  # a real app shows these to the user


if __name__ == "__main__":
    sys.exit(main())
