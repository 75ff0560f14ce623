"""The file-level safety tests again, on encrypted files: the same refusals, byte for byte.

Each bad file of ``tests/test_safety_refusals.py`` that can be encrypted is made plain, then
encrypted by the real ``python -m data.db encrypt`` (a damaged page or a truncation is made
after encryption, in the encrypted bytes), and must be refused with the same error as the
plain one, by the runner, by the app's start and by the ``alembic`` command, the file left
byte for byte as it was and no backup made.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from data.db.cipher import cipher_url
from data.db.errors import (
    DatabaseCorruptError,
    DatabaseNewerThanAppError,
    DataLayerError,
    LegacySchemaMismatchError,
)
from data.db.runner import ensure_current
from data.db.session import create_app_engine
from tests.conftest import PROJECT_ROOT, run_alembic, run_python, sha256, subprocess_env
from tests.test_safety_refusals import legacy_mismatch, unknown_revision
from tests.test_safety_upgrade import make_studio

KEY = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def database_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every process of these tests gets the key from INKLINK_DB_KEY (no keyring)."""
    monkeypatch.setenv("INKLINK_DB_KEY", KEY)
    monkeypatch.setenv("INKLINK_TEST_KEYRING", "")
    return KEY


def encrypted(path: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "data.db", "encrypt"],
        env=subprocess_env(path),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert path.read_bytes()[:6] != b"SQLite"
    return path


def _out_of_wal(path: Path) -> Path:
    """Every page in the main file, as a damaged file would be found (and as the plain
    tests leave theirs): the at-head check passes such a file to the runner's checks."""
    import sqlcipher3  # type: ignore[import-untyped]

    connection = sqlcipher3.connect(str(path))
    try:
        connection.execute(f"PRAGMA key = \"x'{KEY}'\"")
        connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()
    return path


def corrupted_encrypted_pages(path: Path) -> None:
    _out_of_wal(encrypted(make_studio(path, clients=200)))
    size = path.stat().st_size
    with path.open("r+b") as handle:  # scribble over two pages of the encrypted file
        for offset in (4096 * 2 + 100, 4096 * 4 + 100):
            assert offset < size
            handle.seek(offset)
            handle.write(b"\x0d\xff\xff\xff\xff\xff\xff\xff" * 4)


def truncated_encrypted(path: Path) -> None:
    _out_of_wal(encrypted(make_studio(path, clients=200)))
    data = path.read_bytes()
    path.write_bytes(data[: (len(data) // 2) // 4096 * 4096])


def encrypted_unknown_revision(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    unknown_revision(path)
    encrypted(path)


def encrypted_legacy_mismatch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    legacy_mismatch(path)
    encrypted(path)


BAD_ENCRYPTED_FILES: dict[str, tuple[Callable[[Path], None], type[DataLayerError], str]] = {
    "corrupted pages": (corrupted_encrypted_pages, DatabaseCorruptError, "damaged"),
    "truncated": (truncated_encrypted, DatabaseCorruptError, "damaged"),
    "unknown revision": (
        encrypted_unknown_revision,
        DatabaseNewerThanAppError,
        "f00dfacef00d, which this version of InkLinkOS does not know",
    ),
    "legacy schema that differs": (
        encrypted_legacy_mismatch,
        LegacySchemaMismatchError,
        "column phone is missing",
    ),
}


@pytest.mark.parametrize("case", BAD_ENCRYPTED_FILES)
def test_bad_encrypted_file_is_refused_and_left_byte_for_byte(tmp_path: Path, case: str) -> None:
    make, error, found = BAD_ENCRYPTED_FILES[case]
    db = tmp_path / "studio" / "inklink.db"
    make(db)
    digest = sha256(db)
    engine = create_app_engine(cipher_url(str(db)))
    try:
        with pytest.raises(error) as raised:
            ensure_current(engine)
    finally:
        engine.dispose()
    message = str(raised.value)
    assert str(db) in message
    assert found in message
    assert "not changed" in message
    assert sha256(db) == digest
    assert not (db.parent / "backups").exists()


@pytest.mark.parametrize("case", ["corrupted pages", "unknown revision"])
def test_app_start_and_alembic_refuse_the_same_encrypted_files(tmp_path: Path, case: str) -> None:
    make, error, found = BAD_ENCRYPTED_FILES[case]
    db = tmp_path / "inklink.db"
    make(db)
    digest = sha256(db)
    result = run_python("from data.db.session import init_db; init_db()", db, check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"data.db.errors.{error.__name__}: Database {db}:")
    assert sha256(db) == digest
    command = run_alembic("upgrade", "head", db_path=db, check=False)
    output = command.stdout + command.stderr
    assert command.returncode != 0 and f"FAILED: Database {db}:" in output
    assert found.split(":")[0] in output and "Traceback" not in output
    assert KEY not in output + result.stderr
    assert sha256(db) == digest
