"""Plain or encrypted: how the tests open a studio file outside the data layer.

The file-level safety tests run on a plain file and on an encrypted one (the ``file_kind``
fixture of conftest). The encrypted kind sets ``INKLINK_DB_KEY``: the data layer then makes
every new database encrypted with it, and :func:`connect` does the same for the files the
tests make or read by hand. Without that variable it is the stdlib ``sqlite3`` as before.
Child processes import this module too: unlike conftest it changes nothing when imported.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from data.db.keys import KEY_ENV
from data.migration.raw_sqlite import SQLITE_MAGIC, use_key


def _integrity_errors() -> tuple[type[Exception], ...]:
    import sqlcipher3  # type: ignore[import-untyped]

    return (sqlite3.IntegrityError, sqlcipher3.IntegrityError)


# A constraint refused a row, through either driver (SQLCipher's errors are its own classes).
INTEGRITY_ERRORS = _integrity_errors()


def studio_key() -> str | None:
    """The key of this test's encrypted files (64 hex digits), or None for plain files."""
    return os.environ.get(KEY_ENV, "").strip() or None


def is_encrypted(path: Path | str) -> bool:
    """The file is there and not plain SQLite (its first bytes are SQLCipher's salt).

    Reads the header with a descriptor of its own: closing it drops this process's POSIX
    locks on the file, so never call it while this process keeps a connection to it open.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return False
    return bool(header) and header != SQLITE_MAGIC


def connect(
    path: Path | str, *, key: str | None = None, read_only: bool = False, **options: Any
) -> sqlite3.Connection:
    """A connection that sets nothing, as an outside observer (or a tool) opens the file.

    With a key (``key``, else ``INKLINK_DB_KEY``) an encrypted file, or one still to be
    made, is opened through SQLCipher with it; a plain file always through ``sqlite3``.
    ``options`` go to the driver's ``connect`` (``isolation_level``, ``timeout``).
    """
    key = key or studio_key()
    target = Path(path).absolute().as_uri() + "?mode=ro" if read_only else str(path)
    exists = Path(path).exists() and Path(path).stat().st_size > 0
    if key is None or (exists and not is_encrypted(path)):
        return sqlite3.connect(target, uri=read_only, **options)
    import sqlcipher3  # type: ignore[import-untyped]

    connection = sqlcipher3.connect(target, uri=read_only, **options)
    use_key(connection, f"x'{key}'")
    return connection  # type: ignore[no-any-return]
