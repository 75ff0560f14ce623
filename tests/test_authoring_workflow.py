"""The authoring workflow as a developer meets it on a fresh clone: models first, then one command.

Each test works in a copy of the project made into its own git repository (what a clone is),
so "released" means what it means there: recorded in the committed manifest.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from data.db.head import recorded_history
from tests.clone import Clone, ok
from tests.conftest import PROJECT_ROOT, sha256, subprocess_env
from tests.postgres import plain


def columns(db_path: Path, table: str) -> list[str]:
    connection = sqlite3.connect(db_path)
    try:
        return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
    finally:
        connection.close()


@pytest.fixture
def clone(tmp_path: Path) -> Clone:
    return Clone(tmp_path / "clone")


def test_models_first_then_one_command(clone: Clone, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch.db"
    ok(clone.alembic("upgrade", "head", db_path=scratch))
    before = clone.manifest()
    clone.add_client_column(
        "    scratch_referral_code: Mapped[str | None] = mapped_column(String(40))"
    )

    # The models lead: the scratch database still comes to the committed head and checks out.
    fresh = tmp_path / "fresh.db"
    ok(clone.alembic("upgrade", "head", db_path=fresh))
    ok(clone.alembic("upgrade", "head", db_path=scratch))

    written = ok(clone.alembic("revision", "--autogenerate", "-m", "add referral", db_path=scratch))
    after = clone.manifest()
    assert after[:-1] == before and len(after) == len(before) + 1, written.stdout
    new = after[-1]
    assert (clone.root / "migrations" / "schemas" / f"{new}.json").is_file()
    assert ok(clone.python("-m", "data.db.revisions", "--check", db_path=scratch))
    assert ok(clone.python("-m", "data.db.revision_lint", db_path=scratch)).stdout == ""

    # Review and edit the unreleased revision: re-recorded with the plain command.
    path = clone.revision_file(new)
    path.write_text(
        path.read_text().replace('"""add referral', '"""Add clients.scratch_referral_code')
    )
    refused = clone.alembic("upgrade", "head", db_path=scratch)
    assert refused.returncode != 0
    assert "changed since it was recorded" in refused.stdout + refused.stderr
    ok(clone.python("-m", "data.db.revisions", "--update", db_path=scratch))

    ok(clone.alembic("upgrade", "head", db_path=scratch))
    assert "scratch_referral_code" in columns(scratch, "clients")
    ok(clone.alembic("check", db_path=scratch))
    status = ok(clone.python("-m", "data.db", db_path=scratch))
    assert f"{new} (head)" in status.stdout

    # Once committed (released), the revision's bytes are frozen.
    clone.commit("add referral")
    path.write_text(path.read_text() + "# an afterthought\n")
    frozen = clone.python("-m", "data.db.revisions", "--update", db_path=scratch)
    assert frozen.returncode == 1
    assert f"released revision {new} changed" in frozen.stderr


def test_a_stale_record_is_refused_everywhere_and_changes_nothing(
    clone: Clone, tmp_path: Path
) -> None:
    db = tmp_path / "studio.db"
    ok(clone.alembic("upgrade", "head", db_path=db))
    head = clone.manifest()[-1]
    # A revision file that arrived without being recorded (a merge, a copy by hand).
    source = clone.revision_file(head).read_text()
    stray = re.sub(r'^revision: str = "\w+"', 'revision: str = "5ca1ab1e0001"', source, flags=re.M)
    stray = re.sub(
        r"^down_revision: .*$", f'down_revision: str | None = "{head}"', stray, flags=re.M
    )
    (clone.root / "migrations" / "versions" / "2099_01_01_0000-5ca1ab1e0001_stray.py").write_text(
        stray
    )
    digest = sha256(db)

    cli = clone.alembic("upgrade", "head", db_path=db)
    assert cli.returncode != 0
    lines = [line for line in (cli.stdout + cli.stderr).splitlines() if "disagree" in line]
    assert len(lines) == 1 and "not recorded" in lines[0], cli.stdout + cli.stderr

    app = clone.python(
        "-c",
        "from data.db.session import init_db\n"
        "from data.db.errors import RevisionRecordError\n"
        "try:\n    init_db()\nexcept RevisionRecordError as exc:\n    print('REFUSED', exc)\n",
        db_path=db,
    )
    assert "REFUSED" in app.stdout and "not recorded" in app.stdout, app.stdout + app.stderr

    status = clone.python("-m", "data.db", db_path=db)
    assert status.returncode == 2 and "not recorded" in status.stderr
    assert "(head)" not in status.stdout
    assert sha256(db) == digest


def test_a_database_ahead_is_never_called_current_or_behind(clone: Clone, tmp_path: Path) -> None:
    db = tmp_path / "studio.db"
    ok(clone.alembic("upgrade", "head", db_path=db))
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("UPDATE alembic_version SET version_num = 'feedbeef0001'")
    connection.close()
    status = clone.python("-m", "data.db", db_path=db)
    assert status.returncode == 1
    assert "ahead of this code" in status.stdout, status.stdout


def test_a_revision_that_fails_the_lint_is_never_applied(clone: Clone, tmp_path: Path) -> None:
    db = tmp_path / "studio.db"
    ok(clone.alembic("upgrade", "head", db_path=db))
    written = ok(clone.alembic("revision", "-m", "tidy client notes", db_path=db))
    new = clone.manifest()[-1]
    path = clone.revision_file(new)
    # A rename written as autogenerate writes it: a drop plus an add, losing the values.
    text = path.read_text()
    text = text.replace(
        "def upgrade() -> None:\n",
        "def upgrade() -> None:\n"
        '    with op.batch_alter_table("clients") as batch_op:\n'
        '        batch_op.add_column(sa.Column("scratch_studio_notes", sa.Text(), nullable=True))\n'
        '        batch_op.drop_column("notes")\n',
        1,
    ).replace(
        "def downgrade() -> None:\n",
        'def downgrade() -> None:\n    raise NotImplementedError("notes cannot come back")\n',
        1,
    )
    path.write_text(text)
    recorded = clone.python("-m", "data.db.revisions", "--update", db_path=db)
    assert recorded.returncode == 1, written.stdout
    assert "did you rename clients.notes to clients.scratch_studio_notes" in recorded.stderr
    digest = sha256(db)

    cli = clone.alembic("upgrade", "head", db_path=db)
    assert cli.returncode != 0
    assert "fails the migration lint" in cli.stdout + cli.stderr
    app = clone.python(
        "-c",
        "from data.db.session import init_db\n"
        "from data.db.errors import RevisionLintError\n"
        "try:\n    init_db()\nexcept RevisionLintError as exc:\n    print('REFUSED', exc)\n",
        db_path=db,
    )
    assert "REFUSED" in app.stdout and "possible-rename" in app.stdout, app.stdout + app.stderr
    assert sha256(db) == digest

    # The documented acknowledgement of a deliberate drop lets it through.
    path.write_text(
        path.read_text()
        + '\nacknowledged_drops: dict[str, str] = {"clients.notes": "moved to a new column"}\n'
    )
    ok(clone.python("-m", "data.db.revisions", "--update", db_path=db))
    ok(clone.alembic("upgrade", "head", db_path=db))
    assert "scratch_studio_notes" in columns(db, "clients")


def test_a_data_step_reads_the_table_as_it_is_at_its_revision(clone: Clone, tmp_path: Path) -> None:
    db = tmp_path / "studio.db"
    ok(clone.alembic("upgrade", "head", db_path=db))
    connection = sqlite3.connect(db)
    with connection:
        connection.execute(
            "INSERT INTO clients (first_name, last_name, created_at, updated_at) "
            "VALUES ('Ada', 'Lovelace', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
        )
    connection.close()
    ok(clone.alembic("revision", "-m", "display names", db_path=db))
    path = clone.revision_file(clone.manifest()[-1])
    text = path.read_text().replace(
        "def upgrade() -> None:\n",
        "def upgrade() -> None:\n"
        '    with op.batch_alter_table("clients") as batch_op:\n'
        '        batch_op.add_column(sa.Column("scratch_display_name", sa.String(length=201)))\n'
        '    clients = live_table("clients")\n'
        "    op.execute(\n"
        "        clients.update().values(\n"
        '            scratch_display_name=clients.c.first_name + " " + clients.c.last_name\n'
        "        )\n"
        "    )\n",
        1,
    )
    text = text.replace(
        "def downgrade() -> None:\n",
        "def downgrade() -> None:\n"
        '    with op.batch_alter_table("clients") as batch_op:\n'
        '        batch_op.drop_column("scratch_display_name")\n',
        1,
    )
    text = re.sub(
        r"^(from alembic import op.*)$",
        r"\1\nfrom data.migration.data_steps import live_table",
        text,
        count=1,
        flags=re.M,
    )
    path.write_text(text)
    ok(clone.python("-m", "data.db.revisions", "--update", db_path=db))
    ok(clone.alembic("upgrade", "head", db_path=db))
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("SELECT scratch_display_name FROM clients").fetchall() == [
            ("Ada Lovelace",)
        ]
    finally:
        connection.close()


def test_a_command_line_failure_prints_once_for_a_developer(clone: Clone, tmp_path: Path) -> None:
    db = tmp_path / "studio.db"
    ok(clone.alembic("upgrade", "head", db_path=db))
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("INSERT INTO alembic_version VALUES ('0000feed0000')")
    connection.close()
    result = clone.alembic("upgrade", "head", db_path=db)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert output.count("several revisions at once") == 1, output


def test_an_unknown_handed_object_is_refused_and_db_path_untouched(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    code = (
        "from alembic import command\n"
        "from alembic.util import CommandError\n"
        "from data.db.runner import alembic_config\n"
        "config = alembic_config()\n"
        "config.attributes['connection'] = object()\n"
        "try:\n    command.upgrade(config, 'head')\n"
        "except CommandError as exc:\n    print('REFUSED', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(db),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "REFUSED" in result.stdout and "builtins.object" in result.stdout, result.stderr
    assert not db.exists()


def test_offline_sql_names_the_revision_sqlite_cannot_render(clone: Clone, tmp_path: Path) -> None:
    db = tmp_path / "offline.db"
    baseline, head = clone.manifest()[0], clone.manifest()[-1]
    plain = ok(clone.alembic("upgrade", baseline, "--sql", db_path=db))
    assert "CREATE TABLE" in plain.stdout
    ok(clone.alembic("revision", "-m", "widen phone", db_path=db))
    new = clone.manifest()[-1]
    path = clone.revision_file(new)
    path.write_text(
        path.read_text()
        .replace(
            "def upgrade() -> None:\n",
            "def upgrade() -> None:\n"
            '    with op.batch_alter_table("clients") as batch_op:\n'
            '        batch_op.alter_column("phone", existing_type=sa.String(40), '
            "type_=sa.String(60))\n",
            1,
        )
        .replace(
            "def downgrade() -> None:\n",
            'def downgrade() -> None:\n    raise NotImplementedError("test")\n',
            1,
        )
    )
    ok(clone.python("-m", "data.db.revisions", "--update", db_path=db))
    digest = sha256(db) if db.exists() else None
    result = clone.alembic("upgrade", f"{head}:head", "--sql", db_path=db)
    assert result.returncode != 0
    failed = [line for line in (result.stdout + result.stderr).splitlines() if "FAILED" in line]
    assert len(failed) == 1 and f"revision {new}" in failed[0], result.stdout + result.stderr
    assert (sha256(db) if db.exists() else None) == digest


@pytest.mark.postgres
def test_offline_sql_on_postgresql_sets_the_runners_lock_timeout(pg_url: URL) -> None:
    env = subprocess_env(None, DATABASE_URL=plain(pg_url))
    # The baseline: later revisions may hold data steps that need a live database.
    baseline = recorded_history().baseline
    result = subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), "upgrade", baseline, "--sql"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    begin = lines.index("BEGIN;")
    assert any(re.match(r"SET LOCAL lock_timeout = '\d+ms';", line) for line in lines[begin:][:4])
