"""Deprecated import path: this moved to ``data.migration.backends.postgresql``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from data.migration.backends.postgresql import (  # noqa: F401
    ADVISORY_LOCK_KEY,
    NO_BACKUP_NOTE,
    SERVER_UNCHANGED,
    display_url,
    promised_snapshot,
    read_state,
)
from data.migration.file_lock import LOCK_TIMEOUT_SECONDS
from data.migration.runner import command_line_migration

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory


@contextlib.contextmanager
def server_command_line_migration(
    engine: Engine,
    script: ScriptDirectory,
    *,
    writes: bool = True,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> Iterator[Connection]:
    """Deprecated: ``data.migration.runner.command_line_migration`` serves every database."""
    with command_line_migration(
        engine, script, "head" if writes else False, lock_timeout=lock_timeout
    ) as connection:
        yield connection
