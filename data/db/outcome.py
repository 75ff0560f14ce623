"""What init_db() did, for the app to show; kept tiny because the at-head path imports it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

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


ProgressCallback = Callable[[RevisionProgress], None]


class BackupReport:
    """What one backup call did, for the app to show: returned, never raised.

    ``made`` is the verified copy beside the database that holds it as it is now (a new one,
    or the newest when nothing changed since: ``unchanged``); ``second_place`` its copy in
    the second place; ``failed`` a copy that failed verification, kept aside; ``warnings``
    what to show the user (a second place missing or full, a backup that could not be made).
    A plain class, not a dataclass: the not-due check at start builds one.
    """

    __slots__ = (
        "database",
        "due",
        "failed",
        "made",
        "removed",
        "second_place",
        "unchanged",
        "warnings",
    )

    def __init__(self, database: str, due: bool) -> None:
        self.database = database
        self.due = due
        self.made: str | None = None
        self.second_place: str | None = None
        self.unchanged = False
        self.failed: str | None = None
        self.removed: list[str] = []
        self.warnings: list[str] = []

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"BackupReport({fields})"

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
        else:
            lines = [f"{self.database}: no backup was made"]
        if self.second_place:
            lines.append(f"  second place: {self.second_place} (verified)")
        if self.failed:
            lines.append(f"  a copy failed verification and is kept aside: {self.failed}")
        lines.extend(f"  removed by retention: {path}" for path in self.removed)
        lines.extend(f"  warning: {message}" for message in self.warnings)
        return "\n".join(lines)
