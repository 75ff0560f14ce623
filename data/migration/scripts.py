"""The migration scripts, with Alembic configured in code: no ini file ships with the app."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from data.db.head import migrations_dir

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def migrations_location() -> str:
    """The migration scripts: in the package when installed or frozen, else in the checkout."""
    return str(migrations_dir())


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` built in code, sharing ``connection`` with ``env.py``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_location())
    config.attributes["connection"] = connection
    return config


def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def known_revision_check(script: ScriptDirectory) -> Callable[[str], bool]:
    """Whether a revision id is one of this code's scripts."""

    def known(revision: str) -> bool:
        try:
            return script.get_revision(revision) is not None
        except Exception:  # alembic raises several kinds for an unknown id
            return False

    return known
