"""Data steps in revisions see each table as it is at that revision, never the app's models.

A revision runs long after it was written, when the models have moved on: a column it reads
may since have been renamed, one it fills may since be gone. Django's answer is the
"historical model" of each migration; ours is the table reflected from the database inside
the migration's own transaction, so it has exactly the columns the revisions so far made::

    from data.migration.data_steps import live_table

    def upgrade() -> None:
        with op.batch_alter_table("clients") as batch_op:
            batch_op.add_column(sa.Column("display_name", sa.String(length=201)))
        clients = live_table("clients")
        op.execute(
            clients.update().values(display_name=clients.c.first_name + " " + clients.c.last_name)
        )

Keep this module's interface stable: released revisions import it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError


def live_table(name: str) -> sa.Table:
    """Table ``name`` as the database has it now, in the migration's transaction.

    Reflected after the schema operations before it in the same ``upgrade()`` (a batch block
    applies when it closes), so it sees a column added just above. Offline (``--sql``) there
    is no database to read: write the data step as plain SQL with ``op.execute`` instead.
    """
    context = op.get_context()
    if context.as_sql:
        raise CommandError(
            f"live_table({name!r}) needs a database connection, and --sql mode has none: "
            "run the upgrade online, or write this data step as plain SQL"
        )
    return sa.Table(name, sa.MetaData(), autoload_with=op.get_bind())
