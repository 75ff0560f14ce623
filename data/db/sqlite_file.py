"""Deprecated import path: this moved to ``data.migration.sqlite_file``."""

from data.migration.sqlite_file import *  # noqa: F403
from data.migration.sqlite_file import __all__  # noqa: F401
