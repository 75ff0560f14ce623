"""``python -m data.db``: say where the database is and at which revision.

``python -m data.db verify``: check every page of it (exit 0 sound, 1 damaged, 2 not checked).
``python -m data.db encrypt|rekey|decrypt|unlock`` manage the file's encryption
(``data/db/key_commands.py``).
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import DBAPIError

from data.db.errors import DataLayerError
from data.db.head import recorded_history
from data.db.session import DB_PATH, engine

KEY_COMMANDS = ("encrypt", "rekey", "decrypt", "unlock")


def main() -> int:
    if sys.argv[1:2] and sys.argv[1] in KEY_COMMANDS:
        from data.db.key_commands import run

        return run(sys.argv[1:])
    where = DB_PATH if engine.dialect.name == "sqlite" else engine.url.render_as_string()
    history = recorded_history()
    if history.problem is not None:
        print(f"Database: {where}\nRevision: unknown: {history.problem}", file=sys.stderr)
        return 2
    try:
        with engine.connect() as connection:
            versions = [
                row[0]
                for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            ]
    except DBAPIError as exc:
        print(f"Database: {where}\nRevision: none ({exc.orig})")
        return 1
    except DataLayerError as exc:  # an encrypted file without its key
        print(str(exc), file=sys.stderr)
        return 1
    head = history.head
    if versions == [head]:
        state = "head"
    elif len(versions) == 1 and versions[0] in history.revisions:
        state = f"behind; head is {head}"
    elif versions:
        state = f"ahead of this code, which knows revisions up to {head}: update this checkout"
    else:
        state = f"no revision; head is {head}"
    print(f"Database: {where}\nRevision: {', '.join(versions) or 'none'} ({state})")
    return 0 if versions == [head] else 1


def verify() -> int:
    from data.db.session import check_database

    report = check_database()
    print(report.describe(), file=sys.stdout if report.ok else sys.stderr)
    return {"ok": 0, "damaged": 1}.get(report.status, 2)


if __name__ == "__main__":
    sys.exit(verify() if sys.argv[1:] == ["verify"] else main())
