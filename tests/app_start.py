"""init_db() as an app start runs it: in a fresh interpreter, or in a child that dropped root.

Each returns what the start reported: ``action`` (created, current, ...) or ``error`` (the
exception's class), ``data_layer`` (whether it is a DataLayerError), ``message``, and
``seconds`` (the time init_db() itself took). A start that hangs fails the test at
``timeout`` instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import PROJECT_ROOT, subprocess_env
from tests.file_kind import connect

# A fresh interpreter with DB_PATH set: the app's own import, then init_db(). Logging goes to
# stderr so tests can read what was logged; the report is the last line of stdout.
_CHILD = """
import json, logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
from data.db.errors import DataLayerError
from data.db.session import init_db
start = time.monotonic()
try:
    report = {"action": init_db().action}
except BaseException as exc:
    report = {
        "error": type(exc).__name__,
        "data_layer": isinstance(exc, DataLayerError),
        "message": str(exc),
    }
report["seconds"] = time.monotonic() - start
report["alembic_imported"] = "alembic" in sys.modules
AFTER
print(json.dumps(report))
"""


def start_app(
    db_path: Path,
    *,
    umask: int = -1,
    timeout: float = 30,
    after: str = "",
) -> dict[str, Any]:
    """init_db() in a fresh interpreter pointed at ``db_path``; ``after`` runs before the report.

    The report also holds ``stderr`` (the log).
    """
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CHILD.replace("AFTER", after)],
            env=subprocess_env(db_path),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            umask=umask,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"init_db() on {db_path} did not return within {timeout} s") from exc
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise AssertionError(
            f"child failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    report: dict[str, Any] = json.loads(lines[-1])
    report["stderr"] = result.stderr
    return report


def _init_db_here(db_path: Path) -> dict[str, Any]:
    """init_db() of the app's own module, pointed at ``db_path`` (as DB_PATH would at import)."""
    from data.db import session
    from data.db.errors import DataLayerError

    session.DB_PATH = str(db_path)
    session.engine = session.create_app_engine(session.database_url(str(db_path)))
    start = time.monotonic()
    try:
        report: dict[str, Any] = {"action": session.init_db().action}
    except BaseException as exc:
        report = {
            "error": type(exc).__name__,
            "data_layer": isinstance(exc, DataLayerError),
            "message": str(exc),
        }
    report["seconds"] = time.monotonic() - start
    return report


def warm_up(scratch: Path) -> None:
    """Import everything init_db() may import, while still root.

    A child that dropped root cannot read this interpreter's own files (they live under
    /root), so it must find every module it needs already loaded.
    """
    import pwd  # noqa: F401 (the refusals name the file's owner)

    from alembic import command  # noqa: F401

    from data.db.errors import DataLayerError
    from data.db.session import create_app_engine, database_url
    from data.migration.runner import ensure_current

    scratch.mkdir(parents=True, exist_ok=True)
    warm = scratch / "warm-up.db"
    for _ in range(2):  # created, then the slow path's verification of an unrecorded cookie
        engine = create_app_engine(database_url(str(warm)))
        try:
            ensure_current(engine)
        except DataLayerError:
            pass
        finally:
            engine.dispose()
        connection = connect(warm)  # keyed for an encrypted file (conftest.file_kind)
        try:
            connection.execute("PRAGMA user_version = 0")
        finally:
            connection.close()


def start_app_as(user: str, db_path: Path, *, timeout: float = 60) -> dict[str, Any]:
    """init_db() in a forked child that has dropped root for ``user`` (no groups)."""

    def start() -> str:
        try:
            report = _init_db_here(db_path)
        except BaseException as exc:
            report = {"error": type(exc).__name__, "data_layer": False, "message": str(exc)}
        return json.dumps(report)

    result: dict[str, Any] = json.loads(run_as(user, start, timeout=timeout))
    return result


def run_as(user: str, action: Callable[[], str], *, timeout: float = 300) -> str:
    """``action()`` in a forked child that has dropped root for ``user`` (no groups): the text
    it returns, or ``"<exception class>: <message>"`` when it raised.

    Forked, not started afresh: this interpreter lives in root's home, which ``user`` cannot
    read, so the child must find every module it needs already loaded (``warm_up``). A child
    still running at ``timeout`` is killed and the test fails.
    """
    import pwd

    account = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            result = action()
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    chunks = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([read_end], [], [], max(remaining, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"a child running as {user} did not finish within {timeout} s")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode()
