"""The runner's PostgreSQL side (multi-seat studios)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from data.db.outcome import UpgradeOutcome

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from data.db.runner import ProgressCallback


def ensure_current_server(engine: Engine, progress: ProgressCallback | None) -> UpgradeOutcome:
    raise NotImplementedError("PostgreSQL support is issue 7")


@contextlib.contextmanager
def server_command_line_migration(engine: Engine, script: ScriptDirectory) -> Iterator[Connection]:
    raise NotImplementedError("PostgreSQL support is issue 7")
    yield
