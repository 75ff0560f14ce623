"""Released revisions never change: ``python -m data.db.revisions --update`` records them.

``--update`` adds every new revision's checksum to ``migrations/manifest.json`` and rewrites
``data/db/head.py`` (the head the app's fast path compares with, known without Alembic). It
refuses to re-record a revision whose file changed, unless named with ``--amend`` (only for
a revision that never left your machine). ``--check`` changes nothing and fails on any
difference; the test suite runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data.db.revision_lint import parse_revision, revision_files

MANIFEST_NAME = "manifest.json"
UPDATE_COMMAND = "python -m data.db.revisions --update"
HEAD_MODULE = Path(__file__).with_name("head.py")

_HEAD_TEMPLATE = (
    '"""The revision this code migrates to, known without loading Alembic or the scripts.\n'
    '''
Written by ``{command}``; a test fails when it disagrees
with the migration scripts, so it cannot go stale unnoticed.
"""

HEAD_REVISION = "{head}"
BASELINE_REVISION = "{base}"
'''
)


class RevisionChainError(Exception):
    """The revision files do not form one line from a single base to a single head."""


@dataclass(frozen=True)
class Recorded:
    revision: str
    file: str
    sha256: str


def checksum(path: Path) -> str:
    """The file's SHA-256, with line endings normalised (a Windows checkout stays equal)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def default_migrations() -> Path:
    from data.db.runner import migrations_location

    return Path(migrations_location())


def chain(versions: Path) -> list[tuple[str, Path]]:
    """``(revision, file)`` from the base to the single head, read from the sources."""
    parsed = [parse_revision(path) for path in revision_files(versions)]
    by_id: dict[str, Path] = {}
    children: dict[str | None, list[str]] = {}
    for revision in parsed:
        if revision.revision is None:
            raise RevisionChainError(f"{revision.path}: no `revision = ...` identifier")
        if revision.revision in by_id:
            raise RevisionChainError(
                f"revision {revision.revision} is in both {by_id[revision.revision].name} "
                f"and {revision.path.name}"
            )
        by_id[revision.revision] = revision.path
        for down in revision.down_revisions or (None,):
            children.setdefault(down, []).append(revision.revision)
    ordered: list[tuple[str, Path]] = []
    current: str | None = None
    while children.get(current):
        following = children[current]
        if len(following) != 1:
            raise RevisionChainError(
                f"revisions {', '.join(sorted(following))} all follow "
                f"{current or 'the empty database'}: the chain has branched. Make the newer "
                "one revise the other (its down_revision), so the chain stays one line"
            )
        current = following[0]
        ordered.append((current, by_id[current]))
    if len(ordered) != len(by_id):
        stray = sorted(set(by_id) - {revision for revision, _ in ordered})
        raise RevisionChainError(
            f"revisions {', '.join(stray)} are not on the line from the base to the head"
        )
    return ordered


def read_manifest(path: Path) -> list[Recorded]:
    if not path.exists():
        return []
    document = json.loads(path.read_text(encoding="utf-8"))
    return [Recorded(**entry) for entry in document["revisions"]]


def write_manifest(path: Path, recorded: Sequence[Recorded]) -> None:
    document = {
        "about": (
            "Checksums of the released migration revisions, oldest first. A released "
            f"revision is never edited; add new ones with `{UPDATE_COMMAND}`."
        ),
        "revisions": [
            {"revision": r.revision, "file": r.file, "sha256": r.sha256} for r in recorded
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def render_head(head: str, base: str) -> str:
    return _HEAD_TEMPLATE.format(command=UPDATE_COMMAND, head=head, base=base)


def _compare(
    ordered: Sequence[tuple[str, Path]], recorded: Sequence[Recorded], amend: frozenset[str]
) -> tuple[list[Recorded], list[str]]:
    """The manifest the files call for, and the problems that forbid writing it."""
    problems: list[str] = []
    files = dict(ordered)
    for entry in recorded:
        path = files.get(entry.revision)
        if path is None:
            problems.append(
                f"released revision {entry.revision} ({entry.file}) is gone. Restore it: "
                "studios' databases may be at that revision"
            )
        elif path.name != entry.file:
            problems.append(
                f"released revision {entry.revision} was renamed from {entry.file} to "
                f"{path.name}. Rename it back"
            )
        elif checksum(path) != entry.sha256 and entry.revision not in amend:
            problems.append(
                f"{path}: released revision {entry.revision} changed since it was recorded. "
                "Undo the edit (`git checkout -- <file>`) and write a new revision for the "
                "change; only a revision that never left your machine may be re-recorded, "
                f"with `{UPDATE_COMMAND} --amend {entry.revision}`"
            )
    known = [entry.revision for entry in recorded]
    in_order = [revision for revision, _ in ordered]
    if in_order[: len(known)] != known and not problems:
        problems.append(
            "the manifest's order differs from the revision chain: a new revision must "
            f"revise the current head ({known[-1] if known else 'none'})"
        )
    wanted = [Recorded(revision, path.name, checksum(path)) for revision, path in ordered]
    return wanted, problems


def check(migrations: Path | None = None, head_module: Path = HEAD_MODULE) -> list[str]:
    """Every difference between the revision files, the manifest and ``head.py``."""
    migrations = migrations or default_migrations()
    try:
        ordered = chain(migrations / "versions")
    except RevisionChainError as exc:
        return [str(exc)]
    recorded = read_manifest(migrations / MANIFEST_NAME)
    wanted, problems = _compare(ordered, recorded, frozenset())
    known = {entry.revision for entry in recorded}
    for entry in wanted:
        if entry.revision not in known:
            problems.append(
                f"revision {entry.revision} ({entry.file}) is not in {MANIFEST_NAME}: run "
                f"`{UPDATE_COMMAND}` and commit both files"
            )
    if ordered:
        expected = render_head(ordered[-1][0], ordered[0][0])
        found = head_module.read_text(encoding="utf-8") if head_module.exists() else ""
        if found != expected:
            problems.append(
                f"{head_module} does not name head {ordered[-1][0]} and baseline "
                f"{ordered[0][0]}: run `{UPDATE_COMMAND}`"
            )
    return problems


def update(
    migrations: Path | None = None,
    head_module: Path = HEAD_MODULE,
    amend: frozenset[str] = frozenset(),
) -> list[str]:
    """Record new revisions and rewrite ``head.py``; returns the problems that stopped it."""
    migrations = migrations or default_migrations()
    try:
        ordered = chain(migrations / "versions")
    except RevisionChainError as exc:
        return [str(exc)]
    if not ordered:
        return [f"no revisions in {migrations / 'versions'}"]
    manifest = migrations / MANIFEST_NAME
    wanted, problems = _compare(ordered, read_manifest(manifest), amend)
    if problems:
        return problems
    write_manifest(manifest, wanted)
    head_module.write_text(render_head(ordered[-1][0], ordered[0][0]), encoding="utf-8")
    return []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.db.revisions",
        description="Record the released migration revisions and the head the app expects.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--update", action="store_true", help="record new revisions, rewrite data/db/head.py"
    )
    action.add_argument("--check", action="store_true", help="fail on any difference")
    parser.add_argument(
        "--amend",
        action="append",
        default=[],
        metavar="REVISION",
        help="with --update: re-record a changed revision that was never released",
    )
    arguments = parser.parse_args(argv)
    problems = update(amend=frozenset(arguments.amend)) if arguments.update else check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems and arguments.update:
        manifest = default_migrations() / MANIFEST_NAME
        print(f"{manifest}: {len(read_manifest(manifest))} revision(s) recorded")
        print(f"{HEAD_MODULE}: head is {chain(manifest.parent / 'versions')[-1][0]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
