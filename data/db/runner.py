"""Deprecated import path: this moved to ``data.migration.runner``."""

from data.migration.runner import *  # noqa: F403
from data.migration.runner import __all__  # noqa: F401
