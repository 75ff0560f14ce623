"""The record of the migration history: ``migrations/manifest.json`` and ``migrations/schemas/``.

Every ``alembic revision`` records the file it writes (a post-write hook in ``alembic.ini``
calls :func:`record_written`); ``python -m data.authoring.revisions --update`` records files that
arrived another way, or re-records a revision edited after it was written. Recording:

- adds the revision's checksum to ``manifest.json``, whose last entry is the head the app
  migrates to (``data.db.head`` reads it without loading Alembic);
- writes ``schemas/<revision>.json``, the schema the chain up to that revision creates
  (replayed in an in-memory SQLite database): what a migrated database is verified against,
  so a scratch database can be brought to the committed head while the models lead;
- runs the migration lint on what it recorded.

A revision is *released* once its manifest entry reached the shared history: the manifest as
committed at the merge base of ``HEAD`` and its upstream branch (or at ``HEAD`` when the
branch has no upstream). A released revision is never re-recorded: editing it is refused.
Outside a git checkout every recorded revision counts as released. ``--check`` changes nothing
and fails on any difference; the test suite runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.db.head import MANIFEST_NAME, RECORD_COMMAND, SCHEMAS_FOLDER, migrations_dir
from data.migration import guards
from data.migration.revision_lint import Finding, lint_files, parse_revision, revision_files
from data.migration.schema import Snapshot, sqlite_query, sqlite_snapshot

UPDATE_COMMAND = RECORD_COMMAND
_VERSION_TABLE = "alembic_version"


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
    return migrations_dir()


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


def render_manifest(recorded: Sequence[Recorded]) -> str:
    document = {
        "about": (
            "The migration history, oldest first; the last entry is the head. Written when a "
            "revision is recorded (README, 'Writing a migration'); never edited by hand."
        ),
        "revisions": [
            {"revision": r.revision, "file": r.file, "sha256": r.sha256} for r in recorded
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def render_schema(revision: str, snapshot: Snapshot) -> str:
    document = {
        "about": (
            f"The schema revision {revision} promises, as SQLite stores it (written when the "
            "revision is recorded; never edited by hand)."
        ),
        "revision": revision,
        "tables": snapshot,
    }
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def released_revisions(migrations: Path) -> frozenset[str] | None:
    """The revisions recorded in the manifest of the shared history; None outside git."""
    top = _git(migrations, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    upstream = _git(migrations, "rev-parse", "--verify", "--quiet", "@{upstream}")
    base = _git(migrations, "merge-base", "HEAD", "@{upstream}") if upstream else None
    commit = (base or "HEAD").strip()
    manifest = (migrations / MANIFEST_NAME).resolve()
    try:
        relative = manifest.relative_to(Path(top.strip()).resolve()).as_posix()
    except ValueError:
        return None
    shown = _git(migrations, "show", f"{commit}:{relative}")
    if shown is None:  # no commit yet, or the manifest was never committed
        return frozenset()
    try:
        return frozenset(str(e["revision"]) for e in json.loads(shown)["revisions"])
    except (ValueError, KeyError, TypeError):
        return frozenset()


def replay_options() -> dict[str, Any]:
    """What env.py configures that shapes the DDL: batch mode, and the naming convention
    Alembic gives constraints a revision leaves unnamed (through ``target_metadata``)."""
    from sqlalchemy import MetaData

    from data.models.base import NAMING_CONVENTION

    return {
        "render_as_batch": True,
        "target_metadata": MetaData(naming_convention=NAMING_CONVENTION),
    }


def replay_schemas(migrations: Path, revisions: Sequence[str]) -> dict[str, Snapshot]:
    """The schema after each of ``revisions`` (a chain from the base), in memory."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    script = ScriptDirectory(str(migrations))
    engine = create_engine("sqlite://")
    schemas: dict[str, Snapshot] = {}
    try:
        with engine.begin() as connection:
            context = MigrationContext.configure(connection, opts=replay_options())
            with Operations.context(context):
                for revision in revisions:
                    step = script.get_revision(revision)
                    assert step is not None
                    try:
                        step.module.upgrade()
                    except Exception as exc:
                        raise RevisionChainError(
                            f"{step.path}: upgrade() fails on an empty database at the revision "
                            f"before it, so its schema cannot be recorded: {exc}"
                        ) from exc
                    if guards.active_in_chain(revisions[: len(schemas) + 1]):
                        guards.sync(connection)
                    schemas[revision] = sqlite_snapshot(
                        sqlite_query(connection), exclude=frozenset({_VERSION_TABLE})
                    )
    finally:
        engine.dispose()
    return schemas


