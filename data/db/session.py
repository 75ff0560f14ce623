"""Where the database lives, the app's engine, the session factories, and init_db()."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypedDict

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from data.db.file_modes import make_private_folder, tighten
from data.db.policy import apply_app_policy, apply_server_policy, read_only_options
from data.db.refusals import explain_refusals

if TYPE_CHECKING:
    import threading

    from data.db.outcome import (
        BackupCallback,
        BackupReport,
        IntegrityCallback,
        IntegrityReport,
        ProgressCallback,
        UpgradeOutcome,
    )
    from data.migration.schedule import BackupPolicy

APP_NAME = "InkLinkOS"
DB_FILENAME = "inklink.db"
DEV_DB_FILENAME = "dev.db"
# The files that ship beside the package only in a source checkout (not .git: an exported
# tree has none, and not anything site-packages could contain).
CHECKOUT_MARKERS = ("pyproject.toml", "alembic.ini", "migrations/env.py")

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class PlatformDirsArgs(TypedDict):
    appname: str
    appauthor: Literal[False]
    roaming: bool


# platformdirs' arguments for the per-user folder. No author level (the default repeats the
# app name on Windows), and the roaming profile: %APPDATA%\InkLinkOS, not %LOCALAPPDATA%.
USER_DATA_DIR_ARGS: Final[PlatformDirsArgs] = {
    "appname": APP_NAME,
    "appauthor": False,
    "roaming": True,
}


def user_data_dir() -> Path:
    """The per-user data directory of InkLinkOS on this platform (platformdirs decides)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(**USER_DATA_DIR_ARGS))


def is_source_checkout(root: Path = _PROJECT_ROOT) -> bool:
    return all((root / marker).is_file() for marker in CHECKOUT_MARKERS)


def _compute_db_path() -> str:
    """The database file, by the first rule that applies.

    1. ``DB_PATH`` in the environment; 2. a frozen (PyInstaller) app: the per-user data
    directory; 3. a source checkout: ``dev.db`` at the project root; 4. an installed
    package: the per-user data directory (never site-packages).
    """
    override = os.environ.get("DB_PATH")
    if override:
        return str(Path(override).expanduser().absolute())
    if getattr(sys, "frozen", False):
        return str(user_data_dir() / DB_FILENAME)
    if is_source_checkout():
        return str(_PROJECT_ROOT / DEV_DB_FILENAME)
    return str(user_data_dir() / DB_FILENAME)


def database_url(db_path: str) -> URL:
    """``DATABASE_URL`` when set (a server database), else the SQLite file ``db_path``."""
    server = os.environ.get("DATABASE_URL")
    if server:
        url = make_url(server)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        if not url.drivername.startswith("postgresql"):
            from data.db.errors import DatabaseURLError

            # A SQLite file is chosen by DB_PATH: the paths, lock, backups and checks all
            # follow DB_PATH, so a second way to name the file would bypass them.
            raise DatabaseURLError(
                url.render_as_string(hide_password=True),
                "DATABASE_URL is only for a PostgreSQL server (postgresql://...)",
                "Unset DATABASE_URL; to choose a SQLite file, set DB_PATH to its path.",
            )
        return url
    if _encrypted(db_path):
        from data.db.cipher import cipher_url

        return cipher_url(db_path)
    return URL.create("sqlite", database=db_path)


def in_user_data_dir() -> bool:
    """The database is the per-user one (rules 2 and 4): a studio's file, not a developer's
    ``dev.db`` nor a file named through ``DB_PATH``."""
    return not os.environ.get("DB_PATH") and (
        bool(getattr(sys, "frozen", False)) or not is_source_checkout()
    )


def _encrypted(db_path: str) -> bool:
    """Open ``db_path`` through SQLCipher: it is encrypted, or it is still to be created and
    new databases are (by default the studio's own file in the per-user folder is; see
    ``data.db.keys.new_database_encrypted``). A plain SQLite file always opens plain."""
    from data.db import keys

    try:
        size = os.stat(db_path).st_size
    except OSError:
        size = 0
    if size:
        return keys.looks_encrypted(db_path)
    return keys.new_database_encrypted(default=in_user_data_dir())


