"""Shared fixtures. Every test works on files under tmp_path; nothing reaches dev.db or the user's data."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

pytest_plugins = ["tests.postgres"]
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEV_DB = PROJECT_ROOT / "dev.db"

# Before anything imports data.db.session: point the module-level engine and any
# platformdirs lookup at a scratch folder, never at dev.db or the real per-user directory.
_SCRATCH = Path(tempfile.mkdtemp(prefix="inklink-tests-"))
os.environ["DB_PATH"] = str(_SCRATCH / "module-default.db")
os.environ["XDG_DATA_HOME"] = str(_SCRATCH / "xdg-data")
os.environ.pop("DATABASE_URL", None)
# Encryption: a developer's own key or setting never reaches a test; the keyring is a file
# of this run (tests/keyring_backend.py), never the user's, and child processes inherit it.
for _name in ("INKLINK_DB_KEY", "INKLINK_DB_ENCRYPTION"):
    os.environ.pop(_name, None)
os.environ["PYTHON_KEYRING_BACKEND"] = "tests.keyring_backend.FileKeyring"
os.environ["INKLINK_TEST_KEYRING"] = str(_SCRATCH / "keyring.json")

from sqlalchemy import Engine  # noqa: E402
from sqlalchemy.engine import URL  # noqa: E402

from data.db.session import create_app_engine, database_url  # noqa: E402
from tests.file_kind import connect  # noqa: E402

_DEV_DB_EXISTED = DEV_DB.exists()


def sha256(path: Path) -> str:
    """The file's hash, to prove a refusal left it byte-for-byte unchanged."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def db_versions(path: Path) -> list[str]:
    """The revisions a database file records, read through a plain connection."""
    connection = connect(path)
    try:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
    finally:
        connection.close()


LEGACY_SQL = Path(__file__).parent / "fixtures" / "legacy_v0_schema.sql"


def legacy_database(path: Path) -> Path:
    """Tables as the pre-Alembic create_all left them (the frozen schema): no version table.
    (Encrypted in a test's encrypted runs, as every file it makes: see ``file_kind``.)"""
    connection = connect(path)
    try:
        connection.executescript(LEGACY_SQL.read_text())
    finally:
        connection.close()
    return path


def sqlite_url(path: Path) -> URL:
    """The URL the app would use for the file at ``path``: SQLCipher's for an encrypted file,
    or for a new one while INKLINK_DB_KEY is set (the encrypted runs of ``file_kind``)."""
    return database_url(str(path))


def subprocess_env(db_path: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a child process: this one, with the database pointed where asked."""
    env = {k: v for k, v in os.environ.items() if k not in ("DB_PATH", "DATABASE_URL")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    if db_path is not None:
        env["DB_PATH"] = str(db_path)
    env.update(extra)
    return env


def run_python(
    code: str,
    db_path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, the way a second app window would."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env) if env is not None else subprocess_env(db_path),
        cwd=cwd or PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"child failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def run_alembic(
    *args: str, db_path: Path, cwd: Path = PROJECT_ROOT, check: bool = True, **extra: str
) -> subprocess.CompletedProcess[str]:
    """The real ``alembic`` command of this environment, as a deploy would run it."""
    alembic = Path(sys.executable).with_name("alembic")
    result = subprocess.run(
        [str(alembic), *args],
        env=subprocess_env(db_path, **extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"alembic {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def inklink_db(
    *args: str,
    db_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = PROJECT_ROOT,
    timeout: float = 300,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """The ``inklink-db`` command (``python -m data.db``) in a fresh interpreter, pointed at
    ``db_path`` (or with ``env`` as given); its exit code is the caller's to check."""
    return subprocess.run(
        [sys.executable, "-m", "data.db", *args],
        env=dict(env) if env is not None else subprocess_env(db_path, **extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The key of the encrypted runs: every process of such a run gets it from INKLINK_DB_KEY.
FILE_KEY = secrets.token_hex(32)


@pytest.fixture(params=["plain", "encrypted"])
def file_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on a plain studio file, then on an encrypted one.

    The encrypted run sets INKLINK_DB_KEY for the test and its child processes: the data
    layer creates every new database encrypted with it (and opens them with it), and so do
    the tests' own helpers (``tests.file_kind.connect``). The keyring is out of reach in
    that run: nothing may depend on it when the key is given.
    """
    if request.param == "encrypted":
        monkeypatch.setenv("INKLINK_DB_KEY", FILE_KEY)
        monkeypatch.setenv("INKLINK_TEST_KEYRING", "")
    return str(request.param)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "studio" / "inklink.db"


@pytest.fixture
def app_engine(db_path: Path) -> Iterator[Engine]:
    """The app's engine, under the app policy, on a fresh path."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_app_engine(sqlite_url(db_path))
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _release_kept_descriptors() -> Iterator[None]:
    """The data layer keeps one descriptor per database file it read behind SQLite's back
    (raw_sqlite.read_at), for the process's life; a test's files are done with after it."""
    yield
    from data.migration import raw_sqlite

    raw_sqlite.release_kept_descriptors()


@pytest.fixture(scope="session", autouse=True)
def _never_touch_dev_db() -> Iterator[None]:
    yield
    shutil.rmtree(_SCRATCH, ignore_errors=True)
    if not _DEV_DB_EXISTED:
        assert not DEV_DB.exists(), "the test suite created dev.db"


@pytest.fixture
def created_engine(app_engine: Engine, db_path: Path) -> Engine:
    """The app's engine on a database that init_db's runner has just created."""
    from data.db.runner import ensure_current

    assert ensure_current(app_engine).action == "created"
    return app_engine


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder every user can traverse (pytest's base temp is 0700, root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="inklink-perm-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def small_disk(folder: Path) -> Iterator[Path]:
    """A 4 MiB file system of its own under ``folder`` (needs root): too small for the backup
    and rebuilds of a big file."""
    mount_point = folder / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs here: {mounted.stderr}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)
