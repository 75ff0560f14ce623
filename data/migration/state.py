"""What a database holds, as the runner classifies it: tables and recorded revisions."""

from __future__ import annotations

from dataclasses import dataclass

VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class FileState:
    """What a database (a SQLite file, or a server's schema) holds, read under the lock."""

    exists: bool
    size: int
    tables: frozenset[str]
    versions: tuple[str, ...]

    @property
    def user_tables(self) -> frozenset[str]:
        return self.tables - {VERSION_TABLE}

    @property
    def has_version_table(self) -> bool:
        return VERSION_TABLE in self.tables
