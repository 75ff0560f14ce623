"""What init_db() did, for the app to show; kept tiny because the at-head path imports it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import threading

Action = Literal["created", "current", "upgraded", "adopted"]


class UpgradeOutcome:
    """The result of create-or-upgrade.

    ``action`` is one of ``created``, ``current``, ``upgraded`` or ``adopted`` (a database
    made before migrations existed, recognised and brought under them). ``backup_path`` is
    the copy made before an upgrade (``None`` when nothing was upgraded, or on a server,
    where backups are the operator's job).

    ``recovery_key`` is set only when this call created an encrypted database whose key it
    made and put in the OS keyring: show it to the user once, to be written down (it opens
    the database when the keyring entry is lost). It is never part of ``repr()`` or
    ``describe()``, which end up in logs.
    """

    __slots__ = (
        "action",
        "backup_path",
        "database",
        "from_revision",
        "note",
        "recovery_key",
        "to_revision",
    )
    _SHOWN = ("action", "backup_path", "database", "from_revision", "note", "to_revision")

    def __init__(
        self,
        action: Action,
        database: str,
        to_revision: str,
        from_revision: str | None = None,
        backup_path: Path | None = None,
        note: str = "",
        recovery_key: str | None = None,
    ) -> None:
        self.action: Action = action
        self.recovery_key = recovery_key
        self.database = database
        self.from_revision = from_revision
        self.to_revision = to_revision
        self.backup_path = backup_path
        self.note = note

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._SHOWN)
        return f"UpgradeOutcome({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UpgradeOutcome):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def describe(self) -> str:
        """One line for a log or a splash screen."""
        if self.action == "created":
            text = f"created a new database at revision {self.to_revision}: {self.database}"
        elif self.action == "current":
            text = f"database is current at revision {self.to_revision}: {self.database}"
        else:
            text = (
                f"{self.action} database from revision {self.from_revision or 'none'} "
                f"to {self.to_revision}: {self.database}"
            )
        if self.backup_path is not None:
            text += f" (backup: {self.backup_path})"
        if self.note:
            text += f" ({self.note})"
        if self.recovery_key is not None:
            text += " (encrypted; its recovery key is to be shown to the user once)"
        return text


class RevisionProgress:
    """One revision applied, for a splash screen: ``number`` of ``total``."""

    __slots__ = ("description", "number", "revision", "total")

    def __init__(self, revision: str, description: str, number: int, total: int) -> None:
        self.revision = revision
        self.description = description
        self.number = number
        self.total = total

    def __repr__(self) -> str:
        return f"RevisionProgress({self.number}/{self.total} {self.revision}: {self.description})"


class CopyProgress(RevisionProgress):
    """A step of a copy between databases (``move-to``, ``export``), in the shape of a
    revision's step, so one splash-screen callback serves init_db() and a copy alike:
    ``number`` rows copied of ``total`` (all tables), ``description`` says which table.
    ``table``, ``table_rows`` and ``table_total`` are the same for the current table
    (``table_number`` of ``tables``), for a bar per table. ``revision`` is the head both
    databases are at.
    """

    __slots__ = ("table", "table_number", "table_rows", "table_total", "tables")

    def __init__(
        self,
        revision: str,
        table: str,
        table_rows: int,
        table_total: int,
        table_number: int,
        tables: int,
        number: int,
        total: int,
    ) -> None:
        description = f"copying {table}: {table_rows:,} of {table_total:,} rows"
        super().__init__(revision, description, number, total)
        self.table = table
        self.table_rows = table_rows
        self.table_total = table_total
        self.table_number = table_number
        self.tables = tables

    def __repr__(self) -> str:
        return f"CopyProgress({self.number}/{self.total}: {self.description})"


class CopyOutcome:
    """What a verified copy did: ``rows`` per table, both databases at ``revision``.

    ``backup_path`` is the source's backup when it was upgraded first; ``seconds`` the time
    the copy transaction took (reading, writing and verifying).
    """

    __slots__ = ("backup_path", "revision", "rows", "seconds", "source", "target")

    def __init__(
        self,
        source: str,
        target: str,
        revision: str,
        rows: dict[str, int],
        seconds: float,
        backup_path: Path | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.revision = revision
        self.rows = rows
        self.seconds = seconds
        self.backup_path = backup_path

    def describe(self) -> str:
        counts = ", ".join(f"{table} {count:,}" for table, count in self.rows.items())
        rate = sum(self.rows.values()) / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"copied {self.source} to {self.target} at revision {self.revision}: {counts} "
            f"rows in {self.seconds:.1f} s ({rate:,.0f} rows/s), verified before commit"
        )
        if self.backup_path is not None:
            text += f" (source backed up to {self.backup_path} before its upgrade)"
        return text


ProgressCallback = Callable[[RevisionProgress], None]


class BackupReport:
    """What one backup call did, for the app to show: returned, never raised.

    ``made`` is the verified copy beside the database that holds it as it is now (a new one,
    or the newest when nothing changed since: ``unchanged``); ``second_place`` its copy in
    the second place; ``failed`` a copy that failed verification, kept aside; ``warnings``
    what to show the user (a second place missing or full, a backup that could not be made).

    ``pending`` is a copy made and not verified yet: ``backup_if_due()`` returns once the
    copy is on disk and verifies it in a background thread; until then it is no backup (not
    listed, counted, rotated nor restored). ``wait()`` gives the final report, the one
    ``on_done`` receives. ``earlier`` names copies an earlier process left unverified that
    this call verified. A plain class, not a dataclass: the not-due check at start builds one.
    """

    __slots__ = (
        "_done",
        "_final",
        "database",
        "due",
        "earlier",
        "failed",
        "made",
        "pending",
        "removed",
        "second_place",
        "unchanged",
        "warnings",
    )

    def __init__(self, database: str, due: bool) -> None:
        self.database = database
        self.due = due
        self.made: str | None = None
        self.pending: str | None = None
        self.second_place: str | None = None
        self.unchanged = False
        self.failed: str | None = None
        self.removed: list[str] = []
        self.earlier: list[str] = []
        self.warnings: list[str] = []
        self._done: threading.Event | None = None
        self._final: BackupReport | None = None

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name[0] != "_"
        )
        return f"BackupReport({fields})"

    @property
    def verifying(self) -> bool:
        """A copy of this call's is still being verified in the background."""
        return self._done is not None and not self._done.is_set()

    def wait(self, timeout: float | None = None) -> BackupReport | None:
        """The final report: this one when nothing was left to the background, else the
        worker's once it has verified, mirrored and rotated (None if ``timeout`` passes)."""
        if self._done is None:
            return self
        if not self._done.wait(timeout):
            return None
        return self._final

    def hand_over(self, done: threading.Event) -> None:
        """Used by ``data.db.backups``: the worker sets ``done`` once ``finish`` is given."""
        self._done = done

    def finish(self, final: BackupReport) -> None:
        self._final = final
        if self._done is not None:
            self._done.set()

    @property
    def ok(self) -> bool:
        """Nothing to show the user: no warning, no copy that failed its check."""
        return not self.warnings and self.failed is None

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def describe(self) -> str:
        """A few lines for a log, a status bar or a scheduler's mail."""
        if not self.due:
            lines = [f"{self.database}: no backup due"]
        elif self.made and self.unchanged:
            lines = [f"{self.database}: unchanged since its backup {self.made}"]
        elif self.made:
            lines = [f"{self.database}: backed up to {self.made} (verified)"]
        elif self.pending and self._done is not None:
            lines = [f"{self.database}: copied to {self.pending}; being verified"]
        else:
            lines = [f"{self.database}: no backup was made"]
        if self.second_place:
            lines.append(f"  second place: {self.second_place} (verified)")
        if self.failed:
            lines.append(f"  a copy failed verification and is kept aside: {self.failed}")
        lines.extend(f"  verified a copy left unverified earlier: {path}" for path in self.earlier)
        lines.extend(f"  removed by retention: {path}" for path in self.removed)
        lines.extend(f"  warning: {message}" for message in self.warnings)
        return "\n".join(lines)


IntegrityStatus = Literal["ok", "damaged", "not checked"]


class IntegrityReport:
    """What the whole-file check found (``check_database()``), for the app to show.

    ``status`` is ``ok``, ``damaged`` (``problems`` says what SQLite found) or
    ``not checked`` (``problems`` says why: a server checks its own pages, or the file could
    not be read). ``last_good_backup`` is the way back from a damaged file: the newest
    backup that passes the same check (``None`` when none does, or none was made).
    """

    __slots__ = ("database", "last_good_backup", "problems", "seconds", "status")

    def __init__(
        self,
        status: IntegrityStatus,
        database: str,
        problems: tuple[str, ...] = (),
        last_good_backup: Path | None = None,
        seconds: float = 0.0,
    ) -> None:
        self.status: IntegrityStatus = status
        self.database = database
        self.problems = problems
        self.last_good_backup = last_good_backup
        self.seconds = seconds

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"IntegrityReport({fields})"

    def describe(self) -> str:
        """One message for a person: what was found, and the way back when it is damaged."""
        if self.status == "ok":
            return f"Database {self.database}: every page checked, no damage found."
        found = "; ".join(self.problems[:3])
        if self.status == "not checked":
            return f"Database {self.database}: not checked ({found})."
        way_back = (
            f"The last good backup is {self.last_good_backup}: close every InkLinkOS window "
            f"and restore it (`python -m data.db restore {self.last_good_backup}`), then "
            "re-enter what was "
            "saved since it was made. Keep the damaged file (the restore keeps it in the "
            "'backups' folder) and contact support, who may recover more from it."
            if self.last_good_backup is not None
            else "No backup passes the check either: contact support before working on, and "
            "keep the file as it is."
        )
        return (
            f"Database {self.database}: the file is damaged (SQLite integrity check: "
            f"{found}). {way_back}"
        )


IntegrityCallback = Callable[[IntegrityReport], None]
BackupCallback = Callable[["BackupReport"], object]
