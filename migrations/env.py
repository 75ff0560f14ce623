"""Alembic's entry point: migrate the app's own database under the runner's safety policy."""

from __future__ import annotations

import logging
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, Engine

from data.db.errors import DataLayerError
from data.db.runner import command_line_migration
from data.db.session import DB_PATH, engine
from data.models import Base
from data.models.base import StrEnumType, UTCDateTime

config = context.config
target_metadata = Base.metadata
log = logging.getLogger("alembic.env")

# Only the command line configures logging, and never by disabling the app's own loggers.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Spell the models' own column types portably, so a revision never imports the models."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, StrEnumType):
        return f"sa.String(length={obj.impl.length})"  # type: ignore[attr-defined]
    return False


def skip_empty_revisions(context_: Any, revision: Any, directives: list[Any]) -> None:
    """Autogenerate on a tree that matches the database writes no file."""
    revision_context = context_.opts.get("revision_context")
    if revision_context is None or not revision_context.command_args["autogenerate"]:
        return
    # `alembic check` autogenerates too, and needs the (empty) script to report on.
    command = getattr(config.cmd_opts, "cmd", None)
    if command is not None and command[0].__name__ != "revision":
        return
    autogenerate = command is not None or revision_context.command_args["message"] is not None
    if autogenerate and directives and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        log.info("No changes in schema detected; no revision written.")


def configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can only add columns in place: every other ALTER is a table rebuild.
        render_as_batch=True,
        # The whole run is one transaction (Alembic's SQLite default commits per revision).
        transactional_ddl=True,
        compare_type=True,
        compare_server_default=True,
        render_item=render_item,
        process_revision_directives=skip_empty_revisions,
        on_version_apply=config.attributes.get("on_version_apply", ()),
    )
    with context.begin_transaction():
        context.run_migrations()


def _destination() -> str | Literal[False] | None:
    """Where an upgrade or downgrade goes; False for commands that only read."""
    try:
        return context.get_revision_argument()  # type: ignore[return-value]
    except KeyError:
        return False


def run_migrations_offline() -> None:
    """``--sql``: print the SQL for a reviewer; nothing is connected."""
    context.configure(
        url=engine.url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        transactional_ddl=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    handed: Connection | Engine | None = config.attributes.get("connection")
    if isinstance(handed, Connection):
        # A program (init_db's runner, a test) owns the transaction and its policy.
        configure_and_run(handed)
        return
    # The command line, or a program handing over an Engine: the same runner, lock, checks
    # and single transaction as init_db(), on the database that engine names.
    target = handed if isinstance(handed, Engine) else engine
    on_db_path = target is engine and engine.dialect.name == "sqlite"
    log.info("database: %s", DB_PATH if on_db_path else target.url)  # str(url) masks passwords
    try:
        with command_line_migration(target, context.script, _destination()) as connection:
            configure_and_run(connection)
    except DataLayerError as exc:
        # Alembic prints a CommandError as "FAILED: <message>", without a traceback.
        raise CommandError(str(exc)) from exc


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
