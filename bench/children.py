"""The programs the benchmark times, each run in a fresh interpreter, and how to run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# (a) An app start: import the models, connect, one query; with or without init_db().
APP_START = """
import json, sys, time
import gc
import data.models
from data.db.session import engine, init_db
# What the imports left is kept out of the collector, as an app can do after its own
# imports (gc.freeze()): otherwise a generation-2 collection of the whole ORM lands inside
# whatever runs next (here init_db(), 2 ms becoming 35 ms), timing the imports, not it.
gc.collect()
gc.freeze()
init_ms = None
action = None
if {with_init}:
    started = time.perf_counter()
    action = init_db().action
    init_ms = (time.perf_counter() - started) * 1000
with engine.connect() as connection:
    connection.exec_driver_sql("SELECT count(*) FROM clients").scalar()
alembic = any(name == "alembic" or name.startswith("alembic.") for name in sys.modules)
print(json.dumps({{"init_ms": init_ms, "action": action, "alembic": alembic}}))
"""

# (a) CPU the start spends on the data layer: importing the session module and init_db() at
# head, against what an ORM app pays anyway (SQLAlchemy's ORM, a sqlite3 connection reading
# the version row). Process CPU time from the first import: interpreter start-up is alike.
START_CPU_FLOOR = """
import json, sys, time
started = time.process_time()
import sqlalchemy.orm, sqlite3
connection = sqlite3.connect(sys.argv[1])
connection.execute("SELECT version_num FROM alembic_version").fetchall()
connection.close()
print(json.dumps({"cpu_ms": (time.process_time() - started) * 1000}))
"""
START_CPU = """
import json, time
started = time.process_time()
import sqlalchemy.orm
from data.db.session import init_db
action = init_db().action
print(json.dumps({"cpu_ms": (time.process_time() - started) * 1000, "action": action}))
"""

# (b) The first run on a new file. With ``preload``, the runner's own imports happen before
# the clock starts, so only the work is timed.
FIRST_RUN = """
import json, sys, time
import data.models
from data.db.session import init_db
if {preload}:
    import data.db.fast_path, data.db.runner
started = time.perf_counter()
action = init_db().action
elapsed = (time.perf_counter() - started) * 1000
alembic = any(name == "alembic" or name.startswith("alembic.") for name in sys.modules)
print(json.dumps({{"ms": elapsed, "action": action, "alembic": alembic}}))
"""

# (c), (d) init_db() with every COMMIT on the database file counted, through SQLite's trace
# callback on every connection made to it (the app's, the runner's, the migration engine's),
# plus any write run outside a transaction (SQLite commits those on its own).
COUNTED_INIT = """
import json, os, sqlite3, sys, time
target = os.path.realpath(os.environ["DB_PATH"])
counts = {"commits": 0, "autocommit_writes": 0, "statements": 0}
READS = {"SELECT", "PRAGMA", "BEGIN", "ROLLBACK", "SAVEPOINT", "RELEASE", "EXPLAIN", "WITH"}
_connect = sqlite3.connect

def connect(database, *args, **kwargs):
    connection = _connect(database, *args, **kwargs)
    if os.path.realpath(os.fspath(database)) == target:
        def trace(sql, connection=connection):
            if sql.startswith("--"):
                return  # a statement nested in another (a table-valued PRAGMA's): not its own
            counts["statements"] += 1
            words = sql.split(None, 1)
            first = words[0].upper() if words else ""
            if first in ("COMMIT", "END"):
                counts["commits"] += 1
            elif not connection.in_transaction and first not in READS:
                counts["autocommit_writes"] += 1
        connection.set_trace_callback(trace)
    return connection

sqlite3.connect = sqlite3.dbapi2.connect = connect
import logging, resource
steps = {}

class StepHandler(logging.Handler):
    def emit(self, record):
        steps.update(getattr(record, "steps", {}))

runner_log = logging.getLogger("data.migration.runner")
runner_log.addHandler(StepHandler())
runner_log.setLevel(logging.INFO)
import data.models
from data.db.session import init_db
if os.environ.get("BENCH_SQLCIPHER_LIBRARY"):
    # A plain file through SQLCipher's own SQLite (no key): what encryption itself costs,
    # apart from the SQLite version sqlcipher3 bundles.
    import data.db.session as session
    from data.db.cipher import cipher_url
    session.engine = session.create_app_engine(cipher_url(session.DB_PATH))
