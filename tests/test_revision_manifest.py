"""The recorded history: manifest.json, an exported schema per revision, and what refuses a stale one.

Every test reads today's history from the manifest, never from constants: the suite must stay
green after any valid new revision. Copies of the project are git repositories with
everything committed (a fresh clone), so their own revisions are released and the ones a test
adds are not.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from data.db.head import (
    RECORD_COMMAND,
    SCHEMAS_FOLDER,
    exported_schema,
    read_history,
    recorded_history,
)
from data.db.revisions import MANIFEST_NAME, chain, check
from data.db.schema import differences, metadata_snapshot
from data.models import Base
from tests.conftest import PROJECT_ROOT, db_versions, run_alembic, sha256, subprocess_env
from tests.scratch import REVISION_TEMPLATE, Revision, ScratchProject, commit_all

MIGRATIONS = PROJECT_ROOT / "migrations"


def scratch_project(tmp_path: Path) -> Path:
    """A fresh clone of what a developer edits: the package, migrations and their config."""
    return ScratchProject(tmp_path / "project").root


def run_in(
    root: Path, *args: str, db_path: Path, stdin: str = "", **extra: str
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` with the ``data`` package of ``root`` (a scratch copy, or the
    project), as its developer would; ``extra`` joins the environment."""
    return subprocess.run(
        [sys.executable, *args],
        env=subprocess_env(db_path, PYTHONPATH=str(root), **extra),
        cwd=root,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def record_state(root: Path) -> dict[str, str]:
    """The bytes of the record (manifest and exports), to prove a refusal wrote nothing."""
    migrations = root / "migrations"
    files = [migrations / MANIFEST_NAME, *sorted((migrations / SCHEMAS_FOLDER).glob("*.json"))]
    return {path.name: sha256(path) for path in files}


def released_file(root: Path) -> Path:
    """The newest released revision of a scratch copy: whatever today's head is."""
    versions = root / "migrations" / "versions"
    return dict(chain(versions))[read_history(root / "migrations").head]


# --- this checkout ---------------------------------------------------------------------------


def test_every_revision_is_recorded_unchanged_with_its_exported_schema() -> None:
    problems = check()
    assert problems == [], "\n".join(problems)
    in_order = [revision for revision, _ in chain(MIGRATIONS / "versions")]
    history = recorded_history()
    assert history.problem is None
    assert list(history.revisions) == in_order
    assert (history.baseline, history.head) == (in_order[0], in_order[-1])
    for revision in in_order:
        assert exported_schema(revision) is not None, f"no export for {revision}"
    cli = subprocess.run(
        [sys.executable, "-m", "data.db.revisions", "--check"],
        cwd=PROJECT_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr


def test_the_models_make_exactly_the_schema_the_head_promises() -> None:
    """A fresh database is made from the models; an upgraded one is checked against the head's
    export. The two must be one schema, or studios end up with two."""
    head = recorded_history().head
    promised = exported_schema(head)
    made = metadata_snapshot(Base.metadata)
    assert differences(made, promised) == [], (
        f"the models and {MIGRATIONS / SCHEMAS_FOLDER / head}.json disagree: write the "
        "revision for the model change (README, 'Writing a migration')"
    )
    assert made == promised


# --- the record in a developer's copy --------------------------------------------------------


def test_the_documented_command_records_a_new_revision_at_once(tmp_path: Path) -> None:
    root = scratch_project(tmp_path)
    before = read_history(root / "migrations")
    db_path = tmp_path / "studio" / "inklink.db"
    run_alembic(
        "revision", "-m", "note a client's pronouns", db_path=db_path, cwd=root,
        PYTHONPATH=str(root),
    )  # fmt: skip
    after = read_history(root / "migrations")
    assert after.problem is None
    assert after.revisions[:-1] == before.revisions
    new = after.head
    assert new not in before.revisions
    assert (root / "migrations" / SCHEMAS_FOLDER / f"{new}.json").is_file()
    assert run_in(root, "-m", "data.db.revisions", "--check", db_path=db_path).returncode == 0


def test_an_edited_unreleased_revision_is_re_recorded_and_a_released_one_refused(
    tmp_path: Path,
) -> None:
    project = ScratchProject(tmp_path / "project")
    root = project.root
    db_path = tmp_path / "unused.db"
    written = project.add(Revision("0a1b2c3d4e5f", upgrade="pass"))
    schema_file = root / "migrations" / SCHEMAS_FOLDER / "0a1b2c3d4e5f.json"
    assert '"scratch_pronouns"' not in schema_file.read_text()

    # Reviewing and editing a revision that never left the machine: plain --update.
    text = written.read_text().replace(
        "    pass\n",
        '    op.add_column("clients", sa.Column("scratch_pronouns", sa.String(40), nullable=True))\n',
        1,
    )
    written.write_text(text)
    stale = run_in(root, "-m", "data.db.revisions", "--check", db_path=db_path)
    assert stale.returncode == 1
    assert "0a1b2c3d4e5f" in stale.stderr and "--update" in stale.stderr
    updated = run_in(root, "-m", "data.db.revisions", "--update", db_path=db_path)
    assert updated.returncode == 0, updated.stderr
    assert '"scratch_pronouns"' in schema_file.read_text()
    assert run_in(root, "-m", "data.db.revisions", "--check", db_path=db_path).returncode == 0

    # Once committed to the shared history it is released: the same edit is refused.
    commit_all(root, "add pronouns")
    recorded = record_state(root)
    written.write_text(text + "# a harmless-looking tidy-up\n")
    refused = run_in(root, "-m", "data.db.revisions", "--update", db_path=db_path)
    assert refused.returncode == 1
    assert str(written) in refused.stderr
    assert "released revision 0a1b2c3d4e5f changed" in refused.stderr
    assert "write a new revision" in refused.stderr
    assert record_state(root) == recorded
    assert run_in(root, "-m", "data.db.revisions", "--check", db_path=db_path).returncode == 1


def test_an_edit_to_a_released_revision_fails_the_check(tmp_path: Path) -> None:
    root = scratch_project(tmp_path)
    migrations = root / "migrations"
    released = released_file(root)
    original = released.read_bytes()
    recorded = record_state(root)

    released.write_bytes(original + b"# a harmless-looking tidy-up\n")
    problems = check(migrations)
    assert len(problems) == 1, problems
    assert str(released) in problems[0]
    assert "changed since it was released" in problems[0]
    assert record_state(root) == recorded

    # A Windows checkout's line endings are not an edit.
    released.write_bytes(original.replace(b"\n", b"\r\n"))
    assert check(migrations) == []

    released.unlink()
    assert any("is gone" in problem for problem in check(migrations))


def test_a_branch_in_the_chain_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    project = ScratchProject(tmp_path / "project")
    first = project.add(Revision("0a1b2c3d4e5f", upgrade="pass"))
    recorded = record_state(project.root)
    other = first.with_name("2099_0a1b2c3d4e60_scratch.py")
    other.write_text(first.read_text().replace("'0a1b2c3d4e5f'", "'0a1b2c3d4e60'"))
    result = run_in(project.root, "-m", "data.db.revisions", "--update", db_path=tmp_path / "x")
    assert result.returncode == 1
    assert "branched" in result.stderr
    assert record_state(project.root) == recorded


# --- a stale record: every entry point refuses, and changes nothing ---------------------------


@pytest.fixture
def stale(tmp_path: Path) -> tuple[ScratchProject, Path, str]:
    """A copy whose database is at its head, then a revision file added but never recorded."""
    project = ScratchProject(tmp_path / "project")
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir()
    assert project.init_db(db).returncode == 0
    name = "2099_feedc0ffee01_unrecorded.py"
    (project.root / "migrations" / "versions" / name).write_text(
        REVISION_TEMPLATE.format(
            doc="never recorded",
            revision="feedc0ffee01",
            down=project.head,
            upgrade="    pass",
            downgrade="    pass",
        )
    )
    assert read_history(project.root / "migrations").problem is not None
    return project, db, name


def _one_problem_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "disagree" in line]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("stamped", ["at the old head", "ahead (as the scripts' head leaves it)"])
def test_init_db_refuses_a_stale_record(
    stale: tuple[ScratchProject, Path, str], stamped: str
) -> None:
    project, db, name = stale
    if stamped.startswith("ahead"):
        connection = sqlite3.connect(db, isolation_level=None)
        connection.execute("UPDATE alembic_version SET version_num = 'feedc0ffee01'")
        connection.close()
    digest = sha256(db)
    result = project.init_db(db, check=False)
    assert result.returncode != 0
    assert "RevisionRecordError" in result.stderr
    line = _one_problem_line(result.stderr)
    assert name in line and RECORD_COMMAND in line
    assert "OUTCOME" not in result.stdout  # never "current"
    assert sha256(db) == digest


def test_the_alembic_command_refuses_a_stale_record_in_one_line(
    stale: tuple[ScratchProject, Path, str],
) -> None:
    project, db, name = stale
    digest = sha256(db)
    versions_before = db_versions(db)
    result = project.alembic("upgrade", "head", db_path=db, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert name in _one_problem_line(output)
    assert "Traceback" not in output
    assert sha256(db) == digest
    assert db_versions(db) == versions_before


def test_python_m_data_db_refuses_a_stale_record(stale: tuple[ScratchProject, Path, str]) -> None:
    project, db, name = stale
    digest = sha256(db)
    result = subprocess.run(
        [sys.executable, "-m", "data.db"],
        env=project.env(db),
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert name in _one_problem_line(result.stderr)
    assert "(head)" not in result.stdout and "not head" not in result.stdout
    assert sha256(db) == digest


def test_a_fresh_database_from_models_that_lag_the_head_is_refused(tmp_path: Path) -> None:
    """A revision recorded without its model change: the models and the migrations disagree."""
    project = ScratchProject(tmp_path / "project")
    project.add(
        Revision(
            "1a9000000001",
            upgrade='op.add_column("clients", sa.Column("pronouns", sa.String(40), nullable=True))',
        )
    )
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir()
    result = project.init_db(db, check=False)
    assert result.returncode != 0
    assert "SchemaVerificationError" in result.stderr
    assert "the models and the migrations disagree" in result.stderr
    assert "pronouns" in result.stderr
    manifest = json.loads((project.root / "migrations" / MANIFEST_NAME).read_text())
    assert manifest["revisions"][-1]["revision"] == "1a9000000001"
