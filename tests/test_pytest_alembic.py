"""pytest-alembic's built-in checks, run on the project's own migrations on SQLite and PostgreSQL.

pytest-alembic 0.13.1's collector cannot build its items under pytest 9 (it appends to
``Node._nodeid``, which pytest 9 no longer has), so pyproject.toml switches its plugin off
(``-p no:pytest_alembic``) and registers the ``alembic`` mark its check functions carry. The
checks are called here instead, each with a runner made through pytest-alembic's public API
on a database made for the one test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_alembic.config import Config
from pytest_alembic.runner import MigrationContext, runner
from pytest_alembic.tests import default, experimental
from sqlalchemy import Engine, inspect

from data.db.head import HEAD_REVISION
from data.db.runner import alembic_config
from data.db.session import DB_PATH
from tests.conftest import PROJECT_ROOT

Check = Callable[[MigrationContext], None]


def all_models_register_on_metadata(alembic_runner: MigrationContext) -> None:
    """The experimental check, told where the models are (``data.models.metadata``)."""
    experimental.test_all_models_register_on_metadata(alembic_runner, "data.models")


# Each check, and whether it leaves the database it was handed at the head revision: the
# proof that the migrations ran there, and not on some other database.
CHECKS: dict[str, tuple[Check, bool]] = {
    "single_head_revision": (default.test_single_head_revision, False),
    "upgrade": (default.test_upgrade, True),
    "model_definitions_match_ddl": (default.test_model_definitions_match_ddl, True),
    "up_down_consistency": (default.test_up_down_consistency, True),
    "all_models_register_on_metadata": (all_models_register_on_metadata, False),
    "downgrade_leaves_no_trace": (experimental.test_downgrade_leaves_no_trace, True),
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def alembic_engine(request: pytest.FixtureRequest) -> Engine:
    """The app's engine on a new database: a file under tmp_path, or a new server database.

    env.py takes only the URL of an Engine (the runner migrates through its own engine),
    but downgrade_leaves_no_trace migrates on this engine's connection, inside savepoints:
    the app's SQLite policy sends a real BEGIN, where plain pysqlite would leave it implicit.
    """
    engine: Engine = request.getfixturevalue(
        "app_engine" if request.param == "sqlite" else "pg_engine"
    )
    return engine


@pytest.fixture
def alembic_runner(alembic_engine: Engine) -> Iterator[MigrationContext]:
    """pytest-alembic's runner over the project's own scripts; env.py is handed the engine."""
    with runner(Config(alembic_config=alembic_config()), alembic_engine) as context:
        yield context


def files_beside(path: Path) -> dict[str, str]:
    """Every file in the folder of ``path`` (its backups and lock too), with its hash."""
    return {
        str(file.relative_to(path.parent)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(path.parent.rglob("*"))
        if file.is_file()
    }


def recorded_versions(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return []
        return list(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


@pytest.mark.parametrize("name", CHECKS)
def test_pytest_alembic_check(
    name: str,
    alembic_runner: MigrationContext,
    alembic_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check, ends_at_head = CHECKS[name]
    # all_models_register_on_metadata runs env.py again in a child, from ./alembic.ini.
    monkeypatch.chdir(PROJECT_ROOT)
    # The database env.py falls back to when it is handed nothing (conftest's scratch DB_PATH).
    app_database = Path(DB_PATH)
    before = files_beside(app_database)

    check(alembic_runner)

    assert files_beside(app_database) == before, f"{name} touched the app's database {DB_PATH}"
    assert recorded_versions(alembic_engine) == ([HEAD_REVISION] if ends_at_head else []), (
        f"{name} did not leave the database it was handed where it should"
    )