started = time.perf_counter()
# CPU as well as wall time: the upgrade's own thread is its critical path on an idle machine
# (the scoped integrity check runs in a reader thread beside it); process CPU counts both.
thread_cpu, process_cpu = time.thread_time(), time.process_time()
outcome = init_db()
elapsed = (time.perf_counter() - started) * 1000
thread_cpu_ms = (time.thread_time() - thread_cpu) * 1000
process_cpu_ms = (time.process_time() - process_cpu) * 1000
# VmHWM is this process's own high-water mark; ru_maxrss would carry the bench's own
# (exec records the parent's peak when the child is spawned by vfork).
try:
    with open("/proc/self/status") as status:
        peak_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
except OSError:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rebuild_ms = None
timing = os.environ.get("BENCH_REBUILD_TIMING")
if timing and os.path.exists(timing):
    with open(timing) as handle:
        rebuild_ms = float(handle.read())
print(json.dumps({"ms": elapsed, "action": outcome.action, "rebuild_ms": rebuild_ms,
                  "steps": steps, "peak_mb": peak_mb, "thread_cpu_ms": thread_cpu_ms,
                  "process_cpu_ms": process_cpu_ms, **counts}))
"""

# (d) The same rebuild in raw SQL: a copy SQLite can do page by page (INSERT ... SELECT *
# into an identical empty table), then the indexes, in one transaction with foreign keys off.
RAW_REBUILD = """
import json, re, sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA busy_timeout = 30000")
connection.execute("PRAGMA foreign_keys = OFF")
(table_sql,) = connection.execute(
    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'transactions'"
).fetchone()
indexes = [row[0] for row in connection.execute(
    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transactions' "
    "AND sql IS NOT NULL"
)]
new_sql = re.sub(r"^CREATE TABLE \\"?transactions\\"?", "CREATE TABLE transactions_new", table_sql)
connection.execute("BEGIN IMMEDIATE")
started = time.perf_counter()
cpu = time.process_time()
connection.execute(new_sql)
connection.execute("INSERT INTO transactions_new SELECT * FROM transactions")
connection.execute("DROP TABLE transactions")
connection.execute("ALTER TABLE transactions_new RENAME TO transactions")
for sql in indexes:
    connection.execute(sql)
rebuild_ms = (time.perf_counter() - started) * 1000
connection.execute("COMMIT")
total_ms = (time.perf_counter() - started) * 1000
connection.close()  # the last connection checkpoints the WAL into the file
whole_ms = (time.perf_counter() - started) * 1000
cpu_ms = (time.process_time() - cpu) * 1000
answer = {"rebuild_ms": rebuild_ms, "ms": total_ms, "whole_ms": whole_ms, "cpu_ms": cpu_ms}
print(json.dumps(answer))
"""

# (e) The three typical queries, through the ORM on the app's engine and as raw SQL.
QUERIES = """
import json, sqlite3, statistics, sys, time
from data.db.session import DB_PATH, ReadSessionLocal, engine
from bench.studio import queries, query_plan, uses_an_index

iterations = int(sys.argv[1])
raw = sqlite3.connect(DB_PATH, isolation_level=None)
report = []
for query in queries():
    def orm():
        # As a screen that shows data does it (README): a reading session.
        with ReadSessionLocal() as session:
            return query.run_orm(session)

    def plain():
        return raw.execute(query.raw_sql, query.raw_params).fetchall()

    orm_result, raw_result = orm(), plain()
    if isinstance(orm_result, list):
        assert len(orm_result) == len(raw_result), (query.name, len(orm_result), len(raw_result))
        rows = len(raw_result)
    else:
        assert orm_result == raw_result[0][0], (query.name, orm_result, raw_result)
        rows = 1
    compiled = query.statement.compile(engine, compile_kwargs={"literal_binds": True})
    orm_plan = query_plan(raw, str(compiled), ())
    raw_plan = query_plan(raw, query.raw_sql, query.raw_params)
    for _ in range(10):
        orm(); plain()
    orm_us, raw_us = [], []
    for _ in range(iterations):
        started = time.perf_counter(); orm(); orm_us.append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter(); plain(); raw_us.append((time.perf_counter() - started) * 1e6)
    report.append({
        "name": query.name, "rows": rows,
        "orm_us": statistics.median(orm_us), "raw_us": statistics.median(raw_us),
        "orm_plan": orm_plan, "raw_plan": raw_plan,
        "index": uses_an_index(orm_plan) and uses_an_index(raw_plan),
    })

# SQLAlchemy's own floor for the history: the same table's columns mapped bare (no types, so
# no result processing; no relationships, no listeners, a default engine), the same query,
# interleaved with the raw SQL in the same loop. What the app's ORM costs above it is ours.
from sqlalchemy import Column, MetaData, Table, create_engine, select
from sqlalchemy.orm import Session, registry
from data.models import Transaction

bare_table = Table(
    Transaction.__table__.name, MetaData(),
    *(Column(c.name, primary_key=c.primary_key) for c in Transaction.__table__.columns),
)
class Bare:
    pass