@dataclass
class Plan:
    """What recording the files on disk would write, and what forbids it."""

    ordered: list[tuple[str, Path]]
    wanted: list[Recorded]
    problems: list[str]
    stale: list[str]  # revisions whose record (entry or exported schema) must be (re)written


def _plan(migrations: Path, released: frozenset[str] | None) -> Plan:
    try:
        ordered = chain(migrations / "versions")
    except RevisionChainError as exc:
        return Plan([], [], [str(exc)], [])
    recorded = read_manifest(migrations / MANIFEST_NAME)
    files = dict(ordered)
    problems: list[str] = []
    is_released = (lambda _r: True) if released is None else released.__contains__
    for entry in recorded:
        if not is_released(entry.revision):
            continue
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
        elif checksum(path) != entry.sha256:
            problems.append(
                f"{path}: released revision {entry.revision} changed since it was released. "
                "Undo the edit (`git restore <file>`) and write a new revision for the change"
            )
    released_order = [e.revision for e in recorded if is_released(e.revision)]
    in_order = [revision for revision, _ in ordered]
    if in_order[: len(released_order)] != released_order and not problems:
        problems.append(
            "the released revisions are no longer the start of the chain: a new revision "
            f"must revise the last released one ({released_order[-1]}) or a later one"
        )
    wanted = [Recorded(revision, path.name, checksum(path)) for revision, path in ordered]
    schemas = migrations / SCHEMAS_FOLDER
    stale = [
        entry.revision
        for index, entry in enumerate(wanted)
        if index >= len(recorded)
        or recorded[index] != entry
        or not (schemas / f"{entry.revision}.json").is_file()
    ]
    return Plan(ordered, wanted, problems, stale)


def check(migrations: Path | None = None) -> list[str]:
    """Every difference between the revision files, the manifest and the exported schemas.

    Changes nothing. Exported schemas are replayed and compared whole, so an export edited by
    hand is caught as well as a revision edited after it was recorded.
    """
    migrations = migrations or default_migrations()
    plan = _plan(migrations, released_revisions(migrations))
    problems = list(plan.problems)
    if problems:
        return problems
    recorded = {entry.revision: entry for entry in read_manifest(migrations / MANIFEST_NAME)}
    for entry in plan.wanted:
        if entry.revision not in recorded:
            problems.append(
                f"revision {entry.revision} ({entry.file}) is not recorded: run "
                f"`{UPDATE_COMMAND}` and commit {MANIFEST_NAME} and {SCHEMAS_FOLDER}/"
            )
        elif recorded[entry.revision] != entry:
            problems.append(
                f"revision {entry.revision} ({entry.file}) changed since it was recorded: "
                f"run `{UPDATE_COMMAND}`"
            )
    if len(recorded) != len(plan.wanted) or problems:
        extra = sorted(recorded.keys() - {entry.revision for entry in plan.wanted})
        problems.extend(
            f"{MANIFEST_NAME} records {revision}, which has no file: run `{UPDATE_COMMAND}`"
            for revision in extra
        )
        return problems
    try:
        replayed = replay_schemas(migrations, [entry.revision for entry in plan.wanted])
    except RevisionChainError as exc:
        return [str(exc)]
    for revision, snapshot in replayed.items():
        path = migrations / SCHEMAS_FOLDER / f"{revision}.json"
        found = path.read_text(encoding="utf-8") if path.is_file() else None
        if found != render_schema(revision, snapshot):
            problems.append(
                f"{path} is not the schema revision {revision} creates: run `{UPDATE_COMMAND}`"
            )
    return problems


