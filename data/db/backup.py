"""Deprecated import path: this moved to ``data.migration.backup``."""

from data.migration.backup import *  # noqa: F403
