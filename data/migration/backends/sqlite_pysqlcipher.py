"""The runner's side of an encrypted SQLite file: the plain file's backend, keyed.

Everything the plain backend does (lock, classification, backups, WAL, owner-only modes)
holds; the raw connections get the file's key, backups are encrypted under the same key and
salt, and a database this turn creates gets its key first: from ``INKLINK_DB_KEY``, or made
here and put in the OS keyring (and read back) before the file holds anything.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import Connection

from data.db import keys
from data.db.cipher import cipher_url
from data.db.file_modes import create_private_file
from data.migration.backends import sqlite


class FileSession(sqlite.FileSession):
    backend: Backend

    def transaction(
        self, from_revision: str | None, *, command_line: bool = False, read_only: bool = False
    ) -> contextlib.AbstractContextManager[Connection]:
        if read_only or not self.backend.is_new():
            return super().transaction(
                from_revision, command_line=command_line, read_only=read_only
            )
        # The key first: without a keyring to keep it, no file is made at all.
        url = cipher_url(str(self.path), self.new_key_pragma())
        create_private_file(self.path)
        return sqlite.migration_transaction(
            url, self.backend.display, from_revision, command_line=command_line
        )

    def new_key_pragma(self) -> str:
        """The key of the database about to be created (see the module's docstring)."""
        display = self.backend.display
        given = keys.key_from_environment(display)
        if given is not None:
            return given.pragma()  # its holder keeps it; SQLCipher picks the salt
        key, salt = keys.new_key(), keys.new_salt()
        # The keyring first: a key that exists only in the file would be a lost database.
        keys.store_in_keyring(display, salt, key)
        keys.remember(self.path, salt, key)
        self.recovery_key = key.recovery_key()
        return key.pragma(salt)


class Backend(sqlite.Backend):
    """An encrypted SQLite file (``sqlite+pysqlcipher``)."""

    def is_new(self) -> bool:
        try:
            return self.path.stat().st_size == 0
        except FileNotFoundError:
            return True

    def file_key(self) -> keys.DatabaseKey | None:
        # A file still plain (or none yet) opens without a key, as the app's engine does.
        return keys.key_for(self.path) if keys.looks_encrypted(self.path) else None

    def new_session(self) -> sqlite.FileSession:
        return FileSession(self)
