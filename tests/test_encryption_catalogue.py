"""The schema-change catalogue and the data-preservation harness on an encrypted studio.

Two worked examples of ``tests/test_schema_change_catalogue.py`` (a column added through
``alembic revision --autogenerate`` run against the encrypted file, and a column renamed by
a table rebuild, written by hand) go through the real ``alembic`` command on a studio that
``python -m data.db encrypt`` encrypted: up, check, down, up, every row kept. The rows are
read from a plain copy ``python -m data.db decrypt`` makes, with the catalogue's own checks.
Then every real revision through the data-preservation harness, the same way.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from data.db.head import read_history, recorded_history
from data.db.revision_lint import parse_revision
from tests.conftest import PROJECT_ROOT, run_alembic
from tests.file_kind import is_encrypted
from tests.test_data_preservation import (
    _SCRIPT,
    MIGRATIONS,
    REVISIONS,
    REWRITTEN,
    assert_kept,
    migrate,
    read,
    seed,
    studio_file,
)
from tests.test_revision_manifest import run_in, scratch_project
from tests.test_schema_change_catalogue import CHANGES, edit_models, write_by_hand

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
    assert is_encrypted(db)

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return run_alembic(*args, db_path=db, cwd=root, PYTHONPATH=str(root))

    def rows_kept(when: str, probe: object) -> None:
        plain = tmp_path / f"plain-{len(list(tmp_path.glob('plain-*')))}.db"
        made = run_in(root, "-m", "data.db", "decrypt", "--output", str(plain), db_path=db)
        assert made.returncode == 0, made.stderr
        assert is_encrypted(db)
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


# --- the data-preservation harness, each real revision, on an encrypted studio -----------------


@pytest.mark.parametrize("revision", REVISIONS)
def test_each_revision_keeps_an_encrypted_studio_s_data(
    revision: str, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check_step`` of tests/test_data_preservation.py, with the steps through the real
    ``alembic`` command on the encrypted file and the rows read from a decrypted copy."""
    monkeypatch.setenv("INKLINK_DB_KEY", secrets.token_hex(32))
    monkeypatch.setenv("INKLINK_TEST_KEYRING", "")
    db_path.parent.mkdir(parents=True)
    step = _SCRIPT.get_revision(revision)
    assert step is not None
    before = step.down_revision
    assert not isinstance(before, tuple)
    source = parse_revision(Path(step.path))
    let_go = source.acknowledged | REWRITTEN.get(step.revision, frozenset())
    copies = iter(range(100))

    def rows() -> object:
        plain = db_path.parent / f"plain-{next(copies)}.db"
        made = run_in(
            PROJECT_ROOT, "-m", "data.db", "decrypt", "--output", str(plain), db_path=db_path
        )
        assert made.returncode == 0, made.stderr
        return read(plain)

    def alembic(*args: str) -> None:
        run_alembic(*args, db_path=db_path)
        assert is_encrypted(db_path)

    migrate(MIGRATIONS, db_path, before or step.revision)
    expected = seed(db_path)
    assert run_in(PROJECT_ROOT, "-m", "data.db", "encrypt", db_path=db_path).returncode == 0
    if before is not None:
        alembic("upgrade", step.revision)
    assert_kept(expected, rows(), f"after upgrading to {step.revision}", let_go)
    if source.downgrade_refuses:
        return
    alembic("downgrade", before or "base")
    if not source.downgrade_discards_data:
        assert_kept(expected, rows(), f"after downgrading to {before}", let_go)
    alembic("upgrade", step.revision)
    if not source.downgrade_discards_data:
        assert_kept(expected, rows(), "after upgrading again", let_go)
