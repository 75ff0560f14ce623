"""The app's start imports only what it uses: the session module and init_db() at head.

What an app pays for the data layer at every start is what importing ``data.db.session`` and
running ``init_db()`` on a current database load beyond SQLAlchemy's ORM and the ``sqlite3``
driver, which the app needs anyway. Each module on that path is named here: one more (Alembic,
the migration engine, the models, a JSON schema, a regex-heavy helper) fails this test, and
must be lazily imported where it is used, or added here with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_python

# What the start may add beyond `import sqlalchemy.orm, sqlite3`, and why.
EXPECTED = {
    # The seed's module and the vocabulary it is built from.
    "data",
    "data.db",
    "data.db.session",
    "data.db.errors",
    "data.db.file_modes",  # the data folder is made owner-only at import
    "data.db.policy",  # the connection policy of every app connection
    "data.db.refusals",  # a refused write becomes an error for people
    "data.db.keys",  # whether the file is encrypted, and its key when it is (issue 14)
    # init_db() at head: the fast path, the recorded head, the outcome, the header reads.
    "data.db.fast_path",
    "data.db.head",
    "data.db.outcome",
    "data.migration",
    "data.migration.raw_sqlite",
}
# SQLAlchemy's SQLite dialect: its package imports every driver module of it (pysqlite,
# aiosqlite, pysqlcipher) and its JSON and DML types, whatever the engine uses.
ALLOWED_PREFIXES = ("sqlalchemy.dialects.sqlite", "sqlalchemy.connectors")
ALLOWED_EXTRA = {"sqlalchemy.dialects._typing"}

PROBE = """
import json, sys
import sqlalchemy.orm, sqlite3
before = set(sys.modules)
from data.db.session import init_db
action = init_db().action
print(json.dumps({"action": action, "added": sorted(set(sys.modules) - before)}))
"""


def unexpected(added: list[str]) -> list[str]:
    return [
        name
        for name in added
        if name not in EXPECTED
        and name not in ALLOWED_EXTRA
        and not name.startswith(ALLOWED_PREFIXES)
    ]


def test_the_start_at_head_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    db = tmp_path / "inklink.db"
    run_python("from data.db.session import init_db; init_db()", db)  # created, in WAL mode
    answer = json.loads(run_python(PROBE, db).stdout.strip().splitlines()[-1])
    assert answer["action"] == "current"
    assert unexpected(answer["added"]) == [], (
        "the start imports modules it does not need: import them where they are used"
    )
    assert set(answer["added"]) >= EXPECTED, "the probe no longer sees the start's imports"


def test_the_guard_names_a_module_the_start_should_not_load() -> None:
    assert unexpected(["data.db.fast_path", "alembic", "data.models.client"]) == [
        "alembic",
        "data.models.client",
    ]
