"""Bench (h): what a scheduled backup costs (issue 16).

A due ``backup_if_due()`` call (the copy flushed under its ``.unverified`` name, and
recorded) against ``cp`` of the same file followed by ``fsync``, in the same run and in
alternating order, on a studio of about 100 MB (and 1 GB with ``--full``); then, apart, the
background verification the call hands over (quick_check, version row, row counts, manifest,
record; with a second place its copy and checksum), timed from the call's return until its
final report; and the not-due check an app makes at every start, in process and as the
first call of a fresh process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRANSACTIONS_PER_MB = 5_600  # bench.studio.fill's rows: about 180 bytes a transaction


def make_studio(work: Path, megabytes: int, say: Callable[[str], None]) -> Path:
    """A studio at head of about ``megabytes``, in WAL mode as the app leaves it, settled."""
    from sqlalchemy import create_engine

    from bench.studio import fill
    from data.db.policy import apply_app_policy
    from data.migration.runner import ensure_current

    db = work / f"backup-{megabytes}mb" / "inklink.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{db}")
    apply_app_policy(engine)
    ensure_current(engine)
    engine.dispose()
    transactions = megabytes * TRANSACTIONS_PER_MB
    say(f"(h) building a {megabytes} MB studio ({transactions:,} transactions)")
    fill(db, transactions // 100, transactions // 10, transactions)
    past = time.time() - 3600
    os.utime(db, (past, past))
    return db


def _cp(db: Path, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["cp", str(db), str(target)], check=True)
    descriptor = os.open(target, os.O_RDWR)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return time.perf_counter() - started


def _fresh(db: Path) -> None:
    """No backup yet: each measured backup is a due one that copies."""
    shutil.rmtree(db.parent / "backups", ignore_errors=True)
    for leftover in db.parent.glob(f"{db.name}.backups.json*"):
        leftover.unlink()


def _backup(db: Path, second_place: Path | None) -> tuple[float, float]:
    """The call's time (until it returns), and the background's (from then until the
    verified, mirrored, rotated final report); nothing else runs meanwhile."""
    from data.db.backups import backup_if_due

    _fresh(db)
    if second_place is not None:
        shutil.rmtree(second_place, ignore_errors=True)
        second_place.mkdir()
    started = time.perf_counter()
    report = backup_if_due(db, second_place=second_place)
    returned = time.perf_counter()
    final = report.wait()
    finished = time.perf_counter()
    if not report.pending or final is None:
        raise RuntimeError(report.describe())
    if not final.made or not final.ok or (second_place and not final.second_place):
        raise RuntimeError(final.describe())
    return returned - started, finished - returned


def measure_due(
    db: Path, repeats: int, second_place: Path | None
) -> tuple[list[float], list[float], list[float], list[float]]:
    """The call, its background part, one ``cp`` (what the call writes: one copy), and
    ``cp`` of every copy the backup ends with (two with a second place)."""
    copies, verifications, plain, every_copy = [], [], [], []
    target = db.parent / "cp-target.db"
    for repeat in range(repeats + 1):  # round 0 warms the cache and the imports
        order = ("cp", "backup") if repeat % 2 == 0 else ("backup", "cp")
        for side in order:
            if side == "cp":
                target.unlink(missing_ok=True)
                seconds = _cp(db, target)
                both = seconds
                if second_place is not None:  # the same bytes land in two places
                    other = db.parent / "cp-target-2.db"
                    other.unlink(missing_ok=True)
                    both += _cp(db, other)
                    other.unlink()
                if repeat:
                    plain.append(seconds)
                    every_copy.append(both)
            else:
                seconds, verifying = _backup(db, second_place)
                if repeat:
                    copies.append(seconds)
                    verifications.append(verifying)
    target.unlink(missing_ok=True)
    return copies, verifications, plain, every_copy


def measure_parts(db: Path, repeats: int) -> dict[str, list[float]]:
    """Where a due backup's time goes: the copy alone, the verification alone, and cp."""
    from data.migration.backup import _copy
    from data.migration.verified_copy import verify_copy

    parts: dict[str, list[float]] = {"copy": [], "verify": [], "cp": []}
    target = db.parent / "parts-target.db"
    for repeat in range(repeats + 1):
        for side in ("cp", "copy") if repeat % 2 == 0 else ("copy", "cp"):
            target.unlink(missing_ok=True)
            if side == "cp":
                seconds = _cp(db, target)
            else:
                started = time.perf_counter()
                _copy(db, target, None)
                seconds = time.perf_counter() - started
                started = time.perf_counter()
                verify_copy(target, None)
                if repeat:
                    parts["verify"].append(time.perf_counter() - started)
            if repeat:
                parts[side].append(seconds)
    target.unlink(missing_ok=True)
    return parts


NOT_DUE_CHILD = """
import json, sys, time
from data.db.session import backup_if_due, init_db
init_db()  # as the app does first
started = time.perf_counter()
report = backup_if_due()
first = time.perf_counter() - started
assert not report.due, report.describe()
samples = []
for _ in range(2000):
    started = time.perf_counter()
    backup_if_due()
    samples.append(time.perf_counter() - started)
samples.sort()
print(json.dumps({"first_ms": first * 1e3, "median_ms": samples[len(samples) // 2] * 1e3,
                  "modules": sorted(m for m in sys.modules if m.startswith("alembic"))}))
"""


def measure_not_due(db: Path, repeats: int) -> list[dict[str, Any]]:
    """The check in a fresh app process (data.db.session imported, as at start)."""
    import json

    from data.db.backups import backup_if_due

    _fresh(db)
    backup_if_due(db, wait=True)  # verified and recorded before the child looks
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", SECOND_PLACE)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(DB_PATH=str(db), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    answers = []
    for repeat in range(repeats + 1):
        result = subprocess.run(
            [sys.executable, "-c", NOT_DUE_CHILD],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        if repeat:
            answers.append(json.loads(result.stdout))
    return answers


SECOND_PLACE = "INKLINK_BACKUP_DIR"
