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


class DatabaseKeyError(DataLayerError):
    """An encrypted database whose key is missing or does not open it, or a key that cannot
    be stored. The file is left byte-for-byte as it was: the way in is its recovery key
    (``python -m data.db unlock``) or support, never a new database."""


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
    """Another window, tool or deploy kept the database (or its migration lock) busy for
    longer than the wait allowed (``INKLINK_BUSY_TIMEOUT``, ``INKLINK_LOCK_TIMEOUT``)."""


class MigrationFailedError(DataLayerError):
    """A revision raised; the whole upgrade was rolled back."""


class SchemaVerificationError(DataLayerError):
    """After the upgrade the database was not what the code expects; it was rolled back."""


class SchemaDriftError(DataLayerError):
    """The schema was changed outside the migrations: something its revision promises is gone.

    Found at a start, before anything is written; the file is left as it was.
    """


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


class WriteRefusedError(DataLayerError):
    """The database refused a write that breaks one of its rules; nothing of it was saved.

    ``sentence`` states the rule for people ("a payment's session must belong to the same
    client"); ``rule`` is the name of the constraint that refused it, or, when SQLite does
    not say which foreign key failed, the names of the ones that may have (``rules``). The
    driver's own error is chained as ``__cause__``.
    """

    def __init__(self, database: str, rules: tuple[str, ...], sentence: str) -> None:
        self.rules = rules
        self.rule = " or ".join(rules)
        self.sentence = sentence
        super().__init__(
            database,
            # The sentence is for the user; the rule's name is for support.
            f"the change was refused because {sentence} (rule {self.rule})",
            "Nothing of this change was saved; correct it and save again.",
        )


class ReadOnlySessionError(DataLayerError):
    """Something tried to write through a reading session (``ReadSessionLocal``)."""


class UnmovableRowsError(DataLayerError):
    """Saved rows the other database would refuse (over-long text, NUL, non-integer money,
    ...): a copy would stop half-way, so it does not start. ``findings`` lists each row."""

    def __init__(self, database: str, found: str, action: str, findings: tuple[str, ...]) -> None:
        self.findings = findings
        super().__init__(database, found, action)


class TargetNotEmptyError(DataLayerError):
    """The database a copy goes into already holds studio rows, or the file already exists."""


class CopyMismatchError(DataLayerError):
    """Before commit, the copy differed from its source (counts, row hashes or totals); the
    copy was rolled back whole."""


class CopyFailedError(DataLayerError):
    """A copy between databases failed part-way; the copy was rolled back whole and the
    source was not changed. The original error is chained."""


class UnexpectedDatabaseError(DataLayerError):
    """Something no known state explains went wrong; the original error is chained."""


def unexpected(database: str, exc: BaseException) -> DataLayerError:
    """The error for people for an exception no refusal explains (``exc`` is chained by the
    caller): a full disk and a permission problem still get their own advice."""
    import errno

    lines = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code == errno.ENOSPC:
        return NotEnoughDiskSpaceError(
            database, f"the disk is full ({detail})", "Free some disk space, then start again."
        )
    if isinstance(exc, OSError) and code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DatabaseNotWritableError(
            database,
            f"it or a file beside it cannot be written ({detail})",
            "Give this user write access to the database's folder, or set DB_PATH to a "
            "folder it can write, then start again.",
        )
    return UnexpectedDatabaseError(
        database,
        f"opening it failed in a way InkLinkOS does not recognise ({detail})",
        "Start again; if it happens again, report this message and the app's log to support.",
    )


# User-facing advice, kept in one place so the wording stays consistent.
UNCHANGED = "The file was not changed."
ADVICE_RESTORE = (
    "Restore the most recent backup from the 'backups' folder beside it, or contact support."
)
ADVICE_UPDATE_APP = "Install the latest version of InkLinkOS, which knows this database."
ADVICE_KEY = (
    "Enter the database's recovery key (the one shown when it was encrypted) with "
    "`python -m data.db unlock`, or set INKLINK_DB_KEY to its 64-hex-digit key; without "
    "either, contact support. If this database was never encrypted, its first page is "
    "damaged: close every InkLinkOS window and run `python -m data.db restore latest "
    "--set-aside-unreadable`, which puts the last good backup back and keeps this file "
    "aside as it is. Do not delete this file: it holds the studio's data."
)
ADVICE_RETRY = "Close other InkLinkOS windows and tools using it, then start again."
