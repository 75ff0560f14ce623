"""``python -m data.db``: say where the database is and at which revision.

``python -m data.db encrypt|rekey|decrypt|unlock`` manage the file's encryption
(``data/db/key_commands.py``); ``backup [--if-due]``, ``list-backups`` and ``restore BACKUP``
its backups (``data/db/backup_commands.py``).
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import DBAPIError

from data.db.errors import DataLayerError
from data.db.head import recorded_history
from data.db.session import DB_PATH, engine

KEY_COMMANDS = ("encrypt", "rekey", "decrypt", "unlock")
BACKUP_COMMANDS = ("backup", "list-backups", "restore")


def main() -> int:
    if sys.argv[1:2] and sys.argv[1] in KEY_COMMANDS:
        from data.db.key_commands import run

        return run(sys.argv[1:])
    if sys.argv[1:2] and sys.argv[1] in BACKUP_COMMANDS:
        from data.db.backup_commands import run as run_backup_command

        return run_backup_command(sys.argv[1:])
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


if __name__ == "__main__":
    sys.exit(main())
