"""``python -m data.db`` (installed as ``inklink-db``): one command for the database's life.

Without a subcommand it says where the database is and at which revision (``make db``).
Each subcommand is one small function registered in ``COMMANDS``; ``--help`` on each.

The file's encryption has its subcommands in the same table (``encrypt``, ``rekey``,
``decrypt``, ``unlock``; ``data/db/key_commands.py``).

Exit codes: 0 done (or at head, or nothing found); 1 done, and the answer is "no" (not at
head, ``verify`` found problems, ``move-to --check`` found rows the server would refuse);
2 refused: the error's message (a ``DataLayerError``) is printed once, and what it names
was not changed (``decrypt --in-place`` not confirmed is refused too); 64 the command line
itself is wrong; 130 interrupted (a copy in progress is rolled back).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from data.db import backup_commands
from data.db.errors import DataLayerError

if TYPE_CHECKING:
    from data.db.outcome import RevisionProgress

OK, NO, REFUSED, USAGE, INTERRUPTED = 0, 1, 2, 64, 130


# --- the default: where, and at which revision ------------------------------------------------


def report_revision(_args: argparse.Namespace | None = None) -> int:
    """Where the database is and at which revision; 0 at head, 1 otherwise, 2 on a stale record."""
    from sqlalchemy.exc import DBAPIError

    from data.db.head import recorded_history
    from data.db.session import DB_PATH, engine

    where = DB_PATH if engine.dialect.name == "sqlite" else engine.url.render_as_string()
    history = recorded_history()
    if history.problem is not None:
        print(f"Database: {where}\nRevision: unknown: {history.problem}", file=sys.stderr)
        return REFUSED
    try:
        with engine.connect() as connection:
            versions = [
                row[0]
                for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            ]
    except DBAPIError as exc:
        print(f"Database: {where}\nRevision: none ({exc.orig})")
        return NO
    head = history.head
    print(f"Database: {where}\nRevision: {', '.join(versions) or 'none'} ({_state(versions)})")
    return OK if versions == [head] else NO


def _state(versions: list[str]) -> str:
    from data.db.head import recorded_history

    history = recorded_history()
    head = history.head
    if versions == [head]:
        return "head"
    if len(versions) == 1 and versions[0] in history.revisions:
        return f"behind; head is {head}"
    if versions:
        return f"ahead of this code, which knows revisions up to {head}: update this checkout"
    return f"no revision; head is {head}"


# --- what every subcommand shares -------------------------------------------------------------


def _db_path() -> Path:
    from data.db.session import DB_PATH

    return Path(DB_PATH)


def _server() -> bool:
    from data.db.session import engine

    return engine.dialect.name != "sqlite"


def _configured_engine() -> Any:
    """A short-lived engine on the configured database (``DATABASE_URL``, else ``DB_PATH``)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from data.db.session import DB_PATH, database_url

    return create_engine(database_url(DB_PATH), poolclass=NullPool)


def _file_only(what: str) -> None:
    from data.db.session import display_database

    if _server():
        raise DataLayerError(
            display_database(),
            f"{what} works on a SQLite file, and DATABASE_URL names a server",
            "Back up a server with its own tools (pg_dump), or take a portable copy with "
            "`python -m data.db export PATH`; unset DATABASE_URL to work on the file.",
        )


def _size(path: Path) -> int:
    total = 0
    for candidate in (path, Path(f"{path}-wal")):
        if candidate.is_file():
            total += candidate.stat().st_size
    return total


