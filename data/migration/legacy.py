"""Tables made before migrations existed: adopted only when they are exactly the baseline."""

from __future__ import annotations

from data.db.errors import LegacySchemaMismatchError
from data.migration.schema import Snapshot, differences


def refuse_legacy_mismatch(display: str, found: Snapshot, expected: Snapshot, kept: str) -> None:
    """Refuse tables made before migrations unless they are exactly the baseline schema."""
    problems = differences(found, expected)
    if problems:
        listing = "\n  - ".join(problems)
        raise LegacySchemaMismatchError(
            display,
            "its tables were not made by InkLinkOS's migrations and differ from the first "
            f"InkLinkOS schema:\n  - {listing}\n",
            kept + " Send this message to support; do not change the tables by hand.",
        )
