"""The revision this code migrates to, known without loading Alembic or the scripts.

Written by ``python -m data.db.revisions --update``; a test fails when it disagrees
with the migration scripts, so it cannot go stale unnoticed.
"""

HEAD_REVISION = "4b342def9c96"
BASELINE_REVISION = "4b342def9c96"
