"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from collections.abc import Sequence

<%
    # A revision started empty (to be written by hand) keeps its imports through the
    # post-write hook's `ruff check --fix`, which would otherwise remove them as unused.
    steps = f"{upgrades}{downgrades}"
    keep = "  # noqa: F401 (for the steps you write by hand)"
%>
import sqlalchemy as sa${"" if "sa." in steps else keep}
from alembic import op${"" if "op." in steps else keep}
${imports if imports else ""}
# revision identifiers, used by Alembic.
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    """${message}"""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """Undo: ${message}"""
    ${downgrades if downgrades else "pass"}
