"""``python -m bench --quick`` runs every section end to end: a smoke test, figures not judged.

The benchmark is how speed is checked (never timed tests); this keeps it runnable, so a change
that breaks one of its programs (a renamed function, a step no longer logged) is seen in CI
and not on the day someone needs the figures.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, subprocess_env

SECTIONS = ("a", "b", "c", "d", "e", "h")


@pytest.mark.slow
def test_the_quick_bench_runs_every_section() -> None:
    env = subprocess_env(None)
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    seen = {row.split("|")[1].strip() for row in rows[1:]}
    assert seen >= set(SECTIONS), result.stdout
    # The size-aware upgrade section and its step shares are there.
    assert "added column: per-MB cost" in result.stdout
    assert "steps: lock" in result.stdout and "peak memory" in result.stdout
    assert "CPU: import data.db.session" in result.stdout
    # (e) prints SQLAlchemy's own floor beside the app's ORM read.
    assert "bare SQLAlchemy ORM floor" in result.stdout
    assert "due backup_if_due() call vs cp + fsync" in result.stdout
    assert "its verification, in the background" in result.stdout
    assert "not-due check" in result.stdout
