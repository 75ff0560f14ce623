"""Released revisions cannot change silently: the checksum manifest and head.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from data.db.head import BASELINE_REVISION, HEAD_REVISION
from data.db.revisions import MANIFEST_NAME, chain, check, update
from tests.conftest import PROJECT_ROOT, run_alembic, sha256, subprocess_env

MIGRATIONS = PROJECT_ROOT / "migrations"


def scratch_project(tmp_path: Path) -> Path:
    """A copy of what a developer edits: the package, the migrations and their config."""
    root = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("data", "migrations"):
        shutil.copytree(PROJECT_ROOT / folder, root / folder, ignore=ignore)
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    return root


def run_in(root: Path, *args: str, db_path: Path) -> subprocess.CompletedProcess[str]:
    """``python <args>`` with the scratch copy's ``data`` package, as its developer would."""
    return subprocess.run(
        [sys.executable, *args],
        env=subprocess_env(db_path, PYTHONPATH=str(root)),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def scratch_migrations(tmp_path: Path) -> tuple[Path, Path]:
    """The migrations folder and a head.py, copied, for the in-process functions."""
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    head = tmp_path / "head.py"
    shutil.copy(PROJECT_ROOT / "data" / "db" / "head.py", head)
    return migrations, head


def baseline_file(migrations: Path) -> Path:
    return dict(chain(migrations / "versions"))[BASELINE_REVISION]


def test_every_revision_is_recorded_unchanged_and_head_py_agrees() -> None:
    problems = check()
    assert problems == [], "\n".join(problems)
    manifest = json.loads((MIGRATIONS / MANIFEST_NAME).read_text())
    recorded = [entry["revision"] for entry in manifest["revisions"]]
    assert recorded == [revision for revision, _ in chain(MIGRATIONS / "versions")]
    assert recorded[0] == BASELINE_REVISION
    assert recorded[-1] == HEAD_REVISION


def test_an_edit_to_a_released_revision_fails_the_check(tmp_path: Path) -> None:
    migrations, head = scratch_migrations(tmp_path)
    assert check(migrations, head) == []
    released = baseline_file(migrations)
    original = released.read_bytes()

    released.write_bytes(original + b"# a harmless-looking tidy-up\n")
    problems = check(migrations, head)
    assert len(problems) == 1
    assert str(released) in problems[0]
    assert f"released revision {BASELINE_REVISION} changed" in problems[0]
    assert "write a new revision" in problems[0]

    # A Windows checkout's line endings are not an edit.
    released.write_bytes(original.replace(b"\n", b"\r\n"))
    assert check(migrations, head) == []

    released.unlink()
    assert any("is gone" in problem for problem in check(migrations, head))


def test_a_new_revision_must_be_recorded_and_head_py_kept_in_step(tmp_path: Path) -> None:
    migrations, head = scratch_migrations(tmp_path)
    new = migrations / "versions" / "2030_01_01_0000-0a1b2c3d4e5f_new.py"
    new.write_text(
        baseline_file(migrations)
        .read_text()
        .replace(f'revision: str = "{BASELINE_REVISION}"', 'revision: str = "0a1b2c3d4e5f"')
        .replace(
            "down_revision: str | Sequence[str] | None = None",
            f'down_revision: str | Sequence[str] | None = "{BASELINE_REVISION}"',
        )
    )
    problems = check(migrations, head)
    assert any(f"0a1b2c3d4e5f ({new.name}) is not in manifest.json" in p for p in problems), (
        problems
    )
    assert any("head.py" in p for p in problems), problems

    assert update(migrations, head) == []
    assert check(migrations, head) == []
    assert 'HEAD_REVISION = "0a1b2c3d4e5f"' in head.read_text()
    assert f'BASELINE_REVISION = "{BASELINE_REVISION}"' in head.read_text()

    # A second revision on the same parent is a branch: refused, nothing written.
    manifest_hash = sha256(migrations / MANIFEST_NAME)
    shutil.copy(new, migrations / "versions" / "2030_01_02_0000-0a1b2c3d4e60_other.py")
    (migrations / "versions" / "2030_01_02_0000-0a1b2c3d4e60_other.py").write_text(
        new.read_text().replace('"0a1b2c3d4e5f"', '"0a1b2c3d4e60"')
    )
    problems = update(migrations, head)
    assert any("branched" in problem for problem in problems), problems
    assert sha256(migrations / MANIFEST_NAME) == manifest_hash


def test_the_documented_command_records_a_real_new_revision(tmp_path: Path) -> None:
    root = scratch_project(tmp_path)
    db_path = tmp_path / "studio" / "inklink.db"
    run_alembic(
        "revision",
        "-m",
        "note a client's instagram",
        db_path=db_path,
        cwd=root,
        PYTHONPATH=str(root),
    )
    written = set((root / "migrations" / "versions").glob("*.py")) - {
        root / "migrations" / "versions" / p.name for p in (MIGRATIONS / "versions").glob("*.py")
    }
    assert len(written) == 1
    new_revision = next(r for r, path in chain(root / "migrations" / "versions") if path in written)

    stale = run_in(root, "-m", "data.db.revisions", "--check", db_path=db_path)
    assert stale.returncode == 1
    assert "python -m data.db.revisions --update" in stale.stderr

    updated = run_in(root, "-m", "data.db.revisions", "--update", db_path=db_path)
    assert updated.returncode == 0, updated.stderr
    head_source = (root / "data" / "db" / "head.py").read_text()
    assert f'HEAD_REVISION = "{new_revision}"' in head_source
    assert f'BASELINE_REVISION = "{BASELINE_REVISION}"' in head_source
    recorded = json.loads((root / "migrations" / MANIFEST_NAME).read_text())["revisions"]
    assert [entry["revision"] for entry in recorded] == [BASELINE_REVISION, new_revision]
    assert run_in(root, "-m", "data.db.revisions", "--check", db_path=db_path).returncode == 0

    # The same command will not re-record an edited released revision...
    released = root / "migrations" / "versions" / recorded[0]["file"]
    released.write_text(released.read_text() + "# edited after release\n")
    manifest_hash = sha256(root / "migrations" / MANIFEST_NAME)
    refused = run_in(root, "-m", "data.db.revisions", "--update", db_path=db_path)
    assert refused.returncode == 1
    assert str(released) in refused.stderr
    assert sha256(root / "migrations" / MANIFEST_NAME) == manifest_hash
    # ...unless the developer names it: a revision that never left their machine.
    amended = run_in(
        root, "-m", "data.db.revisions", "--update", "--amend", BASELINE_REVISION, db_path=db_path
    )
    assert amended.returncode == 0, amended.stderr
    assert run_in(root, "-m", "data.db.revisions", "--check", db_path=db_path).returncode == 0
