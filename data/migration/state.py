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
    #: The schema may have changed since the runner last committed (on SQLite, the schema
    #: cookie differs from the one recorded then, or none was recorded): verify before use.
    schema_unverified: bool = False
    #: An encrypted (SQLCipher) file, opened with its key.
    encrypted: bool = False

    @property
    def user_tables(self) -> frozenset[str]:
        return self.tables - {VERSION_TABLE}

    @property
    def has_version_table(self) -> bool:
        return VERSION_TABLE in self.tables