def update(migrations: Path | None = None) -> tuple[list[str], list[Finding]]:
    """Record new and edited unreleased revisions; returns (problems, lint findings).

    Nothing is written when there are problems. Lint findings do not stop the record (the
    head must never disagree with the files), but the runner refuses to apply a revision
    that fails the lint.
    """
    migrations = migrations or default_migrations()
    plan = _plan(migrations, released_revisions(migrations))
    if plan.problems:
        return plan.problems, []
    if not plan.ordered:
        return [f"no revisions in {migrations / 'versions'}"], []
    manifest = migrations / MANIFEST_NAME
    stale = set(plan.stale)
    if stale:
        try:
            replayed = replay_schemas(migrations, [entry.revision for entry in plan.wanted])
        except RevisionChainError as exc:
            return [str(exc)], []
        schemas = migrations / SCHEMAS_FOLDER
        schemas.mkdir(exist_ok=True)
        for revision in plan.stale:
            _write_if_changed(
                schemas / f"{revision}.json", render_schema(revision, replayed[revision])
            )
        for path in schemas.glob("*.json"):
            if path.stem not in {entry.revision for entry in plan.wanted}:
                path.unlink()
    _write_if_changed(manifest, render_manifest(plan.wanted))
    findings = lint_files(path for revision, path in plan.ordered if revision in stale)
    return [], findings


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def quick_problems(migrations: Path | None = None) -> list[str]:
    """What the ``alembic`` command refuses to run with: files and record disagree.

    Cheap (checksums, no replay): names, checksums and the presence of every export.
    """
    migrations = migrations or default_migrations()
    try:
        ordered = chain(migrations / "versions")
    except RevisionChainError as exc:
        return [str(exc)]
    recorded = read_manifest(migrations / MANIFEST_NAME)
    wanted = [Recorded(revision, path.name, checksum(path)) for revision, path in ordered]
    if wanted == recorded and all(
        (migrations / SCHEMAS_FOLDER / f"{entry.revision}.json").is_file() for entry in wanted
    ):
        return []
    known = {entry.revision: entry for entry in recorded}
    differing = [
        entry.file
        + (" changed since it was recorded" if entry.revision in known else " is not recorded")
        for entry in wanted
        if known.get(entry.revision) != entry
    ]
    gone = [entry.file for entry in recorded if entry.revision not in dict(ordered)]
    differing += [f"{name} is recorded but missing" for name in gone]
    what = "; ".join(differing) or "an exported schema is missing"
    return [
        f"the recorded migration history and the revision files disagree ({what}): run "
        f"`{UPDATE_COMMAND}` (it refuses to re-record a released revision)"
    ]


def record_written(path: Path) -> list[Finding]:
    """The post-write hook of ``alembic revision``: record the new file at once."""
    migrations = path.resolve().parent.parent
    problems, findings = update(migrations)
    if problems:
        raise RevisionChainError("; ".join(problems))
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.authoring.revisions",
        description="Record the migration history: manifest.json and the exported schemas.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--update", action="store_true", help="record new and edited unreleased revisions"
    )
    action.add_argument("--check", action="store_true", help="fail on any difference")
    arguments = parser.parse_args(argv)
    migrations = default_migrations()
    if arguments.check:
        problems = check(migrations)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    problems, findings = update(migrations)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    history: list[Any] = read_manifest(migrations / MANIFEST_NAME)
    print(f"{migrations / MANIFEST_NAME}: {len(history)} revision(s); head {history[-1].revision}")
    for finding in findings:
        print(finding, file=sys.stderr)
    if findings:
        print(
            "recorded, but the migration lint found the problems above: the alembic command "
            "and init_db() refuse to apply the revision until they are fixed",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
