"""Deprecated import path: this moved to ``data.migration.pg_schema``."""

from data.migration.pg_schema import *  # noqa: F403