class ProgressDisplay:
    """A bar per table with rows per second on a terminal (tqdm); plain lines otherwise.

    Takes what ``init_db(progress=...)`` takes: one ``RevisionProgress`` (a ``CopyProgress``
    during a copy) at a time.
    """

    LINE_EVERY_SECONDS = 5.0

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.table: str | None = None
        self.bar: Any = None
        self.shown = 0
        self.started = 0.0
        self.last_line = 0.0

    def __call__(self, step: RevisionProgress) -> None:
        from data.db.outcome import CopyProgress

        if not isinstance(step, CopyProgress):
            print(f"revision {step.number} of {step.total}: {step.description}", file=self.stream)
            return
        if step.table != self.table:
            self.close()
            self.table, self.shown = step.table, 0
            self.started = self.last_line = time.monotonic()
            if self.terminal:
                from tqdm import tqdm  # type: ignore[import-untyped]

                self.bar = tqdm(
                    total=step.table_total,
                    desc=f"{step.table} ({step.table_number}/{step.tables})",
                    unit=" rows",
                    unit_scale=True,
                    file=self.stream,
                    dynamic_ncols=True,
                )
            else:
                self._line(step, "done" if step.table_total == 0 else "started")
        if self.bar is not None:
            self.bar.update(step.table_rows - self.shown)
        else:
            finished = step.table_rows == step.table_total
            due = time.monotonic() - self.last_line >= self.LINE_EVERY_SECONDS
            if (finished or due) and step.table_rows != self.shown:
                self._line(step, "done" if finished else "")
        self.shown = step.table_rows

    def _line(self, step: Any, state: str) -> None:
        self.last_line = now = time.monotonic()
        elapsed = now - self.started
        rate = step.table_rows / elapsed if elapsed > 0 else 0.0
        print(
            f"{time.strftime('%H:%M:%S')} {step.table} ({step.table_number}/{step.tables}): "
            f"{step.table_rows:,} of {step.table_total:,} rows, {rate:,.0f} rows/s"
            + (f", {state}" if state else ""),
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --- the subcommands ----------------------------------------------------------------------


def status(_args: argparse.Namespace) -> int:
    """Where the database is, its revision, size, journal mode, encryption and last backup."""
    from data.db.head import recorded_history
    from data.db.session import display_database

    if recorded_history().problem is not None:
        return report_revision()
    if _server():
        return _server_status(display_database())
    path = _db_path()
    print(f"Database: {path}")
    if not path.is_file():
        print("Revision: none (no file yet: the app's first start creates it)")
        return NO
    from data.db.move import check_file_opens
    from data.migration.transfer import sqlite_reader

    key = check_file_opens(path)  # refuses an encrypted file whose key is missing or wrong
    reader = sqlite_reader(path, key)
    try:
        with reader.connect() as connection, connection.begin():
            versions = [
                str(row[0])
                for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            ]
            journal = str(connection.exec_driver_sql("PRAGMA journal_mode").scalar())
    finally:
        reader.dispose()
    print(f"Revision: {', '.join(versions) or 'none'} ({_state(versions)})")
    print(f"Size: {_size(path):,} bytes (with its -wal)")
    print(f"Journal mode: {'wal' if journal.lower() == 'wal' else 'rollback journal'}")
    print(f"Encryption: {_encryption(key)}")
    from data.db.backups import list_backups_everywhere

    backups = list_backups_everywhere(path)  # both places, scheduled and before upgrades
    if backups:
        newest = backups[0]
        print(
            f"Last backup: {newest.path} (made {newest.made_at}, revision {newest.revision}, "
            f"{newest.place}; {len(backups)} kept)"
        )
    else:
        print("Last backup: none")
    return OK if versions == [recorded_history().head] else NO


def _encryption(key: Any) -> str:
    if key is None:
        return "none (a plain SQLite file: `inklink-db encrypt` encrypts it)"
    import os

    from data.db.keys import KEY_ENV

    source = KEY_ENV if os.environ.get(KEY_ENV, "").strip() else "this computer's keyring"
    return f"SQLCipher 4, 256-bit key (from {source})"


def _server_status(display: str) -> int:
    from data.db.head import recorded_history
    from data.db.session import engine

    print(f"Database: {display}")
    with engine.connect() as connection:
        versions = []
        if connection.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar():
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            versions = [str(row[0]) for row in rows]
        size = connection.exec_driver_sql(
            "SELECT pg_database_size(current_database())"
        ).scalar_one()
    print(f"Revision: {', '.join(versions) or 'none'} ({_state(versions)})")
    print(f"Size: {int(size):,} bytes (the server's database)")
    print("Journal mode: not applicable (a PostgreSQL server)")
    print("Encryption: the server's (TLS and disk encryption are set up on the server)")
    from data.db.backups import list_backups_everywhere

    copies = list_backups_everywhere(_db_path(), engine=engine)  # portable copies (issue 16)
    if copies:
        print(
            f"Last backup: {copies[0].path} (made {copies[0].made_at}, a portable SQLite copy, "
            f"{copies[0].place}; {len(copies)} kept)"
        )
    else:
        print("Last backup: none (`inklink-db backup` makes a portable copy; or pg_dump)")
    return OK if versions == [recorded_history().head] else NO


def verify(_args: argparse.Namespace) -> int:
    """Every page, foreign keys and the schema against the one its revision promises."""
    from data.db.session import check_database, display_database
    from data.db.verify import verify_database

    pages_checked = False
    if not _server():
        from data.db.errors import DatabaseCorruptError
        from data.db.move import check_file_opens

        # The check the app runs after start (every page, through a reader that never holds
        # up a save): a damaged file is reported with the way back, the last good backup.
        report = check_database()
        if report.status != "ok":
            # Not a database at all, or no key: refused (exit 2) with what to do. Damaged
            # pages: the report below names the last good backup.
            with contextlib.suppress(DatabaseCorruptError):
                check_file_opens(_db_path())
            if report.status == "damaged":
                print(report.describe(), file=sys.stderr)
                return NO
        pages_checked = report.status == "ok"
    engine = _configured_engine()
    try:
        problems = verify_database(engine, pages_checked=pages_checked)
    finally:
        engine.dispose()
    if problems:
        print(f"Database: {display_database()}: {len(problems)} problem(s):")
        for line in problems:
            print(f"  - {line}")
        return NO
    print(
        f"Database: {display_database()}: every page checked, no damage found; integrity, "
        "foreign keys and schema verified"
    )
    return OK


def move_to(args: argparse.Namespace) -> int:
    """Copy the SQLite file into a PostgreSQL database, verified before commit."""
    from data.db.move import check_file, move_to_server, server_url

    url = server_url(args.url)
    path = _db_path()
    if args.check:
        findings = check_file(path)
        for finding in findings:
            print(finding)
        if findings:
            print(
                f"{len(findings)} row(s) of {path} would be refused by the server; the move "
                "will not start until they are corrected.",
                file=sys.stderr,
            )
            return NO
        print(f"{path}: no row the server would refuse; ready to move.")
        return OK
    display = ProgressDisplay()
    try:
        outcome = move_to_server(path, url, progress=display)
    finally:
        display.close()
    print(outcome.describe())
    return OK


def export(args: argparse.Namespace) -> int:
    """Copy the database (a server's, or the file's) into a new plain SQLite file at head."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from data.db.move import export_database, server_url

    source = (
        create_engine(server_url(args.source), poolclass=NullPool)
        if args.source
        else _configured_engine()
    )
    display = ProgressDisplay()
    try:
        outcome = export_database(source, Path(args.path), progress=display)
    finally:
        display.close()
        source.dispose()
    print(outcome.describe())
    return OK


def encrypt(args: argparse.Namespace) -> int:
    """Encrypt the SQLite file in place, verified; print its recovery key once."""
    _file_only("encrypt")
    from data.db import key_commands

    return key_commands.encrypt(args)


def rekey(args: argparse.Namespace) -> int:
    """Give the encrypted file a new key; print the new recovery key once."""
    _file_only("rekey")
    from data.db import key_commands

    return key_commands.rekey(args)


def decrypt(args: argparse.Namespace) -> int:
    """A plain verified copy for support, or (--in-place, confirmed) the file made plain."""
    _file_only("decrypt")
    from data.db import key_commands

    return key_commands.decrypt(args)


def unlock(args: argparse.Namespace) -> int:
    """Read the recovery key; this computer's keyring keeps the file's key again."""
    _file_only("unlock")
    from data.db import key_commands

    return key_commands.unlock(args)


def _decrypt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, help="where the copy goes (must not exist)")
    parser.add_argument(
        "--in-place", action="store_true", help="replace the database itself (asks first)"
    )
    parser.add_argument("--yes", action="store_true", help="confirm --in-place without asking")


def _move_to_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", metavar="URL", help="the server's database: postgresql://user:password@host/db"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="dry run: list every row the server would refuse (table, id, rule); change nothing",
    )


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the new SQLite file (must not exist)")
    parser.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="a PostgreSQL database to export (default: DATABASE_URL, else the DB_PATH file)",
    )


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one line of help, its arguments, and what it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# One table: a new subcommand is one function and one line here.
COMMANDS: list[Command] = [
    Command(
        "status",
        "where, revision, size, journal mode, encryption, last backup",
        _no_arguments,
        status,
    ),
    # Backups (issue 16): data/db/backup_commands.py.
    Command(
        "backup",
        "a verified backup now, beside the database and in INKLINK_BACKUP_DIR; "
        "--if-due: only when one is due (for a scheduler)",
        backup_commands.backup_arguments,
        backup_commands.backup,
    ),
    Command(
        "list-backups",
        "the backups in both places, newest first: date, revision, size, rows",
        backup_commands.list_arguments,
        backup_commands.list_backups,
    ),
    Command(
        "restore",
        "restore a backup (also when the database is gone), then bring it to head",
        backup_commands.restore_arguments,
        backup_commands.restore,
    ),
    Command(
        "verify", "integrity, foreign keys, schema against its revision", _no_arguments, verify
    ),
    Command(
        "move-to",
        "copy the SQLite file into a PostgreSQL database, verified",
        _move_to_arguments,
        move_to,
    ),
    Command(
        "export",
        "copy the database into a new plain SQLite file, verified",
        _export_arguments,
        export,
    ),
    Command(
        "encrypt",
        "encrypt the SQLite file in place, verified (prints the recovery key once)",
        _no_arguments,
        encrypt,
    ),
    Command(
        "rekey",
        "give the encrypted file a new key (prints the new recovery key once)",
        _no_arguments,
        rekey,
    ),
    Command(
        "decrypt",
        "a plain verified copy for support; --in-place --yes makes the file itself plain",
        _decrypt_arguments,
        decrypt,
    ),
    Command(
        "unlock",
        "enter the recovery key (standard input or a hidden prompt); the keyring keeps it",
        _no_arguments,
        unlock,
    ),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="inklink-db",
        description="The InkLinkOS database: where it is, its backups, its checks, and moving "
        "it. Without a subcommand: where the database is and at which revision.",
        epilog="Exit codes: 0 done; 1 done, answer is no (not at head, problems found); "
        "2 refused (message printed, nothing changed); 64 wrong command line; 130 interrupted.",
    )
    subcommands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = getattr(args, "run", report_revision)
    try:
        return run(args)
    except DataLayerError as exc:
        print(exc, file=sys.stderr)
        return REFUSED
    except KeyboardInterrupt:
        print("interrupted: nothing was committed", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
