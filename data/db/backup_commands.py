"""``inklink-db backup [--if-due] | list-backups | restore BACKUP``: backups from a terminal.

The functions and argument builders ``data/db/__main__.py``'s ``COMMANDS`` table registers.

For a system scheduler (cron, Task Scheduler, launchd) as much as for a person. The second
place is ``INKLINK_BACKUP_DIR`` or ``--to``. Exit codes: 0 done (a verified backup made or
still current, nothing due, a restore at head); 1 a backup was made here but something
needs attention (the second place is missing or full, or a copy failed its check);
2 refused or nothing made (the message says why; what it names was not changed);
64 the command line is wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

OK, ATTENTION, REFUSED = 0, 1, 2


def _target() -> tuple[Path, object]:
    from data.db.session import DB_PATH, engine

    return Path(DB_PATH), (None if engine.dialect.name == "sqlite" else engine)


def backup(args: argparse.Namespace) -> int:
    """Make a verified backup now, or with ``--if-due`` only when one is due."""
    from data.db.backups import backup_if_due

    # What went wrong is in the report printed below: not a second time by the log.
    logging.getLogger("data.db.backups").addHandler(logging.NullHandler())
    db_path, engine = _target()
    report = backup_if_due(
        db_path,
        engine=engine,  # type: ignore[arg-type]
        second_place=args.to,
        force=not args.if_due,
        # A scheduler has no app to report to: the copy is verified before the exit code.
        wait=True,
    )
    if report.due and report.made is None:
        print(report.describe(), file=sys.stderr)
        return REFUSED
    print(report.describe())
    return OK if report.ok else ATTENTION


def list_backups(args: argparse.Namespace) -> int:
    """Every backup beside the database and in the second place, newest first."""
    from data.db.backups import list_backups_everywhere, unverified_everywhere

    db_path, engine = _target()
    listed = list_backups_everywhere(db_path, engine=engine, second_place=args.to)  # type: ignore[arg-type]
    for waiting in unverified_everywhere(db_path, engine=engine):  # type: ignore[arg-type]
        print(f"not verified yet (not a backup until it is): {waiting}")
    if not listed:
        print(f"No backups of {db_path} yet.")
        return OK
    print("made (UTC)\tplace\tkind\trevision\tsize\trows\tpath")
    for backup in listed:
        rows = (
            ", ".join(f"{table} {count}" for table, count in sorted(backup.rows.items()))
            if backup.rows is not None
            else "not counted"
        )
        print(
            f"{backup.made_at[:19].replace('T', ' ')}\t{backup.place}\t{backup.kind}\t"
            f"{backup.revision or 'none'}\t{backup.size:,} bytes\t{rows}\t{backup.path}"
            + (f"\t(a copy of {backup.of})" if backup.of else "")
        )
    return OK


def restore(args: argparse.Namespace) -> int:
    """Put a backup back (also when the database is gone), then bring it to head."""
    from data.db.backups import restore_and_upgrade

    db_path, engine = _target()
    if engine is not None:
        print(
            "restore puts a backup back into a SQLite file; to put a copy on the server, "
            "unset DATABASE_URL, restore, then `python -m data.db move-to URL`.",
            file=sys.stderr,
        )
        return REFUSED
    outcome = restore_and_upgrade(
        args.backup, db_path, second_place=args.to, set_aside_unreadable=args.set_aside_unreadable
    )
    print(outcome.describe())
    return OK


def backup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--if-due",
        action="store_true",
        help="only when the newest backup is older than the schedule allows (for a scheduler)",
    )
    _second_place_argument(parser)


def list_arguments(parser: argparse.ArgumentParser) -> None:
    _second_place_argument(parser)


def restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "backup",
        metavar="BACKUP",
        help="a path or name as list-backups shows it, 'latest', or a date (2026-12-01)",
    )
    parser.add_argument(
        "--set-aside-unreadable",
        action="store_true",
        help="the database file looks encrypted and no key here opens it (its first page "
        "damaged, or its key lost): rename it aside as it is and restore; close every "
        "InkLinkOS window first",
    )
    _second_place_argument(parser)


def _second_place_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--to",
        "--second-place",
        dest="to",
        metavar="FOLDER",
        default=None,
        help="the second place (default: INKLINK_BACKUP_DIR)",
    )
