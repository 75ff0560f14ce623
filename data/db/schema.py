"""Deprecated import path: this moved to ``data.migration.schema``."""

from data.migration.schema import *  # noqa: F403