def create_app_engine(url: str | URL) -> Engine:
    """An engine under the app's connection policy (SQLite's; a server's answers in UTC), whose
    refused writes, busy waits and writes through a reading session raise errors for people."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        apply_app_policy(engine)
    elif engine.dialect.name == "postgresql":
        apply_server_policy(engine)
    explain_refusals(engine)
    return engine


def create_session_factory(bind: Engine, *, read_only: bool = False) -> scoped_session[Session]:
    """A thread-local session factory; objects stay readable after commit.

    The default makes writing sessions: on SQLite each transaction takes the write lock at
    its start (so a read-then-write never fails with "database is locked"), waiting up to
    ``INKLINK_BUSY_TIMEOUT`` for another window's write. ``read_only`` makes reading ones:
    they never wait for a writer, see the last committed state, and refuse any write with
    ``ReadOnlySessionError``.
    """
    if read_only:
        bind = bind.execution_options(**read_only_options(bind))
    return scoped_session(sessionmaker(bind=bind, expire_on_commit=False))


DB_PATH: str = _compute_db_path()
DATA_DIR: Path = Path(DB_PATH).parent

# The seed's one disk effect at import: make sure the database's folder exists, owner-only
# (0700) when made here. The per-user data folder is the app's own, so one found wider (made
# by an older version) is tightened too; a folder chosen through DB_PATH, or a checkout's
# root, may be shared on purpose and is left as it is (the files in it are owner-only).
# A failure here is reported by init_db(), which names the path and says what to do.
with contextlib.suppress(OSError):
    make_private_folder(DATA_DIR)
    if in_user_data_dir():
        tighten([DATA_DIR])

engine: Engine = create_app_engine(database_url(DB_PATH))
# What a user action uses: `with SessionLocal() as db, db.begin():`.
SessionLocal: scoped_session[Session] = create_session_factory(engine)
# For screens that only show data (lists, searches, reports): never waits for a writer.
ReadSessionLocal: scoped_session[Session] = create_session_factory(engine, read_only=True)


def init_db(progress: ProgressCallback | None = None) -> UpgradeOutcome:
    """Create the database or bring it to head; call once at every app start.

    Cheap when the database is already current (Alembic is not even imported). Otherwise
    the runner takes a lock, backs up, upgrades in one transaction and verifies; see
    ``data.migration.runner``. Raises only ``data.db.errors.DataLayerError``, whose message
    names the database and says what to do.
    """
    from data.db.fast_path import current_outcome

    outcome = current_outcome(engine, DB_PATH)
    if outcome is not None:
        return outcome
    try:
        # Imported only here: the migration engine (and Alembic) stay off the at-head path.
        from data.migration.runner import ensure_current

        return ensure_current(engine, progress)
    except Exception as exc:
        from data.db.errors import DataLayerError, unexpected

        if isinstance(exc, DataLayerError):
            raise
        # Every known state already has its own refusal; this is the net under them.
        raise unexpected(display_database(), exc) from exc


def backup_if_due(
    *,
    second_place: str | os.PathLike[str] | None = None,
    policy: BackupPolicy | None = None,
    on_done: BackupCallback | None = None,
    wait: bool = False,
) -> BackupReport:
    """Make a verified backup when the newest is older than the policy allows; call at
    start (after init_db()) and at close, when no session is open.

    Cheap when nothing is due (one small file read; the database is not opened). When one
    is due it returns once the copy is on disk; a daemon thread verifies it and only then
    counts it, copies it to ``second_place`` (default ``INKLINK_BACKUP_DIR``) and applies
    retention. ``on_done(report)`` gets the final report (from that thread: hand it to the
    UI thread); ``wait=True`` returns it instead. At close, ``wait_for_backups()``. Never
    raises: a second place missing or full, a copy that failed its check, or a backup that
    could not be made is in the report's ``warnings``. See ``data.db.backups``.
    """
    import time

    from data.db.backup_due import report_if_not_due

    not_due = report_if_not_due(
        DB_PATH,
        engine=engine,
        second_place_given=second_place,
        every_seconds=policy.every_seconds if policy is not None else None,
        now=time.time(),
        on_done=on_done,
    )
    if not_due is not None:  # the usual answer at start: data.db.backups is not imported
        return not_due
    from data.db.backups import backup_if_due as backup_when_due

    return backup_when_due(
        DB_PATH,
        engine=engine,
        second_place=second_place,
        policy=policy,
        on_done=on_done,
        wait=wait,
    )


def wait_for_backups(timeout: float | None = None) -> bool:
    """Wait (at close) for the backups this process is verifying; False on ``timeout``."""
    from data.db.backups import wait_for_backups as wait_for_them

    return wait_for_them(timeout)


def check_database() -> IntegrityReport:
    """Check every page of the database, writing nothing; call after start, not before.

    An upgrade checks only what it touched, so damage elsewhere in the file (a bad disk
    sector, a copy cut short) is found here: ``report.describe()`` says what was found and
    names the last backup that passes the same check, the way back. On SQLite it reads the
    whole file (about 10 ms per MB) through a reading connection, which in WAL mode never
    holds up a save. ``python -m data.db verify`` runs the same check.
    """
    from data.migration.runner import check_whole_database

    return check_whole_database(engine)


def check_database_in_background(on_done: IntegrityCallback) -> threading.Thread:
    """``check_database()`` in a daemon thread; ``on_done(report)`` is called from that
    thread when it ends (hand it to the UI thread to show a damaged report)."""
    import threading

    def run() -> None:
        try:
            report = check_database()
        except Exception as exc:  # the callback is called whatever happens
            from data.db.outcome import IntegrityReport

            report = IntegrityReport("not checked", display_database(), (str(exc),))
        on_done(report)

    worker = threading.Thread(target=run, name="inklink-integrity-check", daemon=True)
    worker.start()
    return worker


def display_database() -> str:
    """The database as messages name it: the file, or the server's URL (password masked)."""
    if engine.dialect.name == "sqlite":
        return DB_PATH
    return engine.url.render_as_string(hide_password=True)


def get_db_path() -> str:
    """The database file path."""
    return DB_PATH


def get_data_root() -> Path:
    """The folder holding the database, its lock and its backups."""
    return DATA_DIR
