"""The revision this code migrates to, read from ``migrations/manifest.json`` without Alembic.

The manifest is the one record of the history: every revision file, oldest first, with its
checksum, written by the authoring command (``alembic revision`` records what it writes;
``python -m data.authoring.revisions --update`` records a file that arrived another way). Beside it,
``migrations/schemas/<revision>.json`` is the schema each revision promises (Android Room's
exported schemas): what a migrated database is verified against.

Nothing is generated as Python: a module rewritten twice within a second at the same size
keeps answering from its stale ``.pyc``. Reading a small JSON file costs well under 1 ms.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import data

MANIFEST_NAME = "manifest.json"
SCHEMAS_FOLDER = "schemas"
RECORD_COMMAND = "python -m data.authoring.revisions --update"


def migrations_dir() -> Path:
    """The migration scripts: in the package when installed or frozen, else in the checkout."""
    packaged = Path(data.__file__).parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(data.__file__).resolve().parent.parent / "migrations"


def revision_file_names(versions: Path) -> frozenset[str]:
    """The revision files of a ``versions`` folder, as Alembic would load them."""
    try:
        names = os.listdir(versions)
    except OSError:
        return frozenset()
    return frozenset(n for n in names if n.endswith(".py") and not n.startswith(("_", ".")))


class RecordedHistory:
    """The recorded revisions, oldest first, and whether the files on disk agree."""

    __slots__ = ("files", "problem", "revisions")

    def __init__(self, revisions: tuple[str, ...], files: tuple[str, ...], problem: str | None):
        self.revisions = revisions
        self.files = files
        self.problem = problem

    @property
    def head(self) -> str:
        return self.revisions[-1] if self.revisions else ""

    @property
    def baseline(self) -> str:
        return self.revisions[0] if self.revisions else ""


def read_history(migrations: Path) -> RecordedHistory:
    """The manifest of ``migrations``, checked against the names in ``versions/`` (cheap).

    A file the manifest does not record (or a recorded file that is gone) makes ``problem``
    a sentence saying what differs and the one command that fixes it.
    """
    manifest = migrations / MANIFEST_NAME
    try:
        entries: list[dict[str, Any]] = json.loads(manifest.read_text(encoding="utf-8"))[
            "revisions"
        ]
        revisions = tuple(str(entry["revision"]) for entry in entries)
        files = tuple(str(entry["file"]) for entry in entries)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return RecordedHistory((), (), f"{manifest} cannot be read ({exc!r})")
    present = revision_file_names(migrations / "versions")
    unrecorded = sorted(present - set(files))
    missing = sorted(set(files) - present)
    problem = None
    if unrecorded or missing:
        parts = []
        if unrecorded:
            parts.append(f"{', '.join(unrecorded)} not recorded")
        if missing:
            parts.append(f"{', '.join(missing)} recorded but missing")
        problem = (
            f"the recorded head ({revisions[-1] if revisions else 'none'}) and the revision "
            f"files in {migrations / 'versions'} disagree ({'; '.join(parts)}): run "
            f"`{RECORD_COMMAND}` in the project and commit {MANIFEST_NAME}"
        )
    return RecordedHistory(revisions, files, problem)


@cache
def recorded_history() -> RecordedHistory:
    """This code's own history (read once per process)."""
    return read_history(migrations_dir())


def exported_schema(revision: str, migrations: Path | None = None) -> Any:
    """The schema ``revision`` promises (``schemas/<revision>.json``), or None if none."""
    path = (migrations or migrations_dir()) / SCHEMAS_FOLDER / f"{revision}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["tables"]
    except (OSError, ValueError, KeyError):
        return None


def __getattr__(name: str) -> str:
    # Kept for code that imported the constants of the generated head.py this replaces.
    if name == "HEAD_REVISION":
        return recorded_history().head
    if name == "BASELINE_REVISION":
        return recorded_history().baseline
    raise AttributeError(name)
