"""Deprecated import path and command: this moved to ``data.authoring.revisions``.

``python -m data.db.revisions`` still works; new scripts say
``python -m data.authoring.revisions``.
"""

import sys

from data.authoring.revisions import *  # noqa: F403
from data.authoring.revisions import main

if __name__ == "__main__":
    sys.exit(main())
