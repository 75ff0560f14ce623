"""Scratch copies of the project with a longer migration history, for timing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from data.db.head import read_history

PROJECT_ROOT = Path(__file__).resolve().parents[1]
COPIED = ("data", "migrations", "alembic.ini", "pyproject.toml")

# Schema-neutral (an index made and dropped again): a fresh database made from the copy's
# models still matches the head's exported schema.
SYNTHETIC_REVISION = '''"""bench: synthetic revision {number} (a tiny index, made and dropped)

Revision ID: {revision}
Revises: {down}
"""

from alembic import op

revision: str = "{revision}"
down_revision: str | None = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_bench_{number:04d}", "clients", ["last_name"])
    op.drop_index("ix_bench_{number:04d}", table_name="clients")


def downgrade() -> None:
    op.create_index("ix_bench_{number:04d}", "clients", ["last_name"])
    op.drop_index("ix_bench_{number:04d}", table_name="clients")
'''

# A pure rebuild of transactions, timed from inside the migration transaction: the file
# named by BENCH_REBUILD_TIMING receives the milliseconds the rebuild itself took.
REBUILD_REVISION = '''"""bench: rebuild transactions ({how})

Revision ID: {revision}
Revises: {down}
"""

import os
import time

from alembic import op

revision: str = "{revision}"
down_revision: str | None = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    started = time.perf_counter()
{body}
    elapsed = (time.perf_counter() - started) * 1000
    # Unset while the revision is recorded (its schema is replayed in memory).
    if os.environ.get("BENCH_REBUILD_TIMING"):
        with open(os.environ["BENCH_REBUILD_TIMING"], "w") as handle:
            handle.write(repr(elapsed))


def downgrade() -> None:
    raise NotImplementedError("bench: a rebuild is not undone")
'''

REBUILD_BODIES = {
    # Alembic's own batch mode, as a revision written by the book would do it.
    "batch": '    with op.batch_alter_table("transactions", recreate="always"):\n        pass',
    # The project's helper for the same rebuild (data/db/rebuild.py).
    "helper": (
        "    from data.db.rebuild import rebuild_table\n\n"
        '    rebuild_table(op.get_bind(), "transactions")'
    ),
}


# What most revisions are: one nullable column added to a table (no table rebuilt).
ADD_COLUMN_REVISION = '''"""bench: add clients.bench_note (one nullable column)

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision: str = "{revision}"
down_revision: str | None = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("bench_note", sa.String(length=40), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("bench: not undone")
'''


def current_head(root: Path = PROJECT_ROOT) -> str:
    """The head recorded in the copy's ``migrations/manifest.json``."""
    history = read_history(root / "migrations")
    if history.problem is not None or not history.head:
        raise RuntimeError(f"{root}: {history.problem or 'no revisions recorded'}")
    return history.head


def copy_project(target: Path) -> Path:
    """Copy what ``init_db()`` and Alembic need into ``target`` (no caches, no databases)."""
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.db", "*.db-*", "_pyinstaller")
    for name in COPIED:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return target


def record(root: Path) -> None:
    """Record the copy's new revision files as a developer does (manifest and exports)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "data.db.revisions", "--update"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"recording the revisions of {root} failed:\n{result.stderr}")


def synthetic_revision_id(number: int) -> str:
    return f"bench{number:07d}"


def add_synthetic_revisions(root: Path, count: int) -> list[str]:
    """Chain ``count`` trivial revisions after the copy's head; return the whole chain added."""
    versions = root / "migrations" / "versions"
    down = current_head(root)
    chain = []
    for number in range(1, count + 1):
        revision = synthetic_revision_id(number)
        text = SYNTHETIC_REVISION.format(number=number, revision=revision, down=down)
        (versions / f"bench_{number:04d}_{revision}.py").write_text(text)
        chain.append(revision)
        down = revision
    if chain:
        record(root)
    return chain


def add_rebuild_revision(root: Path, how: str) -> str:
    """One revision that rebuilds ``transactions`` (``how``: batch or helper)."""
    down = current_head(root)
    revision = f"rebuild{how}"[:12]
    text = REBUILD_REVISION.format(how=how, revision=revision, down=down, body=REBUILD_BODIES[how])
    (root / "migrations" / "versions" / f"bench_rebuild_{revision}.py").write_text(text)
    record(root)
    return revision


def add_column_revision(root: Path) -> str:
    """One revision that adds a nullable column to ``clients``."""
    down = current_head(root)
    revision = "benchaddcol1"
    text = ADD_COLUMN_REVISION.format(revision=revision, down=down)
    (root / "migrations" / "versions" / f"bench_addcol_{revision}.py").write_text(text)
    record(root)
    return revision


def scratch_project(target: Path, extra_revisions: int) -> tuple[Path, list[str]]:
    """A copy of the project with ``extra_revisions`` synthetic revisions after its head."""
    root = copy_project(target)
    base = current_head(root)
    return root, [base, *add_synthetic_revisions(root, extra_revisions)]
