"""The app's connection policy: foreign keys, WAL, real transactions, no "database is locked"."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from data.db.session import create_session_factory
from tests.conftest import run_python


def test_every_connection_and_orm_session_enforces_foreign_keys(created_engine: Engine) -> None:
    factory = create_session_factory(created_engine)
    with factory() as db:
        assert db.execute(text("PRAGMA foreign_keys")).scalar() == 1
    with created_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_rolled_back_ddl_and_rows_are_really_gone(created_engine: Engine) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), created_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE scratch (id INTEGER)")
        connection.exec_driver_sql(
            "INSERT INTO clients (first_name, last_name, created_at, updated_at) "
            "VALUES ('A', 'B', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
        )
        raise Boom
    with created_engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM clients").scalar() == 0
        tables = connection.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE name = 'scratch'"
        ).scalar()
        assert tables == 0


def test_savepoint_rolls_back_only_its_own_work(created_engine: Engine) -> None:
    factory = create_session_factory(created_engine)
    insert = text(
        "INSERT INTO clients (first_name, last_name, created_at, updated_at) "
        "VALUES (:n, 'B', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
    )
    with factory() as db, db.begin():
        db.execute(insert, {"n": "kept"})
        nested = db.begin_nested()
        db.execute(insert, {"n": "dropped"})
        nested.rollback()
    with created_engine.connect() as connection:
        names = connection.exec_driver_sql("SELECT first_name FROM clients").scalars().all()
    assert names == ["kept"]


WRITER = """
import datetime as dt, sys, threading
from sqlalchemy import select, func
from data.db.session import SessionLocal
from data.models import Client, Transaction

errors = []

def work(worker):
    try:
        for i in range(15):
            with SessionLocal() as db, db.begin():
                # read, then write: the pattern that fails with a deferred BEGIN
                total = db.scalar(select(func.count()).select_from(Transaction))
                client = db.scalars(select(Client).limit(1)).one()
                db.add(Transaction(client=client, kind="payment", method="cash",
                                   amount_cents=100 + total, occurred_at=dt.datetime.now(dt.UTC)))
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        SessionLocal.remove()

threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
for t in threads: t.start()
for t in threads: t.join()
print("ERRORS", errors)
sys.exit(1 if errors else 0)
"""


def test_concurrent_windows_all_save_without_database_is_locked(
    created_engine: Engine, db_path: Path
) -> None:
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT, subprocess_env

    with created_engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO clients (first_name, last_name, created_at, updated_at) "
            "VALUES ('A', 'B', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
        )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER],
            env=subprocess_env(db_path),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=300)[0] for child in children]
    assert [child.returncode for child in children] == [0] * 4, outputs
    with created_engine.connect() as connection:
        assert (
            connection.exec_driver_sql("SELECT count(*) FROM transactions").scalar() == 4 * 3 * 15
        )


def test_run_python_helper_reports_child_failures(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="child failed"):
        run_python("raise SystemExit(3)", tmp_path / "x.db")
