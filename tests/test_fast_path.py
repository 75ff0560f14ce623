"""The at-head fast path of init_db(): cheap, Alembic-free, and never trusting a stale record.

Speed itself is measured by ``python -m bench``, never by timed tests; these tests check what
makes the fast path fast (what it imports) and what keeps it right (the head it compares with,
read from ``migrations/manifest.json``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bench.studio import queries, query_plan, uses_an_index
from data.db.head import recorded_history
from tests.conftest import PROJECT_ROOT, run_python, subprocess_env
from tests.scratch import REVISION_TEMPLATE, ScratchProject

LOADED = """
import json, sys
import data.models
from data.db.session import engine, init_db
action = init_db().action
with engine.connect() as connection:
    connection.exec_driver_sql("SELECT count(*) FROM clients").scalar()
print(json.dumps({
    "action": action,
    "alembic": sorted(m for m in sys.modules if m == "alembic" or m.startswith("alembic.")),
    "runner": "data.db.runner" in sys.modules,
}))
"""

FAST_PATH = """
import json
from data.db.fast_path import current_outcome
from data.db.head import HEAD_REVISION
from data.db.session import DB_PATH, engine
outcome = current_outcome(engine, DB_PATH)
print(json.dumps({"head": HEAD_REVISION, "action": outcome and outcome.action}))
"""

SCRIPT_HEADS = """
import json
from alembic.script import ScriptDirectory
from data.db.head import HEAD_REVISION, recorded_history
from data.db.runner import alembic_config
heads = ScriptDirectory.from_config(alembic_config()).get_heads()
print(json.dumps({"heads": heads, "recorded": HEAD_REVISION, "problem": recorded_history().problem}))
"""


def _answer(code: str, db_path: Path | None, project: Path = PROJECT_ROOT) -> dict[str, object]:
    env = subprocess_env(db_path, PYTHONPATH=str(project))
    result = run_python(code, env=env, cwd=project)
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _stamp(db_path: Path, revision: str) -> None:
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    finally:
        connection.close()


def test_first_run_creates_the_database_without_loading_alembic(db_path: Path) -> None:
    answer = _answer(LOADED, db_path)
    assert answer["action"] == "created"
    assert answer["alembic"] == [], "the create path must not load Alembic or the scripts"


def test_init_db_at_head_loads_neither_alembic_nor_the_runner(db_path: Path) -> None:
    _answer(LOADED, db_path)  # created, then used by the app (so the file is in WAL mode)
    answer = _answer(LOADED, db_path)
    assert answer["action"] == "current"
    assert answer["alembic"] == [], f"init_db() at head imported {answer['alembic']}"
    assert answer["runner"] is False, "init_db() at head fell through to the runner"


def test_recorded_head_agrees_with_the_migration_scripts() -> None:
    answer = _answer(SCRIPT_HEADS, None)
    assert answer["problem"] is None
    assert answer["heads"] == [answer["recorded"]] == [recorded_history().head], (
        "migrations/manifest.json disagrees with migrations/versions: run "
        "`python -m data.db.revisions --update` (see README)"
    )


@pytest.fixture
def stale_copy(tmp_path: Path, db_path: Path) -> ScratchProject:
    """A copy at whose head ``db_path`` was made; then a revision file it never recorded."""
    project = ScratchProject(tmp_path / "project")
    _answer(LOADED, db_path, project.root)
    (project.root / "migrations" / "versions" / "2099_feedc0ffee01_new.py").write_text(
        REVISION_TEMPLATE.format(
            doc="never recorded",
            revision="feedc0ffee01",
            down=project.head,
            upgrade="    pass",
            downgrade="    pass",
        )
    )
    return project


def test_a_stale_record_is_detected(stale_copy: ScratchProject) -> None:
    answer = _answer(SCRIPT_HEADS, None, stale_copy.root)
    assert answer["heads"] == ["feedc0ffee01"]
    assert answer["recorded"] == stale_copy.head
    assert isinstance(answer["problem"], str)
    assert "2099_feedc0ffee01_new.py not recorded" in answer["problem"]


def test_fast_path_declines_a_database_beyond_a_stale_record(
    stale_copy: ScratchProject, db_path: Path
) -> None:
    _stamp(db_path, "feedc0ffee01")  # as the scripts' real head would leave it
    answer = _answer(FAST_PATH, db_path, stale_copy.root)
    assert answer == {"head": stale_copy.head, "action": None}


def test_fast_path_declines_a_database_at_the_head_of_a_stale_record(
    stale_copy: ScratchProject, db_path: Path
) -> None:
    """At the recorded head, but the record is out of date: the slow path decides (refuses)."""
    answer = _answer(FAST_PATH, db_path, stale_copy.root)
    assert answer == {"head": stale_copy.head, "action": None}


def test_fast_path_answers_current_only_at_head(db_path: Path) -> None:
    head = recorded_history().head
    _answer(LOADED, db_path)
    assert _answer(FAST_PATH, db_path) == {"head": head, "action": "current"}
    _stamp(db_path, "0000deadbeef")
    assert _answer(FAST_PATH, db_path) == {"head": head, "action": None}


@pytest.mark.parametrize("query", queries(), ids=lambda query: query.name)
def test_bench_query_uses_an_index(created_engine: Engine, query: object) -> None:
    from bench.studio import Query

    assert isinstance(query, Query)
    compiled = query.statement.compile(created_engine, compile_kwargs={"literal_binds": True})
    with created_engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        orm_plan = query_plan(raw, str(compiled), ())
        raw_plan = query_plan(raw, query.raw_sql, query.raw_params)
    assert uses_an_index(orm_plan), orm_plan
    assert uses_an_index(raw_plan), raw_plan


def _schema(connection: sqlite3.Connection) -> list[tuple[str, str, str]]:
    # SQLite quotes a renamed table's name in its stored SQL, as after any batch rebuild.
    return [
        (kind, name, sql.replace(f'CREATE TABLE "{name}"', f"CREATE TABLE {name}"))
        for kind, name, sql in connection.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
        )
    ]


def test_rebuild_table_keeps_rows_indexes_and_schema(created_engine: Engine, db_path: Path) -> None:
    from data.db.policy import create_migration_engine
    from data.db.rebuild import rebuild_table

    with created_engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO clients (id, first_name, last_name, created_at, updated_at) "
            "VALUES (1, 'A', 'B', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
        )
        connection.exec_driver_sql(
            "INSERT INTO transactions (client_id, kind, method, amount_cents, occurred_at, "
            "created_at) VALUES (1, 'payment', 'card', 500, '2026-01-01 00:00:00.000000', "
            "'2026-01-01 00:00:00.000000')"
        )
    created_engine.dispose()
    plain = sqlite3.connect(db_path)
    before = _schema(plain)
    rows_before = plain.execute("SELECT * FROM transactions").fetchall()
    plain.close()
    migration = create_migration_engine(f"sqlite:///{db_path}")
    try:
        with migration.connect() as connection, connection.begin():
            rebuild_table(connection, "transactions")
    finally:
        migration.dispose()
    plain = sqlite3.connect(db_path)
    try:
        assert _schema(plain) == before
        assert plain.execute("SELECT * FROM transactions").fetchall() == rows_before
        assert plain.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        plain.close()


def test_rebuild_table_refuses_with_foreign_keys_on(created_engine: Engine) -> None:
    from data.db.rebuild import rebuild_table

    with created_engine.begin() as connection, pytest.raises(RuntimeError, match="foreign keys"):
        rebuild_table(connection, "transactions")
