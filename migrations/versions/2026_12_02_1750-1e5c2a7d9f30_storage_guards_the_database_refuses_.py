"""storage guards: the database refuses what the models refuse

Revision ID: 1e5c2a7d9f30
Revises: 4b342def9c96
Create Date: 2026-12-02 17:50:22.490522+00:00

From this revision on, the database itself refuses what the models refuse, whoever writes:
non-integer money, text longer than its column or holding a NUL, datetimes and dates not in
the form the app stores, integers out of the range PostgreSQL's column holds. The guards are
derived from the column types (``data.migration.guards``) and kept in step after every later
revision by the migration run itself; a later revision writes nothing for them.

Saved rows that already break a guard stop this upgrade with the list of rows; nothing is
dropped or changed.
"""

from collections.abc import Sequence

from data.migration import guards

# revision identifiers, used by Alembic.
revision: str = "1e5c2a7d9f30"
down_revision: str | Sequence[str] | None = "4b342def9c96"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Storage guards on every table, after checking every saved row against them."""
    guards.install()


def downgrade() -> None:
    """Undo: drop the storage guards (the rows stay as they are)."""
    guards.uninstall()
