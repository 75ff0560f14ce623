"""Only DataLayerError leaves init_db(), whatever the state of the file and of other windows.

One sweep over every refusal: each case is made on a real file, init_db() runs in a fresh
process pointed at it (as an app start would), and the error's type is checked.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import pytest

from data.db import errors
from data.db.errors import DataLayerError
from tests.app_start import run_as
from tests.conftest import (
    PROJECT_ROOT,
    legacy_database,
    run_python,
    small_disk,
    subprocess_env,
)
from tests.studio_data import seed_baseline_rows
from tests.test_safety_refusals import (
    corrupted_pages,
    legacy_mismatch,
    not_a_database,
    truncated,
    unknown_revision,
)
from tests.test_safety_upgrade import make_studio

# init_db() in another process; prints what left it, as JSON.
INIT_DB = """
import json
from data.db.errors import DataLayerError
try:
    from data.db.session import init_db
    print(json.dumps({"returned": init_db().action}))
except BaseException as exc:
    print(json.dumps({
        "raised": type(exc).__name__,
        "data_layer_error": isinstance(exc, DataLayerError),
        "message": str(exc),
    }))
"""
# A busy case must be refused after about the timeout it was given, not the default.
BUSY_BOUND_SECONDS = 15.0

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="dropping privileges and mounting a small disk need root (CI runs as root)",
)


def init_db_in_child(db: Path, **env: str) -> dict[str, object]:
    result = run_python(INIT_DB, env=subprocess_env(db, **env), timeout=120)
    outcome: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


@contextmanager
def other_process(code: str, *args: str) -> Iterator[None]:
    """Another window running ``code`` until the block ends; it prints 'ready' when set."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=subprocess_env(),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "ready", line + child.stdout.read()
        yield
    finally:
        child.kill()
        child.communicate()


HOLD_LOCK = """
import sys, time
from filelock import FileLock
with FileLock(sys.argv[1] + ".lock"):
    print("ready", flush=True)
    time.sleep(120)
"""
HOLD_WRITE = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
connection.execute("DELETE FROM clients WHERE id < 0")
print("ready", flush=True)
time.sleep(120)
"""


def two_revisions(path: Path) -> None:
    make_studio(path)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("INSERT INTO alembic_version VALUES ('f00dfacef00d')")
    connection.close()


def folder(path: Path) -> None:
    path.mkdir()


def too_big_for_the_disk(path: Path) -> None:
    # Made before migrations existed (the frozen first schema, whatever today's head is):
    # adopting it backs it up and upgrades it, which needs room the small disk lacks.
    legacy_database(path)
    seed_baseline_rows(path, clients=1000)


# case -> (make the file, the other window while init_db runs, environment, expected type)
Case = tuple[
    Callable[[Path], object],
    Callable[[Path], AbstractContextManager[None]],
    dict[str, str],
    type[DataLayerError],
]
CASES: dict[str, Case] = {
    "not a database": (not_a_database, lambda _: nullcontext(), {}, errors.NotADatabaseError),
    "damaged": (corrupted_pages, lambda _: nullcontext(), {}, errors.DatabaseCorruptError),
    "truncated": (truncated, lambda _: nullcontext(), {}, errors.DatabaseCorruptError),
    "a folder": (folder, lambda _: nullcontext(), {}, errors.NotADatabaseError),
    "newer revision": (
        unknown_revision,
        lambda _: nullcontext(),
        {},
        errors.DatabaseNewerThanAppError,
    ),
    "two revisions": (two_revisions, lambda _: nullcontext(), {}, errors.DatabaseNewerThanAppError),
    "legacy mismatch": (
        legacy_mismatch,
        lambda _: nullcontext(),
        {},
        errors.LegacySchemaMismatchError,
    ),
    # A file that must be written (adopted) while another window holds the migration lock...
    "busy lock": (
        legacy_database,
        lambda db: other_process(HOLD_LOCK, str(db)),
        {"INKLINK_LOCK_TIMEOUT": "1"},
        errors.DatabaseBusyError,
    ),
    # ... or holds a write transaction on the file itself.
    "busy write": (
        legacy_database,
        lambda db: other_process(HOLD_WRITE, str(db)),
        {"INKLINK_BUSY_TIMEOUT": "1"},
        errors.DatabaseBusyError,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_every_refusal_of_init_db_is_a_data_layer_error(tmp_path: Path, case: str) -> None:
    make, other_window, env, expected = CASES[case]
    db = tmp_path / "studio" / "inklink.db"
    db.parent.mkdir()
    make(db)
    with other_window(db):
        start = time.monotonic()
        outcome = init_db_in_child(db, **env)
        took = time.monotonic() - start
    assert outcome.get("raised") == expected.__name__, outcome
    assert outcome["data_layer_error"] is True, outcome
    assert str(db) in str(outcome["message"]), outcome
    if expected is errors.DatabaseBusyError:
        assert took < BUSY_BOUND_SECONDS, f"refused only after {took:.0f} s"


def _init_db_as_nobody(db: Path) -> dict[str, object]:
    """init_db() pointed at ``db``, in a forked child that has dropped root for 'nobody'.

    Forked, not started afresh: this interpreter lives in root's home, which 'nobody'
    cannot read. The child points the session module's engine at ``db`` first.
    """
    # Everything init_db() may import lazily, loaded while root can still read the project
    # (a copy of it under pytest's 0700 temp folder is out of 'nobody''s reach).
    import data.db.fast_path
    import data.migration.backends.sqlite
    import data.migration.revision_lint
    import data.migration.runner  # noqa: F401
    from data.db import session
    from data.db.session import create_app_engine
    from tests.conftest import sqlite_url

    def start() -> str:
        try:
            session.engine = create_app_engine(sqlite_url(db))
            session.DB_PATH = str(db)
            report = {"returned": session.init_db().action}
        except BaseException as exc:
            report = {
                "raised": type(exc).__name__,
                "data_layer_error": isinstance(exc, DataLayerError),
                "message": str(exc),
            }
        return json.dumps(report)

    outcome: dict[str, object] = json.loads(run_as("nobody", start))
    return outcome


@needs_root
def test_unwritable_and_full_disk_refusals_are_data_layer_errors(world_readable_dir: Path) -> None:
    from data.migration.runner import ensure_current  # loaded before dropping root

    assert ensure_current
    locked = world_readable_dir / "locked"
    locked.mkdir(mode=0o755)  # root's; 'nobody' may read but not write
    unwritable = locked / "inklink.db"
    legacy_database(unwritable)
    os.chmod(unwritable, 0o644)
    outcome = _init_db_as_nobody(unwritable)
    assert outcome.get("raised") == "DatabaseNotWritableError", outcome
    assert outcome["data_layer_error"] is True

    with small_disk(world_readable_dir) as mount_point:
        full = mount_point / "inklink.db"
        too_big_for_the_disk(full)
        outcome = init_db_in_child(full)
    assert outcome.get("raised") == "NotEnoughDiskSpaceError", outcome
    assert outcome["data_layer_error"] is True


def test_a_state_without_a_refusal_of_its_own_still_leaves_as_a_data_layer_error(
    tmp_path: Path,
) -> None:
    # A symlink to a folder that does not exist: SQLite cannot open it, and no refusal is
    # written for it. The net under the refusals still names the database for people.
    db = tmp_path / "inklink.db"
    db.symlink_to(tmp_path / "gone" / "inklink.db")
    outcome = init_db_in_child(db)
    assert outcome.get("data_layer_error") is True, outcome
    assert str(db) in str(outcome["message"]), outcome