registry().map_imperatively(Bare, bare_table)
bare_engine = create_engine(f"sqlite:///{DB_PATH}")
history = queries()[0]
bare_sql = (
    select(Bare).where(bare_table.c.client_id == history.raw_params[0])
    .order_by(bare_table.c.occurred_at.desc())
)
def bare():
    with Session(bare_engine) as session:
        return session.scalars(bare_sql).all()
def plain():
    return raw.execute(history.raw_sql, history.raw_params).fetchall()
assert len(bare()) == len(plain())
for _ in range(10):
    bare(); plain()
bare_us, raw_us = [], []
for _ in range(iterations):
    started = time.perf_counter(); bare(); bare_us.append((time.perf_counter() - started) * 1e6)
    started = time.perf_counter(); plain(); raw_us.append((time.perf_counter() - started) * 1e6)
report.append({
    "name": "bare SQLAlchemy ORM floor", "of": history.name, "rows": len(plain()),
    "orm_us": statistics.median(bare_us), "raw_us": statistics.median(raw_us),
})
print(json.dumps(report))
"""


# (f) The three typical queries through the ORM only (the app's engine, plain or encrypted).
ORM_QUERIES = """
import json, statistics, sys, time
from sqlalchemy.orm import Session
from data.db.session import engine
from bench.studio import queries

iterations = int(sys.argv[1])
report = []
for query in queries():
    def orm():
        with Session(engine, expire_on_commit=False) as session:
            return query.run_orm(session)

    for _ in range(10):
        orm()
    orm_us = []
    for _ in range(iterations):
        started = time.perf_counter(); orm(); orm_us.append((time.perf_counter() - started) * 1e6)
    report.append({"name": query.name, "orm_us": statistics.median(orm_us)})
print(json.dumps(report))
"""

# (f) A raw key for the encrypted side: the benchmark's own, never a studio's.
BENCH_KEY = "be" * 32


def child_env(project: Path, db_path: Path | None, **extra: str) -> dict[str, str]:
    """This environment, with ``project`` first on the path and bytecode caching on."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DB_PATH", "DATABASE_URL", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH")
    }
    # The copy's ``data`` wins over the editable install; ``bench`` comes from the checkout.
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(Path(__file__).resolve().parents[1])])
    env["XDG_DATA_HOME"] = str(project / "xdg-data")
    if db_path is not None:
        env["DB_PATH"] = str(db_path)
    env.update(extra)
    return env


def run_child(code: str, env: dict[str, str], cwd: Path, *args: str) -> tuple[float, Any]:
    """Run ``code`` in a fresh interpreter; its wall time in ms and its JSON answer."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{result.stdout}\n{result.stderr}")
    return wall, json.loads(result.stdout.strip().splitlines()[-1])


# (g) Moving a studio's file to a PostgreSQL server through move_to_server(), the way
# `inklink-db move-to` does it: the dry run, the runner on both sides, the verified copy.
MOVE = """
import json, resource, sys, time
from pathlib import Path
from sqlalchemy.engine import make_url
from data.db.move import move_to_server
started = time.perf_counter()
outcome = move_to_server(Path(sys.argv[1]), make_url(sys.argv[2]))
wall = time.perf_counter() - started
# VmHWM: this program's own peak (ru_maxrss keeps the parent's from before the exec).
peak_kb = next(
    (int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")),
    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
)
print(json.dumps({"copy_s": outcome.seconds, "wall_s": wall, "rows": outcome.rows,
                  "peak_kb": peak_kb}))
"""

# (g) The floor: the same rows read with plain sqlite3 and written with psycopg's COPY in one
# transaction (raw values, no types, no checks) into the same schema, made first by the runner.
BARE_COPY = """
import json, resource, sqlite3, sys, time
import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from data.db.runner import ensure_current
from data.migration.transfer import studio_tables
url = make_url(sys.argv[2])
engine = create_engine(url, poolclass=NullPool)
ensure_current(engine)
engine.dispose()
conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
lite = sqlite3.connect(sys.argv[1])
rows = {}
started = time.perf_counter()
with psycopg.connect(conninfo) as pg:
    with pg.cursor() as cursor:
        for table in studio_tables():
            columns = ", ".join('"' + column.name + '"' for column in table.columns)
            count = 0
            with cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
                for row in lite.execute(f'SELECT {columns} FROM "{table.name}"'):
                    copy.write_row(row)
                    count += 1
            rows[table.name] = count
    pg.commit()
elapsed = time.perf_counter() - started
# VmHWM: this program's own peak (ru_maxrss keeps the parent's from before the exec).
peak_kb = next(
    (int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")),
    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
)
print(json.dumps({"copy_s": elapsed, "rows": rows, "peak_kb": peak_kb}))
"""
