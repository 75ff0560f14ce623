"""``python -m data.db``: say where the database is and at which revision."""

from __future__ import annotations

import sys

from sqlalchemy.exc import DBAPIError

from data.db.head import HEAD_REVISION
from data.db.session import DB_PATH, engine


def main() -> int:
    where = DB_PATH if engine.dialect.name == "sqlite" else engine.url.render_as_string()
    try:
        with engine.connect() as connection:
            versions = [
                row[0]
                for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            ]
    except DBAPIError as exc:
        print(f"Database: {where}\nRevision: none ({exc.orig})")
        return 1
    state = "head" if versions == [HEAD_REVISION] else f"not head; head is {HEAD_REVISION}"
    print(f"Database: {where}\nRevision: {', '.join(versions) or 'none'} ({state})")
    return 0 if versions == [HEAD_REVISION] else 1


if __name__ == "__main__":
    sys.exit(main())
