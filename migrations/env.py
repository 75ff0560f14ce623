"""Alembic's entry point: migrate the database a caller names under the runner's safety policy.

Who calls, and what they hand over in ``config.attributes["connection"]``:

- the runner behind ``init_db()`` (and tests): a ``Connection`` in its own transaction;
- a program such as pytest-alembic or a deploy script: an ``Engine`` for the database it
  means; it gets the same lock, checks and single transaction as the command line;
- the ``alembic`` command: nothing, and the app's own database (``DB_PATH`` or
  ``DATABASE_URL``) is used.

Anything else is refused: a caller that named a database never gets the app's one instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from logging.config import fileConfig
from pathlib import Path
from typing import Any, Literal

from alembic import context
from alembic.script import write_hooks
from alembic.util import CommandError
from sqlalchemy import Connection, Engine

from data.authoring import er_diagram
from data.authoring.revisions import quick_problems, record_written
from data.db.errors import DataLayerError, MigrationFailedError, SchemaVerificationError
from data.db.session import DB_PATH, engine
from data.migration import guards
from data.migration.revision_lint import lint_files
from data.migration.runner import LOCK_TIMEOUT_SECONDS, command_line_migration
from data.models import Base
from data.models.base import StrEnumType, UTCDateTime

config = context.config
target_metadata = Base.metadata
log = logging.getLogger("alembic.env")

# Only the command line configures logging, and never by disabling the app's own loggers.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


@write_hooks.register("record_revision")
def record_revision(filename: str, options: dict[str, Any]) -> None:
    """``alembic revision`` records what it wrote: manifest, exported schema, lint; and the
    README's schema diagram follows the models it was written from."""
    findings = record_written(Path(filename))
    readme = Path(filename).resolve().parents[2] / "README.md"
    if readme.is_file() and er_diagram.START_MARKER in readme.read_text(encoding="utf-8"):
        er_diagram.main(["--write", str(readme)])
    if findings:
        listing = "\n".join(str(finding) for finding in findings)
        raise CommandError(
            f"{filename} was written and recorded, but fails the migration lint:\n{listing}\n"
            "The alembic command and init_db() refuse to apply it until it is fixed."
        )


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


