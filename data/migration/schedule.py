"""When a scheduled backup is due, and which copies retention keeps: pure rules, no I/O.

Times are seconds since the epoch from the system clock (``time.time()``), so a fake clock
(libfaketime) moves the whole schedule; days, weeks and months are counted in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HOUR = 3600.0


@dataclass(frozen=True)
class BackupPolicy:
    """How often a copy is made, and how much history retention keeps.

    A copy is due when the newest verified one is ``every_hours`` old (or the clock moved
    back past it). Retention keeps the newest copy of each of the last ``daily`` days,
    ``weekly`` ISO weeks and ``monthly`` months that have copies (as restic's
    ``--keep-daily/--keep-weekly/--keep-monthly``: a studio closed for a fortnight keeps
    seven days of copies, not none), and always the newest verified copy and the newest
    copy of every revision.
    """

    every_hours: float = 8.0
    daily: int = 7
    weekly: int = 4
    monthly: int = 12

    @property
    def every_seconds(self) -> float:
        return self.every_hours * HOUR


DEFAULT_POLICY = BackupPolicy()


@dataclass(frozen=True)
class KeptCopy:
    """What retention needs of one verified copy: its name, when (epoch), its revision, and
    the order it was made in (``seq``: newest first even when the clock was moved back)."""

    name: str
    made_at: float
    revision: str | None
    seq: int


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="microseconds")


def epoch_of(text: object) -> float | None:
    """The epoch of an ISO timestamp as the record and manifests write them (None if not)."""
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def is_due(last_at: float | None, now: float, policy: BackupPolicy = DEFAULT_POLICY) -> bool:
    """A copy is due when there is none, the newest is old, or it is dated in the future
    (the clock was moved back since: its age cannot be trusted, one copy now settles it)."""
    if last_at is None:
        return True
    age = now - last_at
    return age < 0 or age >= policy.every_seconds


def _day(epoch: float) -> tuple[int, ...]:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return (moment.year, moment.month, moment.day)


def _week(epoch: float) -> tuple[int, ...]:
    year, week, _ = dt.datetime.fromtimestamp(epoch, dt.UTC).isocalendar()
    return (year, week)


def _month(epoch: float) -> tuple[int, ...]:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return (moment.year, moment.month)


def to_keep(copies: Iterable[KeptCopy], policy: BackupPolicy = DEFAULT_POLICY) -> set[str]:
    """The names of the copies retention keeps; every other one may be deleted."""
    newest_first: Sequence[KeptCopy] = sorted(copies, key=lambda c: c.seq, reverse=True)
    if not newest_first:
        return set()
    keep = {newest_first[0].name}  # the newest verified copy, whatever its date
    for bucket, slots in ((_day, policy.daily), (_week, policy.weekly), (_month, policy.monthly)):
        seen: set[tuple[int, ...]] = set()
        for copy in newest_first:
            period = bucket(copy.made_at)
            if period in seen:
                continue
            if len(seen) == slots:
                break
            seen.add(period)
            keep.add(copy.name)
    # Never the only copy of a revision: the newest copy of each revision stays.
    revisions_kept = {c.revision for c in newest_first if c.name in keep}
    for copy in newest_first:
        if copy.revision not in revisions_kept:
            revisions_kept.add(copy.revision)
            keep.add(copy.name)
    return keep
