"""A scratch copy of the project with extra revisions, run in child processes like a newer app."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from data.db.head import read_history
from tests.conftest import PROJECT_ROOT, inklink_db, subprocess_env
from tests.file_kind import connect

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")

REVISION_TEMPLATE = '''"""{doc}"""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


@dataclass(frozen=True)
class Revision:
    revision: str
    upgrade: str
    # The lint refuses an empty downgrade(): a scratch revision refuses on purpose.
    downgrade: str = 'raise NotImplementedError("a scratch revision of the tests")'
    doc: str = "scratch revision"


def _indent(body: str) -> str:
    return textwrap.indent(textwrap.dedent(body).strip() or "pass", "    ")


def git(root: Path, *args: str) -> None:
    """Run git in ``root`` with an identity of its own, so it works on CI and fresh machines."""
    subprocess.run(
        ["git", "-c", "user.name=InkLinkOS tests", "-c", "user.email=tests@inklink.invalid",
         "-c", "commit.gpgsign=false", *args],
        cwd=root, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def commit_all(root: Path, message: str) -> None:
    """``root`` as a clone of the shared history: everything in it committed."""
    if not (root / ".git").exists():
        git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)


class ScratchProject:
    """The project copied to ``root``: its own migrations, record and ``data`` package.

    The copy is a git repository with everything committed, as a fresh clone is: the
    revisions it started with are released, the ones :meth:`add` appends are not.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(PROJECT_ROOT / "data", root / "data", ignore=_IGNORE)
        shutil.copytree(PROJECT_ROOT / "migrations", root / "migrations", ignore=_IGNORE)
        for name in ("alembic.ini", "pyproject.toml"):
            shutil.copy2(PROJECT_ROOT / name, root / name)
        commit_all(root, "the shared history")
        self.head = read_history(root / "migrations").head

    def add(self, revision: Revision) -> Path:
        """Append ``revision`` after the current head and record it, as its developer would."""
        path = self.write(revision, down=self.head)
        self.head = revision.revision
        return path

    def write(self, revision: Revision, *, down: str) -> Path:
        """(Re)write a revision's file and record it: how a developer fixes a revision that
        never left their machine."""
        path = self.root / "migrations" / "versions" / f"2099_{revision.revision}_scratch.py"
        path.write_text(
            REVISION_TEMPLATE.format(
                doc=revision.doc,
                revision=revision.revision,
                down=down,
                upgrade=_indent(revision.upgrade),
                downgrade=_indent(revision.downgrade),
            )
        )
        self.record()
        return path

    def record(self) -> subprocess.CompletedProcess[str]:
        """``python -m data.db.revisions --update`` in the copy; fails on any problem."""
        result = subprocess.run(
            [sys.executable, "-m", "data.db.revisions", "--update"],
            env=self.env(self.root / "unused.db"),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise AssertionError(f"recording failed:\n{result.stdout}\n{result.stderr}")
        return result

    def env(self, db_path: Path, **extra: str) -> dict[str, str]:
        env = subprocess_env(db_path, **extra)
        env["PYTHONPATH"] = str(self.root)
        return env

    def python(
        self, code: str, db_path: Path, *, check: bool = True, timeout: float = 300, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env(db_path, **extra),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"child failed:\n{result.stdout}\n{result.stderr}")
        return result

    def init_db(
        self, db_path: Path, *, check: bool = True, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        """``init_db()`` as the newer app would run it; prints the outcome's fields."""
        code = (
            "from data.db.session import init_db\n"
            "o = init_db(progress=lambda p: print('PROGRESS', p.number, p.total, p.revision))\n"
            "print('OUTCOME', o.action, o.from_revision, o.to_revision, o.backup_path)\n"
        )
        return self.python(code, db_path, check=check, **extra)

    def inklink_db(self, *args: str, db_path: Path) -> subprocess.CompletedProcess[str]:
        """The newer app's ``inklink-db`` command on ``db_path``."""
        return inklink_db(*args, db_path=db_path, env=self.env(db_path), cwd=self.root)

    def alembic(
        self, *args: str, db_path: Path, check: bool = True, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("alembic")), *args],
            env=self.env(db_path, **extra),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"alembic failed:\n{result.stdout}\n{result.stderr}")
        return result


def query(db_path: Path, sql: str, *, key: str | None = None) -> list[tuple[object, ...]]:
    """Read through a connection that sets nothing (no policy), as an outside observer; an
    encrypted file with ``key`` (64 hex digits), else with INKLINK_DB_KEY (see file_kind)."""
    connection = connect(db_path, key=key)
    try:
        return [tuple(row) for row in connection.execute(sql)]
    finally:
        connection.close()


def outcome_line(result: subprocess.CompletedProcess[str]) -> list[str]:
    for line in result.stdout.splitlines():
        if line.startswith("OUTCOME "):
            return line.split()[1:]
    raise AssertionError(f"no outcome printed:\n{result.stdout}\n{result.stderr}")
