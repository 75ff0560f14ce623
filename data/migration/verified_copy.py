"""A backup copy checked after it is written, and the small manifest that says so beside it.

A copy is verified when it opens (with the database's key when it is encrypted), passes
SQLite's ``quick_check``, has one version row, and its tables' rows can be counted. What the
check found goes into ``<copy>.manifest.json`` beside the copy: the manifest is what
listing, rotation and restore trust, in the data folder and in the second place alike (a
second place may be all that is left). A copy that fails is renamed aside
(``<copy>.failed``), never listed, rotated or restored, and reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.db import keys
from data.migration import raw_sqlite
from data.migration.schedule import epoch_of

MANIFEST_SUFFIX = ".manifest.json"
FAILED_SUFFIX = ".failed"
MANIFEST_FORMAT = 1
CHUNK = 1 << 20


class VerificationFailedError(Exception):
    """The copy does not open, fails its check, or lacks what a studio's database has."""


@dataclass(frozen=True)
class Verification:
    revision: str | None
    rows: dict[str, int]
    encrypted: bool
    check: str = "quick_check"


def manifest_path(copy: Path) -> Path:
    return copy.with_name(copy.name + MANIFEST_SUFFIX)


def verify_copy(copy: Path, key: keys.DatabaseKey | None) -> Verification:
    """Open ``copy`` read-only and check it; raises VerificationFailedError saying why."""
    try:
        connection = raw_sqlite.connect(copy, read_only=True, key=key.pragma() if key else None)
    except raw_sqlite.IO_ERRORS as exc:
        raise VerificationFailedError(f"it does not open ({exc})") from exc
    try:
        # quick_check reads every page and checks every b-tree (O(N)); integrity_check
        # also matches each index against its table, which costs a sort per index.
        result = [str(row[0]) for row in connection.execute("PRAGMA quick_check")]
        if result != ["ok"]:
            raise VerificationFailedError(f"its integrity check reports: {'; '.join(result[:3])}")
        tables = [
            str(row[0])
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        if not tables:
            raise VerificationFailedError("it holds no tables")
        # The version row is read and recorded, not required: a legacy file (no version
        # table) or one a failed adoption left empty is still worth its copy.
        revision = None
        if "alembic_version" in tables:
            versions = [
                str(row[0]) for row in connection.execute("SELECT version_num FROM alembic_version")
            ]
            revision = ", ".join(versions) or None
        rows = {
            table: int(connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            for table in tables
            if table != "alembic_version"
        }
    except raw_sqlite.IO_ERRORS as exc:
        raise VerificationFailedError(f"it cannot be read ({exc})") from exc
    finally:
        connection.close()
    return Verification(revision, rows, key is not None)


def origin(db_path: Path) -> dict[str, str]:
    """Which database a copy is of: the computer and the path (rotation in a shared second
    place only ever touches its own database's copies)."""
    return {"host": socket.gethostname(), "path": str(db_path)}


def origin_tag(db_path: Path) -> str:
    """A short name for ``origin(db_path)``, for file names in a shared second place."""
    text = json.dumps(origin(db_path), sort_keys=True).encode("utf-8")
    return hashlib.sha256(text).hexdigest()[:8]


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Whole or not at all, owner-only: a temporary file, flushed, renamed."""
    partial = path.with_name(path.name + ".partial")
    data = (json.dumps(content, indent=2, sort_keys=True) + "\n").encode("utf-8")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(partial, path)


def read_manifest(copy: Path) -> dict[str, Any] | None:
    """The manifest of ``copy`` when it is there, readable, and describes this very file
    (same name and size); None otherwise: such a file is not trusted as a backup."""
    try:
        manifest = json.loads(manifest_path(copy).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("file") != copy.name:
            return None
        if copy.stat().st_size != manifest.get("size"):
            return None
    except (OSError, ValueError):
        return None
    return manifest


def manifests_in(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every copy in ``folder`` with a manifest that vouches for it, newest first."""
    found = []
    try:
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(MANIFEST_SUFFIX))
    except OSError:
        return []
    for name in names:
        copy = folder / name[: -len(MANIFEST_SUFFIX)]
        manifest = read_manifest(copy)
        if manifest is not None and manifest.get("verified"):
            found.append((copy, manifest))
    found.sort(key=lambda item: epoch_of(item[1].get("made_at")) or 0.0, reverse=True)
    return found


def set_aside(copy: Path) -> Path:
    """Rename a copy that failed verification out of every listing; returns its new name."""
    aside = copy.with_name(copy.name + FAILED_SUFFIX)
    os.replace(copy, aside)
    return aside


def copy_file(source: Path, target: Path) -> str:
    """Byte-copy ``source`` (a finished backup, never the live database) to the new file
    ``target``: written as ``.partial``, flushed, renamed, so a half-written copy never looks
    like a backup. Returns the sha256 of what was read; the caller compares it with what
    landed (``sha256_of(target)``)."""
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        descriptor = os.open(
            partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600
        )
        try:
            with source.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        written = os.write(descriptor, view)
                        view = view[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
