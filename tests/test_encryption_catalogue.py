"""The schema-change catalogue on an encrypted studio: a developer's change, end to end.

Two worked examples of ``tests/test_schema_change_catalogue.py`` (a column added through
``alembic revision --autogenerate`` run against the encrypted file, and a column renamed by
a table rebuild, written by hand) go through the real ``alembic`` command on a studio that
``python -m data.db encrypt`` encrypted: up, check, down, up, every row kept. The rows are
read from a plain copy ``python -m data.db decrypt`` makes, with the catalogue's own checks.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from data.db.head import read_history, recorded_history
from tests.conftest import run_alembic
from tests.test_data_preservation import MIGRATIONS, assert_kept, migrate, read, seed, studio_file
from tests.test_revision_manifest import run_in, scratch_project
from tests.test_schema_change_catalogue import CHANGES, edit_models, write_by_hand

SQLITE_MAGIC = b"SQLite format 3\x00"
EXAMPLES = [c for c in CHANGES if c.id in ("add-nullable-column", "rename-column")]


@pytest.mark.parametrize("change", EXAMPLES, ids=[c.id for c in EXAMPLES])
def test_schema_change_on_an_encrypted_studio(
    change: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_schema_change_catalogue import Change

    assert isinstance(change, Change)
    monkeypatch.setenv("INKLINK_DB_KEY", secrets.token_hex(32))
    monkeypatch.setenv("INKLINK_TEST_KEYRING", "")  # the key comes from INKLINK_DB_KEY only
    root = scratch_project(tmp_path)
    versions = root / "migrations" / "versions"
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir()
    head = recorded_history().head
    migrate(MIGRATIONS, db, head)
    expected = seed(db)
    encrypted = run_in(root, "-m", "data.db", "encrypt", db_path=db)
    assert encrypted.returncode == 0, encrypted.stderr
    assert db.read_bytes()[:16] != SQLITE_MAGIC

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return run_alembic(*args, db_path=db, cwd=root, PYTHONPATH=str(root))

    def rows_kept(when: str, probe: object) -> None:
        plain = tmp_path / f"plain-{len(list(tmp_path.glob('plain-*')))}.db"
        made = run_in(root, "-m", "data.db", "decrypt", "--output", str(plain), db_path=db)
        assert made.returncode == 0, made.stderr
        assert db.read_bytes()[:16] != SQLITE_MAGIC
        assert_kept(expected, read(plain), when, {})
        with studio_file(plain) as connection:
            assert callable(probe)
            probe(connection)

    edit_models(root, change)
    before = set(versions.glob("*.py"))
    if change.by_hand is None:
        alembic("revision", "--autogenerate", "-m", change.message)
    else:
        alembic("revision", "-m", change.message)
    (revision_file,) = set(versions.glob("*.py")) - before
    if change.by_hand is not None:
        write_by_hand(revision_file, *change.by_hand)
    for expected_text in change.expect:
        assert expected_text in revision_file.read_text()
    recorded = run_in(root, "-m", "data.db.revisions", "--update", db_path=db)
    assert recorded.returncode == 0, recorded.stderr
    new_head = read_history(root / "migrations").head

    alembic("upgrade", "head")
    assert f"{new_head} (head)" in alembic("current").stdout
    rows_kept("after the upgrade", change.after_upgrade)
    check = alembic("check")
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    alembic("downgrade", "-1")
    rows_kept("after the downgrade", change.after_downgrade)
    alembic("upgrade", "head")
    rows_kept("after upgrading again", change.after_upgrade)
