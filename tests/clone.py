"""A copy of the project as a fresh clone: its own git repository, driven through real commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT, subprocess_env

CLIENT_MODEL = Path("data/models/client.py")
# The one line of the Client model sure to stay: new columns are declared after it.
ID_LINE = "    id: Mapped[intpk]\n"


class Clone:
    """The project's files in a new git repository, driven through real commands."""

    def __init__(self, root: Path, *, with_tests: bool = False) -> None:
        self.root = root
        skipped = ("examples/",) if with_tests else ("tests/", "bench/", "examples/")
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        for name in filter(None, listed):
            source = PROJECT_ROOT / name
            if source.is_file() and not name.startswith(skipped):
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read_bytes())
        self.git("init", "-q")
        self.commit("a fresh clone")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.invalid", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def env(self, db_path: Path) -> dict[str, str]:
        env = subprocess_env(db_path)
        env["PYTHONPATH"] = str(self.root)
        return env

    def run(self, *args: str, db_path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            cwd=self.root,
            env=self.env(db_path),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def alembic(self, *args: str, db_path: Path) -> subprocess.CompletedProcess[str]:
        return self.run(str(Path(sys.executable).with_name("alembic")), *args, db_path=db_path)

    def python(self, *args: str, db_path: Path) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, *args, db_path=db_path)

    def add_client_column(self, line: str) -> None:
        self.edit(CLIENT_MODEL, ID_LINE, ID_LINE + line + "\n")

    def edit(self, relative: Path | str, old: str, new: str) -> None:
        """Replace ``old`` (which must be there, once) in a file of the clone."""
        path = self.root / relative
        text = path.read_text()
        assert text.count(old) == 1, f"{old!r} is not once in {path}"
        path.write_text(text.replace(old, new))

    def manifest(self) -> list[str]:
        document = json.loads((self.root / "migrations" / "manifest.json").read_text())
        return [entry["revision"] for entry in document["revisions"]]

    def revision_file(self, revision: str) -> Path:
        (path,) = (self.root / "migrations" / "versions").glob(f"*{revision}*.py")
        return path


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"
    return result
