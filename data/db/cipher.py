"""SQLAlchemy's ``sqlite+pysqlcipher`` dialect, with the key looked up when a connection opens.

SQLAlchemy's own dialect takes the key from the URL's password when the engine is made; the
app's engine is made when ``data.db.session`` is imported, and looking the key up in the OS
keyring then would slow every start and fail the import itself when the key is missing.
This dialect (registered under the same name) uses a password given in the URL as it is,
and otherwise asks ``data.db.keys`` for the file's key at each new connection (cached per
process): ``INKLINK_DB_KEY``, else the keyring. A missing key raises ``DatabaseKeyError``
before anything is read or written. A file that is plain SQLite gets no key, so the engine
also opens a file ``decrypt`` made plain again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlcipher import SQLiteDialect_pysqlcipher
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.pool import Pool, QueuePool

from data.db import keys
from data.migration.raw_sqlite import use_key

DRIVER_NAME = "sqlite+pysqlcipher"


class KeyedSQLCipherDialect(SQLiteDialect_pysqlcipher):
    """``sqlite+pysqlcipher`` whose key is the URL's password or, without one, the file's."""

    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[Pool]:
        # SQLAlchemy's pysqlcipher picks SingletonThreadPool (one connection per thread, so a
        # reading and a writing session of one thread would share a connection and its
        # transaction). A raw key opens in about 0.5 ms: pool as for a plain file.
        return QueuePool

    def on_connect_url(self, url: URL) -> Callable[[Any], None] | None:
        # SQLite's own connect-time setup, without the parent's "pragma key" from the URL.
        plain_setup = SQLiteDialect_pysqlite.on_connect_url(self, url)
        given = url.password
        path = url.database or ""
        # The key found for the first connection serves the later ones: looking again means
        # opening and closing the file, and closing any descriptor of a file drops every
        # POSIX lock this process holds on it, the pool's other connections' included.
        found: list[str] = [str(given)] if given is not None else []

        def on_connect(dbapi_connection: Any) -> None:
            if not found and keys.looks_encrypted(path):
                found.append(keys.key_for(path).pragma())
            if found:
                use_key(dbapi_connection, found[0])
            # else: a plain SQLite file (or none yet); SQLCipher without a key is SQLite.
            if plain_setup is not None:
                plain_setup(dbapi_connection)

        return on_connect


def register() -> None:
    """Make ``sqlite+pysqlcipher`` URLs use this dialect (idempotent)."""
    registry.register("sqlite.pysqlcipher", __name__, "KeyedSQLCipherDialect")


def cipher_url(db_path: str, key: str | None = None) -> URL:
    """The URL of an encrypted file; ``key`` (``x'<hex>'``) given explicitly, or looked up."""
    register()
    return URL.create(DRIVER_NAME, password=key, database=db_path)


register()
