"""The migration lint: every rule catches a bad revision and passes a good one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from data.db.revision_lint import (
    Finding,
    lint_directory,
    lint_files,
    parse_revision,
    revision_files,
)
from tests.conftest import PROJECT_ROOT, subprocess_env

VERSIONS = PROJECT_ROOT / "migrations" / "versions"
LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<rule>[a-z-]+): (?P<message>.+)\. Fix: .+$")
# A made-up parent: the rules read each file on its own, without the real chain.
PARENT = "0123456789ab"


def revision(
    upgrade: str,
    downgrade: str = 'raise NotImplementedError("a test revision")',
    *,
    header: str = "",
    down_revision: str = PARENT,
    rev: str = "0a1b2c3d4e5f",
) -> str:
    """A revision's source, shaped like the project's template."""
    return textwrap.dedent(
        '''\
        """a change under test

        Revision ID: {rev}
        Revises: {down}
        """

        from collections.abc import Sequence

        import sqlalchemy as sa
        from alembic import op
        {header}
        revision: str = "{rev}"
        down_revision: str | Sequence[str] | None = "{down}"
        branch_labels: str | Sequence[str] | None = None
        depends_on: str | Sequence[str] | None = None


        def upgrade() -> None:
            """A change under test."""
        {upgrade}


        def downgrade() -> None:
        {downgrade}
        '''
    ).format(
        rev=rev,
        down=down_revision,
        header=header,
        upgrade=textwrap.indent(textwrap.dedent(upgrade).strip("\n"), "    "),
        downgrade=textwrap.indent(textwrap.dedent(downgrade).strip("\n"), "    "),
    )


def lint(tmp_path: Path, *sources: str) -> tuple[Path, list[Finding]]:
    """Lint the last of ``sources``, written after the real baseline in a versions folder."""
    versions = tmp_path / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    for baseline in VERSIONS.glob("*.py"):
        shutil.copy(baseline, versions / baseline.name)
    paths = []
    for number, source in enumerate(sources):
        path = versions / f"2030_01_01_{number:04d}-change_{number}.py"
        path.write_text(source)
        paths.append(path)
    return paths[-1], lint_files([paths[-1]])


def root_revision() -> str:
    """The id of the repository's first revision, for tests that build on its CHECKs."""
    roots = [
        r.revision for r in map(parse_revision, revision_files(VERSIONS)) if not r.down_revisions
    ]
    assert len(roots) == 1 and roots[0] is not None, roots
    return roots[0]


