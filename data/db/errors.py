"""Errors for people: each names the database, what was found, and what to do next."""

from __future__ import annotations


class DataLayerError(Exception):
    """Base of every refusal. ``str()`` is a message a studio's staff can act on.

    ``database`` names the file (or the server, password masked); ``found`` says what was
    there; ``action`` says what the user can do next.
    """

    def __init__(self, database: str, found: str, action: str) -> None:
        self.database = database
        self.found = found
        self.action = action
        super().__init__(f"Database {database}: {found}. {action}")


class NotADatabaseError(DataLayerError):
    """The path is a directory, not a SQLite file, or a truncated one."""


class DatabaseCorruptError(DataLayerError):
    """SQLite's own integrity check failed."""


class DatabaseNotWritableError(DataLayerError):
    """The file or its directory cannot be written by this user."""


class NotEnoughDiskSpaceError(DataLayerError):
    """Too little free space for the backup and the table rebuilds of a pending upgrade."""


class DatabaseNewerThanAppError(DataLayerError):
    """The database is at a revision this code does not know: a newer app upgraded it."""


class LegacySchemaMismatchError(DataLayerError):
    """Tables without Alembic's version table, and they differ from the baseline schema."""


class DatabaseBusyError(DataLayerError):
    """Another process held the migration lock for longer than the wait allowed."""


class MigrationFailedError(DataLayerError):
    """A revision raised; the whole upgrade was rolled back."""


class SchemaVerificationError(DataLayerError):
    """After the upgrade the database was not what the code expects; it was rolled back."""


class BackupError(DataLayerError):
    """A backup could not be made, checked or restored."""


class DatabaseUnreachableError(DataLayerError):
    """The database server refused the connection, or is not running."""


class DatabaseURLError(DataLayerError):
    """``DATABASE_URL`` names something other than a PostgreSQL server."""


class RevisionRecordError(DataLayerError):
    """This code's recorded head disagrees with its revision files: a developer's mistake.

    Raised before anything is opened, so no entry point ever reports "current" for a
    database that is ahead of a stale record, or misses a revision the record lacks.
    """


class RevisionLintError(DataLayerError):
    """A pending revision fails the migration lint; it is not applied."""


# User-facing advice, kept in one place so the wording stays consistent.
UNCHANGED = "The file was not changed."
ADVICE_RESTORE = (
    "Restore the most recent backup from the 'backups' folder beside it, or contact support."
)
ADVICE_UPDATE_APP = "Install the latest version of InkLinkOS, which knows this database."
ADVICE_RETRY = "Close other InkLinkOS windows and tools using it, then start again."
