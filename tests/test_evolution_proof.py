"""The suite follows head: five realistic schema changes made through the documented workflow,
then the suite itself, unedited, run on the result.

A copy of the project becomes a git repository (a fresh clone), and a developer's week is
played on it with the real commands: change the models, ``alembic revision --autogenerate``
(which writes, formats, lints and records), review and edit, commit. Then the copy's own test
suite runs against its new history. It must pass without a single test being edited.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clone import CLIENT_MODEL, ID_LINE, Clone, ok

AFTERCARE_MODEL = '''"""An aftercare check-in: how a tattoo is healing, some days after its session."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from data.models.base import Base, intpk


class AftercareCheckin(Base):
    __tablename__ = "aftercare_checkins"

    id: Mapped[intpk]
    session_id: Mapped[int] = mapped_column(
        ForeignKey("tattoo_sessions.id", ondelete="RESTRICT"), index=True
    )
    checked_at: Mapped[dt.datetime]
    healing_notes: Mapped[str | None] = mapped_column(Text)
'''

RENAME_UPGRADE = """
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column(
            "pronouns", new_column_name="preferred_pronouns", existing_type=sa.String(length=40)
        )
"""
RENAME_DOWNGRADE = """
    with op.batch_alter_table("clients") as batch_op:
        batch_op.alter_column(
            "preferred_pronouns", new_column_name="pronouns", existing_type=sa.String(length=40)
        )
"""
DATA_STEP = """
    clients = live_table("clients")
    op.execute(
        clients.update().values(full_name=clients.c.first_name + " " + clients.c.last_name)
    )
"""


def tree_digest(root: Path) -> str:
    """One hash over every file's path and bytes: proof the tests were not edited."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class Week:
    """The developer's commands, each checked."""

    def __init__(self, clone: Clone, scratch: Path) -> None:
        self.clone = clone
        self.scratch = scratch

    def autogenerate(self, message: str) -> Path:
        before = self.clone.manifest()
        ok(self.clone.alembic("upgrade", "head", db_path=self.scratch))
        ok(self.clone.alembic("revision", "--autogenerate", "-m", message, db_path=self.scratch))
        after = self.clone.manifest()
        assert after[:-1] == before, f"{message}: no revision recorded"
        return self.clone.revision_file(after[-1])

    def by_hand(self, message: str, upgrade: str, downgrade: str) -> Path:
        ok(self.clone.alembic("upgrade", "head", db_path=self.scratch))
        ok(self.clone.alembic("revision", "-m", message, db_path=self.scratch))
        path = self.clone.revision_file(self.clone.manifest()[-1])
        fill(path, upgrade, downgrade)
        return path

    def finish(self, message: str) -> None:
        """Re-record what was edited, apply it, check nothing is left over, commit."""
        ok(self.clone.python("-m", "data.db.revisions", "--update", db_path=self.scratch))
        ok(self.clone.alembic("upgrade", "head", db_path=self.scratch))
        ok(self.clone.alembic("check", db_path=self.scratch))
        ok(self.clone.python("-m", "data.db.revisions", "--check", db_path=self.scratch))
        self.clone.commit(message)


def fill(path: Path, upgrade: str, downgrade: str | None = None) -> None:
    """Put steps at the top of ``upgrade()`` (after its docstring) and ``downgrade()``."""
    lines = path.read_text().splitlines(keepends=True)
    for function, steps in (("def upgrade()", upgrade), ("def downgrade()", downgrade)):
        if steps is None:
            continue
        at = next(i for i, line in enumerate(lines) if line.startswith(function))
        lines.insert(at + 2, steps.strip("\n") + "\n")
    text = "".join(lines)
    # An empty function keeps its `pass`, harmless after real steps.
    path.write_text(text)


@pytest.mark.slow
def test_five_realistic_changes_leave_the_suite_green_unedited(
    tmp_path: Path, world_readable_dir: Path
) -> None:
    # Outside pytest's 0700 temp folder: the copy's own permission tests drop root, and the
    # unprivileged child must still read the copy's code and migrations.
    clone = Clone(world_readable_dir / "clone", with_tests=True)
    tests_before = tree_digest(clone.root / "tests")
    week = Week(clone, tmp_path / "authoring.db")
    start = len(clone.manifest())

    # 1. A nullable column.
    clone.add_client_column("    pronouns: Mapped[str | None] = mapped_column(String(40))")
    week.autogenerate("add clients.pronouns")
    week.finish("Clients: pronouns")

    # 2. A NOT NULL column with a server default (existing rows take the default).
    clone.add_client_column(
        '    reminder_channel: Mapped[str] = mapped_column(String(10), server_default="email")'
    )
    week.autogenerate("add clients.reminder_channel")
    week.finish("Clients: how to send reminders")

    # 3. A new table with a foreign key to an existing one.
    (clone.root / "data" / "models" / "aftercare_checkin.py").write_text(AFTERCARE_MODEL)
    clone.edit(
        "data/models/__init__.py",
        "from data.models.base import",
        "from data.models.aftercare_checkin import AftercareCheckin\nfrom data.models.base import",
    )
    week.autogenerate("add aftercare_checkins")
    week.finish("Aftercare check-ins")

    # 4. A column rename, written by hand (autogenerate would drop and add, losing values).
    clone.edit(
        CLIENT_MODEL,
        "    pronouns: Mapped[str | None]",
        "    preferred_pronouns: Mapped[str | None]",
    )
    week.by_hand("rename clients.pronouns to preferred_pronouns", RENAME_UPGRADE, RENAME_DOWNGRADE)
    week.finish("Clients: preferred_pronouns")

    # 5. A data step: a new column filled from old ones, through the table as it is then.
    clone.add_client_column("    full_name: Mapped[str | None] = mapped_column(String(201))")
    path = week.autogenerate("add clients.full_name, filled from the names")
    text = path.read_text().replace(
        "from alembic import op",
        "from alembic import op\n\nfrom data.migration.data_steps import live_table",
        1,
    )
    marker = "    # ### end Alembic commands ###\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + DATA_STEP.lstrip("\n"), 1))
    week.finish("Clients: full names")

    assert len(clone.manifest()) == start + 5
    assert ID_LINE in (clone.root / CLIENT_MODEL).read_text()
    assert tree_digest(clone.root / "tests") == tests_before, "the workflow edited a test"

    # The copy's own suite, unedited, on its new history (this slow proof itself excluded).
    env = clone.env(tmp_path / "unused.db")
    env.pop("DB_PATH")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"],
        cwd=clone.root,
        env={**env, "INKLINK_REQUIRE_POSTGRES": os.environ.get("INKLINK_REQUIRE_POSTGRES", "")},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    tail = "\n".join(result.stdout.splitlines()[-40:])
    assert result.returncode == 0, f"the suite failed on the evolved copy:\n{tail}\n{result.stderr}"
    assert " passed" in tail and " failed" not in tail
    print("the evolved copy's suite:", tail.splitlines()[-1])  # shown with pytest -s
