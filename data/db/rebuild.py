"""Deprecated import path: this moved to ``data.migration.rebuild``."""

from data.migration.rebuild import *  # noqa: F403
