"""The inter-process lock beside a SQLite file: two app windows, or the app and a deploy."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from data.db.errors import (
    ADVICE_RETRY,
    UNCHANGED,
    DatabaseBusyError,
    DatabaseNotWritableError,
)
from data.db.file_modes import OWNER_ONLY_FILE, tighten

log = logging.getLogger(__name__)


# How long a second window (or a deploy) waits for a running upgrade before giving up.
def _lock_timeout_seconds(default: float = 120.0) -> float:
    raw = os.environ.get("INKLINK_LOCK_TIMEOUT", "").strip()
    try:
        seconds = float(raw) if raw else default
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses NaN; a negative wait would be forever
        log.warning(
            "INKLINK_LOCK_TIMEOUT=%r is not a number of seconds; waiting %.0f s", raw, default
        )
        return default
    return seconds


LOCK_TIMEOUT_SECONDS = _lock_timeout_seconds()


@contextlib.contextmanager
def migration_lock(db_path: Path, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Held by every migration, backup restore and create of ``db_path``."""
    lock_path = str(db_path) + ".lock"
    # Owner-only whatever the umask (filelock chmods a file it creates to this mode); a lock
    # file left wider by an older version is tightened once it is held.
    lock = FileLock(lock_path, timeout=timeout, mode=OWNER_ONLY_FILE)
    try:
        lock.acquire()
    except Timeout as exc:
        raise DatabaseBusyError(
            str(db_path),
            f"another process has been upgrading it for more than {timeout:.0f} seconds",
            "Wait for the other InkLinkOS window or update to finish. " + ADVICE_RETRY,
        ) from exc
    except OSError as exc:  # e.g. a lock file left by a deploy that ran as another user
        raise DatabaseNotWritableError(
            str(db_path),
            f"its lock file {lock_path} cannot be opened ({exc})",
            "Give this user write access to that file, or delete it while no InkLinkOS "
            "program or deploy is running. " + UNCHANGED,
        ) from exc
    try:
        tighten([Path(lock_path)])
        yield
    finally:
        lock.release()
