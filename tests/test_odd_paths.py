"""Odd paths are refused at once, and a file this user cannot write is refused as such.

A FIFO, a socket, a device or a link to nothing at DB_PATH (or beside it as a side file) is
not a database: init_db() says so within a second instead of hanging on an open() or
passing a raw driver error. A database, side file or folder this user cannot write gives
DatabaseNotWritableError with advice that fits: never "damaged, restore a backup", which
after a foreign-owned side file would throw away committed rows.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from data.db.errors import DatabaseNotWritableError, NotADatabaseError
from tests.app_start import start_app, start_app_as, warm_up
from tests.conftest import PROJECT_ROOT, sha256, subprocess_env
from tests.file_kind import connect, is_encrypted, studio_key

# On a plain file and on an encrypted one (see conftest.file_kind).
pytestmark = pytest.mark.usefixtures("file_kind")

# "Within a second", with room for a loaded two-core machine; a hang fails at the timeout.
PROMPTLY_SECONDS = 5.0
# Words of the advice for a damaged file, wrong for a file that is only out of reach.
DAMAGE_WORDS = ("damaged", "restore the most recent backup", "corrupt")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder every user can traverse, with a path short enough for a Unix socket."""
    folder = Path(tempfile.mkdtemp(prefix="ink-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fifo(path: Path) -> Callable[[], None]:
    os.mkfifo(path)
    return lambda: None


def _socket(path: Path) -> Callable[[], None]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    return listener.close


def _dangling_link(path: Path) -> Callable[[], None]:
    path.symlink_to(path.with_name("moved-away.db"))
    return lambda: None


ODD_PATHS = {"fifo": _fifo, "socket": _socket, "dangling-symlink": _dangling_link}


def _assert_refused_promptly(report: dict[str, object], expected: type[Exception]) -> str:
    assert report.get("error") == expected.__name__, report
    assert report["data_layer"] is True, report
    assert isinstance(report["seconds"], float) and report["seconds"] < PROMPTLY_SECONDS, report
    message = str(report["message"])
    assert not any(word in message.lower() for word in DAMAGE_WORDS), message
    return message


@pytest.mark.parametrize("kind", sorted(ODD_PATHS))
def test_an_odd_path_is_refused_within_a_second(kind: str, short_dir: Path) -> None:
    db = short_dir / "inklink.db"
    close = ODD_PATHS[kind](db)
    try:
        report = start_app(db, timeout=30)
    finally:
        close()
    message = _assert_refused_promptly(report, NotADatabaseError)
    assert str(db) in message
    # Refused before the lock: nothing was made beside it.
    assert [p.name for p in short_dir.iterdir()] == [db.name]


def test_a_device_is_refused_within_a_second() -> None:
    report = start_app(Path(os.devnull), timeout=30)
    message = _assert_refused_promptly(report, NotADatabaseError)
    assert "device" in message
    assert not Path(os.devnull + ".lock").exists()


@pytest.mark.parametrize("suffix", ["-wal", "-journal"])
def test_a_fifo_as_a_side_file_is_refused_within_a_second(suffix: str, short_dir: Path) -> None:
    db = short_dir / "inklink.db"
    assert start_app(db)["action"] == "created"
    digest = sha256(db)
    os.mkfifo(str(db) + suffix)
    message = _assert_refused_promptly(start_app(db, timeout=30), NotADatabaseError)
    assert str(db) + suffix in message
    assert sha256(db) == digest


# --- files this user cannot write: checked as an unprivileged user --------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="dropping privileges needs root (CI runs as root)",
)
NOBODY = "nobody"


def _chown_to(user: str, *paths: Path) -> None:
    import pwd

    account = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, account.pw_uid, account.pw_gid)