def refuse_unlinted_steps() -> Any:
    """An ``on_version_apply`` hook: an upgrade step whose revision fails the lint is refused.

    It runs inside the single migration transaction, so the refusal rolls back everything.
    """
    findings: dict[Path, list[str]] | None = None

    def hook(*, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        nonlocal findings
        if not step.is_upgrade:
            return
        if findings is None:
            versions = Path(context.script.dir) / "versions"
            findings = {}
            for finding in lint_files(sorted(versions.glob("*.py"))):
                findings.setdefault(Path(finding.path).resolve(), []).append(str(finding))
        found = findings.get(Path(step.up_revision.path).resolve())
        if found:
            raise CommandError(
                f"revision {step.up_revision_id} fails the migration lint, so it was not "
                "applied (the whole upgrade was rolled back):\n"
                + "\n".join(found)
                + "\nFix the revision, or acknowledge a deliberate drop in its "
                "`acknowledged_drops` (README, 'Writing a migration')."
            )

    return hook


def configure_and_run(connection: Connection, *, guard: bool = False) -> None:
    # The storage guards follow every step's schema, in the same transaction.
    keeper = guards.Keeper(connection, context.script)
    hooks: list[Any] = [keeper]
    hooks += list(config.attributes.get("on_version_apply", ()))
    if guard:
        hooks.append(refuse_unlinted_steps())
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
        on_version_apply=hooks,
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        keeper.close()


def _destination() -> str | Literal[False] | None:
    """Where an upgrade or downgrade goes; False for commands that only read."""
    try:
        return context.get_revision_argument()  # type: ignore[return-value]
    except KeyError:
        return False


def _refuse_stale_record() -> None:
    """The command line never runs against a record that disagrees with the files."""
    problems = quick_problems(Path(context.script.dir))
    if problems:
        raise CommandError(problems[0])


def run_migrations_offline() -> None:
    """``--sql``: print the SQL for a reviewer; nothing is connected."""
    _refuse_stale_record()
    applied: list[str | None] = [context.get_starting_revision_argument()]  # type: ignore[list-item]

    def track(*, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        applied.append(step.up_revision_id if step.is_upgrade else step.down_revision_ids[0])
        # The storage guards, as the online run keeps them, for the schema of that revision.
        if guards.active(context.script, applied[-1]):
            for statement in guards.offline_statements(engine.dialect.name, applied[-1]):
                ctx.impl.execute(statement)

    context.configure(
        url=engine.url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        transactional_ddl=True,
        dialect_opts={"paramstyle": "named"},
        on_version_apply=[track],
    )
    with context.begin_transaction():
        if engine.dialect.name == "postgresql":
            # The same wait for other seats' table locks as the online runner allows.
            context.execute(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT_SECONDS * 1000)}ms'")
        try:
            context.run_migrations()
        except CommandError as exc:
            if "--sql mode" not in str(exc):
                raise
            after = applied[-1]
            following = [
                s.revision for s in context.script.walk_revisions() if s.down_revision == after
            ]
            raise CommandError(
                f"revision {following[0] if following else '?'} rebuilds a table (a batch "
                "operation), which SQLite cannot render as SQL without the live database: "
                "run the upgrade online, or give its batch_alter_table() a copy_from= Table"
            ) from None


def _for_the_command_line(exc: DataLayerError) -> str:
    """A refusal worded for a developer or a deployer, not for studio staff."""
    if isinstance(exc, (MigrationFailedError, SchemaVerificationError)):
        return f"{exc.database}: {exc.found}. Nothing was changed: the upgrade was rolled back."
    return str(exc)


def _show_recovery_key(recovery_key: str) -> None:
    """A database this command created encrypted, its key in the keyring: shown once, on
    the terminal only (never through logging)."""
    from data.db.key_commands import recovery_block

    print(recovery_block(recovery_key), flush=True)


@contextlib.contextmanager
def _connection_behind(handed: object) -> Iterator[Connection]:
    """The Connection an object's ``connect()`` yields; anything else is refused."""
    connect = getattr(handed, "connect", None)
    if callable(connect):
        with connect() as connection:
            if isinstance(connection, Connection):
                yield connection
                return
    raise CommandError(
        f'config.attributes["connection"] holds a {type(handed).__module__}.'
        f"{type(handed).__qualname__}; env.py takes a sqlalchemy Connection or Engine for "
        "the database you mean (or nothing, for the app's own database)"
    )


def _writes_a_file_only() -> bool:
    """``alembic revision`` without ``--autogenerate``: nothing to read from a database."""
    command = getattr(config.cmd_opts, "cmd", None)
    return (
        command is not None
        and command[0].__name__ == "revision"
        and not getattr(config.cmd_opts, "autogenerate", False)
    )


def run_migrations_online() -> None:
    handed = config.attributes.get("connection")
    if handed is None and _writes_a_file_only():
        # Starting a revision by hand reads nothing: it never creates or opens the database
        # (Alembic still wants a connection to ask for the current heads: an empty one).
        from sqlalchemy import create_engine

        scratch = create_engine("sqlite://")
        try:
            with scratch.connect() as connection:
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    process_revision_directives=skip_empty_revisions,
                )
                with context.begin_transaction():
                    context.run_migrations()
        finally:
            scratch.dispose()
        return
    if isinstance(handed, Connection):
        # A program (init_db's runner, a test) owns the transaction and its policy.
        configure_and_run(handed)
        return
    if handed is not None and not isinstance(handed, Engine):
        # A connection in a wrapper (pytest-alembic's WrappingConnection: its connect() yields
        # the one Connection it holds, in a transaction it rolls back): that caller owns the
        # transaction too. Anything else is refused, never replaced by the app's database.
        with _connection_behind(handed) as connection:
            configure_and_run(connection)
        return
    _refuse_stale_record()
    # The command line, or a program handing over an Engine: the same runner, lock, checks
    # and single transaction as init_db(), on the database that engine names.
    target = handed if isinstance(handed, Engine) else engine
    on_db_path = target is engine and engine.dialect.name == "sqlite"
    log.info("database: %s", DB_PATH if on_db_path else target.url)  # str(url) masks passwords
    try:
        with command_line_migration(
            target, context.script, _destination(), show_recovery_key=_show_recovery_key
        ) as connection:
            configure_and_run(connection, guard=True)
    except DataLayerError as exc:
        # Alembic prints a CommandError once, as "FAILED: <message>", without a traceback.
        raise CommandError(_for_the_command_line(exc)) from exc


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
