"""Deprecated import path and command: this moved to ``data.authoring.er_diagram``.

``python -m data.db.er_diagram`` still works; new scripts say
``python -m data.authoring.er_diagram``.
"""

import sys

from data.authoring.er_diagram import *  # noqa: F403
from data.authoring.er_diagram import main

if __name__ == "__main__":
    sys.exit(main())