def _studio_at_head(db: Path) -> None:
    report = start_app(db)
    assert report["action"] == "created", report
    # A few rows, through the app, so the file is a studio's and in WAL mode.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from data.db.session import SessionLocal\n"
            "from data.models import Client\n"
            "with SessionLocal() as db, db.begin():\n"
            "    db.add_all([Client(first_name='A', last_name=str(i)) for i in range(5)])\n",
        ],
        env=subprocess_env(db),
        cwd=PROJECT_ROOT,
        check=True,
        timeout=60,
    )
    assert is_encrypted(db) == bool(studio_key())


@needs_root
def test_a_database_another_user_owns_read_only_is_refused_not_called_current(
    short_dir: Path,
) -> None:
    warm_up(short_dir / "warm")
    folder = short_dir / "studio"
    folder.mkdir()
    db = folder / "inklink.db"
    _studio_at_head(db)
    os.chmod(db, 0o644)  # root's, readable by all: a copy made by an admin, say
    _chown_to(NOBODY, folder)
    digest = sha256(db)

    report = start_app_as(NOBODY, db)
    message = _assert_refused_promptly(report, DatabaseNotWritableError)
    assert str(db) in message and "cannot write" in message
    assert sha256(db) == digest


@needs_root
def test_a_side_file_another_user_owns_is_refused_as_not_writable_not_as_damage(
    short_dir: Path,
) -> None:
    warm_up(short_dir / "warm")
    folder = short_dir / "studio"
    folder.mkdir()
    db = folder / "inklink.db"
    _studio_at_head(db)
    _chown_to(NOBODY, folder, db)
    # Root (a deploy run with sudo, say) commits a row and leaves its -wal: the row lives
    # only there until a checkpoint.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "from tests.file_kind import connect\n"
            "c = connect(sys.argv[1], isolation_level=None)\n"
            'c.execute("INSERT INTO clients (first_name, last_name, created_at, updated_at) '
            "VALUES ('Only', 'InTheWal', '2024-01-01 00:00:00.000000', '2024-01-01 00:00:00.000000')\")\n"
            "os._exit(0)\n",
            str(db),
        ],
        env=subprocess_env(None),
        check=True,
        timeout=60,
    )
    wal = Path(str(db) + "-wal")
    assert wal.stat().st_size > 0
    # SQLite run as root gives its side files to the database's owner: give them back to
    # root, as a deploy run by an administrator under another account would leave them.
    for side in (wal, Path(str(db) + "-shm")):
        os.chown(side, 0, 0)
        os.chmod(side, 0o644)
    digests = {path: sha256(path) for path in (db, wal)}

    report = start_app_as(NOBODY, db)
    message = _assert_refused_promptly(report, DatabaseNotWritableError)
    assert str(wal) in message
    assert {path: sha256(path) for path in (db, wal)} == digests
    # The advice was right: as the owner of the side file, the row is there.
    connection = connect(db)
    try:
        rows = connection.execute("SELECT count(*) FROM clients WHERE last_name = 'InTheWal'")
        assert rows.fetchone() == (1,)
    finally:
        connection.close()


@needs_root
def test_a_folder_this_user_cannot_write_is_refused_even_at_head(short_dir: Path) -> None:
    warm_up(short_dir / "warm")
    folder = short_dir / "studio"
    folder.mkdir()
    db = folder / "inklink.db"
    _studio_at_head(db)
    # The database and the side files an open app keeps are this user's; the folder is not,
    # so neither the lock nor a backup nor a new -wal could be made there.
    keeper = connect(db)  # keeps -wal and -shm in place, as another open window does
    try:
        keeper.execute("SELECT count(*) FROM clients").fetchone()
        sides = [Path(str(db) + "-wal"), Path(str(db) + "-shm")]
        assert all(side.exists() for side in sides)
        _chown_to(NOBODY, db, *sides)
        os.chmod(folder, 0o755)
        digest = sha256(db)

        report = start_app_as(NOBODY, db)
    finally:
        keeper.close()
    message = _assert_refused_promptly(report, DatabaseNotWritableError)
    assert str(folder) in message
    assert sha256(db) == digest