def line_of(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [finding for finding in findings if finding.rule == rule]


# --- the repository's own revisions ----------------------------------------------------------


def test_every_revision_in_the_repository_passes_the_lint() -> None:
    findings = lint_directory(VERSIONS)
    assert findings == [], "\n".join(str(f) for f in findings)


def test_the_command_names_file_line_rule_and_fix(tmp_path: Path) -> None:
    bad, _ = lint(tmp_path, revision("from data.models import Client  # noqa: F401"))
    result = subprocess.run(
        [sys.executable, "-m", "data.db.revision_lint", str(bad)],
        env=subprocess_env(tmp_path / "unused.db"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    match = LINE.match(result.stdout.splitlines()[0])
    assert match, result.stdout
    assert match["path"] == str(bad)
    assert int(match["line"]) == line_of(bad, "from data.models")
    assert match["rule"] == "standalone"

    clean = subprocess.run(
        [sys.executable, "-m", "data.db.revision_lint"],
        env=subprocess_env(tmp_path / "unused.db"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout == ""


# --- standalone ------------------------------------------------------------------------------


def test_standalone_catches_an_import_of_the_models(tmp_path: Path) -> None:
    for statement in (
        "from data.models import Client",
        "import data.models.client",
        "from data import models",
    ):
        bad, findings = lint(tmp_path, revision(f"{statement}  # noqa: F401"))
        assert [(f.rule, f.line) for f in findings] == [("standalone", line_of(bad, statement))], (
            statement
        )
        assert "sa.table(" in findings[0].fix


def test_standalone_passes_a_revision_that_spells_its_own_table(tmp_path: Path) -> None:
    _, findings = lint(
        tmp_path,
        revision(
            """
            clients = sa.table("clients", sa.column("id"), sa.column("email"))
            op.execute(clients.update().values(email=sa.func.lower(clients.c.email)))
            """,
            '"""Nothing to undo: lower-case e-mail stays valid."""\nraise NotImplementedError("lower-casing cannot be undone")',
        ),
    )
    assert findings == []


# --- acknowledged-drop -----------------------------------------------------------------------

DROP_NOTES = """
with op.batch_alter_table("clients") as batch_op:
    batch_op.drop_column("notes")
"""
RESTORE_NOTES = """
with op.batch_alter_table("clients") as batch_op:
    batch_op.add_column(sa.Column("notes", sa.Text(), nullable=True))
"""


def test_acknowledged_drop_catches_an_unacknowledged_column_drop(tmp_path: Path) -> None:
    bad, findings = lint(tmp_path, revision(DROP_NOTES, RESTORE_NOTES))
    assert [(f.rule, f.line) for f in findings] == [
        ("acknowledged-drop", line_of(bad, 'drop_column("notes")'))
    ]
    assert "clients.notes" in findings[0].message
    assert 'acknowledged_drops: dict[str, str] = {"clients.notes"' in findings[0].fix


def test_acknowledged_drop_catches_table_drops_in_code_and_in_sql(tmp_path: Path) -> None:
    bad, findings = lint(
        tmp_path,
        revision(
            """
            op.drop_table("transactions")
            op.execute("DROP TABLE IF EXISTS tattoo_sessions")
            """,
            'raise NotImplementedError("the dropped rows are gone")',
        ),
    )
    assert [(f.rule, f.line) for f in findings] == [
        ("acknowledged-drop", line_of(bad, 'drop_table("transactions")')),
        ("acknowledged-drop", line_of(bad, "DROP TABLE")),
    ]


# What `alembic revision --autogenerate` (Alembic 1.20, render_as_batch=True, this project's
# env.py and ruff hook) wrote for a new model table with a foreign key to clients.
AUTOGENERATED_TABLE = '''"""add consent forms

Revision ID: 8d80717f53ec
Revises: 0123456789ab
Create Date: 2026-12-02 14:31:30.122267+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "8d80717f53ec"
down_revision: str | Sequence[str] | None = "0123456789ab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """add consent forms"""
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "consent_forms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_consent_forms_client_id_clients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_forms")),
    )
    with op.batch_alter_table("consent_forms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_forms_client_id"), ["client_id"], unique=False)

    # ### end Alembic commands ###


def downgrade() -> None:
    """Undo: add consent forms"""
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("consent_forms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_forms_client_id"))

    op.drop_table("consent_forms")
    # ### end Alembic commands ###
'''


def test_acknowledged_drop_passes_an_autogenerated_new_table(tmp_path: Path) -> None:
    # The downgrade drops only the table its own upgrade created: the plain inverse.
    _, findings = lint(tmp_path, AUTOGENERATED_TABLE)
    assert findings == [], "\n".join(str(f) for f in findings)


def test_acknowledged_drop_catches_a_downgrade_dropping_a_table_it_did_not_create(
    tmp_path: Path,
) -> None:
    create = """
    op.create_table(
        "consent_forms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_forms")),
    )
    """
    drops = """
    op.drop_table("consent_forms")
    op.drop_table("transactions")
    """
    bad, findings = lint(tmp_path, revision(create, drops))
    assert [(f.rule, f.line) for f in findings] == [
        ("acknowledged-drop", line_of(bad, 'op.drop_table("transactions")'))
    ]
    assert "downgrade() drops table transactions" in findings[0].message


def test_acknowledged_drop_passes_an_acknowledged_drop_and_a_plain_inverse(
    tmp_path: Path,
) -> None:
    header = (
        'acknowledged_drops: dict[str, str] = {"clients.notes": "moved to client_notes in 0a1b"}\n'
    )
    _, findings = lint(tmp_path, revision(DROP_NOTES, RESTORE_NOTES, header=header))
    assert findings == []
    # Dropping in downgrade() what upgrade() added is the inverse, not a loss of old data.
    _, findings = lint(
        tmp_path,
        revision(
            """
            with op.batch_alter_table("clients") as batch_op:
                batch_op.add_column(sa.Column("instagram", sa.String(length=100), nullable=True))
            """,
            """
            with op.batch_alter_table("clients") as batch_op:
                batch_op.drop_column("instagram")
            """,
        ),
    )
    assert findings == []


# --- possible-rename -------------------------------------------------------------------------

# What `alembic revision --autogenerate` wrote after clients.phone and clients.notes were
# renamed to mobile and remarks in the model: two drops and two adds, no rename.
AUTOGENERATED_RENAME = '''"""rename client notes

Revision ID: 18331efd2180
Revises: 0123456789ab
Create Date: 2026-12-02 14:31:36.404254+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "18331efd2180"
down_revision: str | Sequence[str] | None = "0123456789ab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """rename client notes"""
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mobile", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("remarks", sa.Text(), nullable=True))
        batch_op.drop_column("phone")
        batch_op.drop_column("notes")

    # ### end Alembic commands ###


def downgrade() -> None:
    """Undo: rename client notes"""
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notes", sa.TEXT(), nullable=True))
        batch_op.add_column(sa.Column("phone", sa.VARCHAR(length=40), nullable=True))
        batch_op.drop_column("remarks")
        batch_op.drop_column("mobile")

    # ### end Alembic commands ###
'''


def test_possible_rename_catches_an_autogenerated_rename_in_batch_mode(tmp_path: Path) -> None:
    bad, findings = lint(tmp_path, AUTOGENERATED_RENAME)
    # One finding per dropped column, instead of (not besides) acknowledged-drop.
    assert [(f.rule, f.line) for f in findings] == [
        ("possible-rename", line_of(bad, 'drop_column("phone")')),
        ("possible-rename", line_of(bad, 'drop_column("notes")')),
    ]
    phone, notes = findings
    # The downgrade re-adds each dropped column with its type, which tells the pairs apart.
    assert "did you rename clients.phone to clients.mobile" in phone.message
    assert "did you rename clients.notes to clients.remarks" in notes.message
    assert "loses every value" in notes.message
    assert (
        'batch_op.alter_column("notes", new_column_name="remarks", existing_type=sa.TEXT())'
        in notes.fix
    )
    assert 'op.batch_alter_table("clients")' in notes.fix
    assert 'acknowledged_drops: dict[str, str] = {"clients.notes"' in notes.fix
    assert LINE.match(str(notes)), str(notes)


def test_possible_rename_catches_a_drop_and_add_with_op(tmp_path: Path) -> None:
    bad, findings = lint(
        tmp_path,
        revision(
            """
            op.add_column("clients", sa.Column("remarks", sa.Text(), nullable=True))
            op.drop_column("clients", "notes")
            """
        ),
    )
    renames = only(findings, "possible-rename")
    assert [(f.rule, f.line) for f in renames] == [
        ("possible-rename", line_of(bad, 'op.drop_column("clients", "notes")'))
    ]
    assert only(findings, "acknowledged-drop") == []
    assert "did you rename clients.notes to clients.remarks?" in renames[0].message
    assert (
        'alter_column("notes", new_column_name="remarks", existing_type=sa.Text())'
        in renames[0].fix
    )


def test_possible_rename_names_every_candidate_when_types_do_not_tell(tmp_path: Path) -> None:
    bad, findings = lint(
        tmp_path,
        revision(
            """
            with op.batch_alter_table("clients") as batch_op:
                batch_op.drop_column("notes")
                batch_op.add_column(sa.Column("remarks", sa.Text(), nullable=True))
                batch_op.add_column(sa.Column("allergies", sa.Text(), nullable=True))
            """
        ),
    )
    assert [(f.rule, f.line) for f in findings] == [
        ("possible-rename", line_of(bad, 'drop_column("notes")'))
    ]
    assert (
        "did you rename clients.notes to clients.remarks or clients.allergies?"
        in findings[0].message
    )
    assert 'new_column_name="<remarks or allergies>"' in findings[0].fix


def test_possible_rename_passes_an_acknowledged_drop_and_a_plain_add(tmp_path: Path) -> None:
    header = 'acknowledged_drops: dict[str, str] = {"clients.notes": "replaced by remarks"}\n'
    drop_and_add = """
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("notes")
        batch_op.add_column(sa.Column("remarks", sa.Text(), nullable=True))
    """
    _, findings = lint(tmp_path, revision(drop_and_add, header=header))
    assert findings == []
    _, findings = lint(tmp_path / "add", revision(ADD_COLUMN))
    assert findings == []
    # A drop from another table than the add is a plain drop, not a rename.
    _, findings = lint(
        tmp_path / "elsewhere",
        revision(
            """
            with op.batch_alter_table("transactions") as batch_op:
                batch_op.drop_column("note")
            with op.batch_alter_table("clients") as batch_op:
                batch_op.add_column(sa.Column("remarks", sa.Text(), nullable=True))
            """
        ),
    )
    assert [f.rule for f in findings] == ["acknowledged-drop"]


# --- named-constraint ------------------------------------------------------------------------


def test_named_constraint_catches_unnamed_constraints(tmp_path: Path) -> None:
    bad, findings = lint(
        tmp_path,
        revision(
            """
            with op.batch_alter_table("clients") as batch_op:
                batch_op.create_unique_constraint(None, ["phone"])
                batch_op.create_index(None, ["last_name"])
            op.create_table(
                "consent_forms",
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("code", sa.String(length=20), unique=True),
                sa.Column("client_id", sa.Integer(), sa.ForeignKey("clients.id")),
                sa.CheckConstraint("length(code) > 0"),
                sa.PrimaryKeyConstraint("id"),
            )
            """,
            'raise NotImplementedError("test")',
        ),
    )
    assert [(f.rule, f.line) for f in findings] == [
        ("named-constraint", line_of(bad, "create_unique_constraint(None")),
        ("named-constraint", line_of(bad, "create_index(None")),
        ("named-constraint", line_of(bad, "unique=True")),
        ("named-constraint", line_of(bad, 'sa.ForeignKey("clients.id")')),
        ("named-constraint", line_of(bad, "sa.CheckConstraint(")),
        ("named-constraint", line_of(bad, "sa.PrimaryKeyConstraint(")),
    ]
    assert all("NAMING_CONVENTION" in f.fix or "UniqueConstraint" in f.fix for f in findings)


def test_named_constraint_passes_named_constraints(tmp_path: Path) -> None:
    _, findings = lint(
        tmp_path,
        revision(
            """
            with op.batch_alter_table("clients") as batch_op:
                batch_op.create_unique_constraint(batch_op.f("uq_clients_phone"), ["phone"])
                batch_op.create_index(batch_op.f("ix_clients_last_name"), ["last_name"])
            """,
            """
            with op.batch_alter_table("clients") as batch_op:
                batch_op.drop_index(batch_op.f("ix_clients_last_name"))
                batch_op.drop_constraint(batch_op.f("uq_clients_phone"), type_="unique")
            """,
        ),
    )
    assert findings == []


# --- check-before-column-change --------------------------------------------------------------


def test_check_rule_catches_a_rename_and_a_drop_under_a_baseline_check(tmp_path: Path) -> None:
    bad, findings = lint(
        tmp_path,
        revision(
            """
            with op.batch_alter_table("tattoo_sessions") as batch_op:
                batch_op.alter_column("status", new_column_name="state")
                batch_op.drop_column("deposit_cents")
            """,
            'raise NotImplementedError("test")',
            header='acknowledged_drops: dict[str, str] = {"tattoo_sessions.deposit_cents": "t"}\n',
            down_revision=root_revision(),
        ),
    )
    assert [(f.rule, f.line) for f in findings] == [
        ("check-before-column-change", line_of(bad, "new_column_name")),
        ("check-before-column-change", line_of(bad, 'drop_column("deposit_cents")')),
    ]
    assert "ck_tattoo_sessions_status" in findings[0].message
    assert 'drop_constraint("ck_tattoo_sessions_status", type_="check")' in findings[0].fix
    assert "ck_tattoo_sessions_deposit_not_negative" in findings[1].message


def test_check_rule_passes_when_the_check_is_dropped_first(tmp_path: Path) -> None:
    _, findings = lint(
        tmp_path,
        revision(
            """
            with op.batch_alter_table("tattoo_sessions") as batch_op:
                batch_op.drop_constraint("ck_tattoo_sessions_status", type_="check")
                batch_op.alter_column("status", new_column_name="state")
                batch_op.create_check_constraint(
                    "ck_tattoo_sessions_state", "state IN ('scheduled', 'completed')"
                )
            """,
            """
            with op.batch_alter_table("tattoo_sessions") as batch_op:
                batch_op.drop_constraint("ck_tattoo_sessions_state", type_="check")
                batch_op.alter_column("state", new_column_name="status")
                batch_op.create_check_constraint(
                    "ck_tattoo_sessions_status", "status IN ('scheduled', 'completed')"
                )
            """,
        ),
    )
    assert findings == []


def test_check_rule_follows_checks_through_earlier_revisions(tmp_path: Path) -> None:
    adds_check = revision(
        """
        with op.batch_alter_table("clients") as batch_op:
            batch_op.create_check_constraint("ck_clients_phone_digits", "phone NOT GLOB '*[a-z]*'")
        """,
        """
        with op.batch_alter_table("clients") as batch_op:
            batch_op.drop_constraint("ck_clients_phone_digits", type_="check")
        """,
        rev="1111aaaa2222",
    )
    renames_phone = """
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column("phone", new_column_name="mobile")
    """
    back = """
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column("mobile", new_column_name="phone")
    """
    bad, findings = lint(
        tmp_path, adds_check, revision(renames_phone, back, down_revision="1111aaaa2222")
    )
    assert [(f.rule, f.line) for f in findings] == [
        ("check-before-column-change", line_of(bad, "new_column_name"))
    ]
    assert "ck_clients_phone_digits" in findings[0].message

    drops_check = revision(
        """
        with op.batch_alter_table("clients") as batch_op:
            batch_op.drop_constraint("ck_clients_phone_digits", type_="check")
        """,
        'raise NotImplementedError("test")',
        down_revision="1111aaaa2222",
        rev="3333bbbb4444",
    )
    _, findings = lint(
        tmp_path / "dropped",
        adds_check,
        drops_check,
        revision(renames_phone, back, down_revision="3333bbbb4444"),
    )
    assert findings == []


# --- downgrade -------------------------------------------------------------------------------

ADD_COLUMN = """
with op.batch_alter_table("clients") as batch_op:
    batch_op.add_column(sa.Column("instagram", sa.String(length=100), nullable=True))
"""


def test_downgrade_rule_catches_an_empty_and_a_missing_downgrade(tmp_path: Path) -> None:
    bad, findings = lint(tmp_path, revision(ADD_COLUMN, '"""Undo."""\npass'))
    assert [(f.rule, f.line) for f in findings] == [("downgrade", line_of(bad, "def downgrade"))]
    source = revision(ADD_COLUMN)
    source = source[: source.index("def downgrade")]
    bad, findings = lint(tmp_path / "missing", source)
    assert [f.rule for f in findings] == ["downgrade"]
    assert "no downgrade()" in findings[0].message
    assert "raise NotImplementedError" in findings[0].fix


def test_downgrade_rule_passes_a_revision_just_started_by_hand(tmp_path: Path) -> None:
    # `alembic revision -m ...` writes both functions empty: nothing to undo yet.
    _, findings = lint(tmp_path, revision('"""Start."""\npass', '"""Undo."""\npass'))
    assert findings == []


def test_downgrade_rule_passes_real_steps_and_an_explicit_refusal(tmp_path: Path) -> None:
    _, findings = lint(
        tmp_path,
        revision(
            ADD_COLUMN,
            """
            with op.batch_alter_table("clients") as batch_op:
                batch_op.drop_column("instagram")
            """,
        ),
    )
    assert findings == []
    _, findings = lint(
        tmp_path / "refuses",
        revision(
            ADD_COLUMN,
            '"""Refused."""\nraise NotImplementedError("merged rows cannot be split again")',
        ),
    )
    assert findings == []


# --- batch-alter -----------------------------------------------------------------------------


def test_batch_alter_catches_an_alter_outside_batch_mode(tmp_path: Path) -> None:
    bad, findings = lint(
        tmp_path,
        revision(
            'op.alter_column("clients", "phone", type_=sa.String(length=64))',
            'op.alter_column("clients", "phone", type_=sa.String(length=40))',
        ),
    )
    assert [(f.rule, f.line) for f in findings] == [
        ("batch-alter", line_of(bad, "length=64")),
        ("batch-alter", line_of(bad, "length=40")),
    ]
    assert 'op.batch_alter_table("clients")' in findings[0].fix


def test_batch_alter_passes_batch_mode_and_in_place_additions(tmp_path: Path) -> None:
    _, findings = lint(
        tmp_path,
        revision(
            """
            op.add_column("clients", sa.Column("instagram", sa.String(length=100)))
            op.create_index(op.f("ix_clients_last_name"), "clients", ["last_name"])
            with op.batch_alter_table("clients") as batch_op:
                batch_op.alter_column("phone", type_=sa.String(length=64))
            """,
            """
            with op.batch_alter_table("clients") as batch_op:
                batch_op.alter_column("phone", type_=sa.String(length=40))
                batch_op.drop_index(batch_op.f("ix_clients_last_name"))
                batch_op.drop_column("instagram")
            """,
        ),
    )
    assert findings == []
