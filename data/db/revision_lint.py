"""Deprecated import path and command: this moved to ``data.migration.revision_lint``.

``python -m data.db.revision_lint`` still works; new scripts say
``python -m data.migration.revision_lint``.
"""

import sys

from data.migration.revision_lint import *  # noqa: F403
from data.migration.revision_lint import main

if __name__ == "__main__":
    sys.exit(main())
