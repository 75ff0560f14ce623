"""Scheduled backups: made when due, verified, copied to a second place, kept by retention.

A scheduled copy lives beside the pre-upgrade ones, in ``backups/`` next to the database,
and is written down in the same record (``<name>.backups.json``, kind ``scheduled``) with
what its verification found; a manifest beside each copy says the same, so a folder of
copies is self-describing when the record is lost with the disk. The second place
(``INKLINK_BACKUP_DIR``, or the ``second_place`` argument) gets a byte copy of each new
verified copy, checked by its sha256, with its own manifest. Retention (``schedule.to_keep``)
applies to scheduled copies only, in each place on its own; the newest five pre-upgrade
copies are kept by their own rule (``backup.KEEP_BACKUPS``) and never touched here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from data.db import keys
from data.db.errors import UNCHANGED, BackupError
from data.db.file_modes import make_private_folder
from data.db.outcome import BackupReport
from data.migration import raw_sqlite
from data.migration.backup import (
    BACKUP,
    _copy,
    _read_record,
    _recorded,
    _sync_folder,
    _write_record,
    backup_folder,
    free_name,
    restore_backup,
)
from data.migration.file_lock import LOCK_TIMEOUT_SECONDS, migration_lock
from data.migration.schedule import (
    DEFAULT_POLICY,
    BackupPolicy,
    KeptCopy,
    epoch_of,
    is_due,
    iso,
    to_keep,
)
from data.migration.sqlite_file import whole_file_problems
from data.migration.verified_copy import (
    FAILED_SUFFIX,
    MANIFEST_FORMAT,
    Verification,
    VerificationFailedError,
    copy_file,
    manifest_path,
    manifests_in,
    origin,
    origin_tag,
    read_manifest,
    set_aside,
    sha256_of,
    verify_copy,
    write_json,
)

log = logging.getLogger(__name__)

SCHEDULED, FAILED = "scheduled", "failed"
# A copy made and flushed but not verified yet: its record entry has this kind and its file
# this suffix (``<stem>-<time>.db.unverified``), so nothing that lists, rotates, mirrors or
# restores backups (all of which go by kind "scheduled" and by manifests) ever takes it for
# one. Verification renames it to its backup name, or aside as ``.failed``.
PENDING = "unverified"
PENDING_SUFFIX = ".unverified"
SECOND_PLACE_ENV = "INKLINK_BACKUP_DIR"
# A backup at start waits this long for another window's upgrade or backup, then gives up
# with a warning (the next start tries again).
DUE_LOCK_TIMEOUT = 10.0
SETTLE_SECONDS = 2.0
# How long a verification waits for another one of the same database (a second window, or a
# scheduler's `backup` beside the app) to finish before giving up; the copy stays waiting.
VERIFY_LOCK_TIMEOUT = 900.0

Copier = Callable[[Path], None]


def second_place_from_environment() -> Path | None:
    raw = os.environ.get(SECOND_PLACE_ENV, "").strip()
    if not raw:
        return None
    try:
        return Path(raw).expanduser().absolute()
    except RuntimeError:  # "~someone/..." of no user here: a folder not found
        return Path(raw)


# --- what the cheap check reads ----------------------------------------------------------------


def newest_scheduled(record: dict[str, Any]) -> dict[str, Any] | None:
    """The newest verified scheduled entry of a record already read (by the order made)."""
    newest = None
    for entry in record.get("copies", ()):
        if not isinstance(entry, dict) or entry.get("kind") != SCHEDULED:
            continue
        if not entry.get("verified"):
            continue
        if newest is None or int(entry.get("seq", 0)) > int(newest.get("seq", 0)):
            newest = entry
    return newest


def last_confirmed(entry: dict[str, Any] | None) -> float | None:
    """When the database was last known to be as ``entry``'s copy holds it."""
    if entry is None:
        return None
    return epoch_of(entry.get("checked_at")) or epoch_of(entry.get("made_at"))


def mirror_pending(entry: dict[str, Any] | None, second_place: Path | None) -> bool:
    if entry is None or second_place is None:
        return False
    mirrored = entry.get("second_place")
    return not (isinstance(mirrored, dict) and mirrored.get("folder") == str(second_place))


# --- the source, unchanged or not --------------------------------------------------------------


def stat_fingerprint(db_path: Path, now: float) -> dict[str, Any] | None:
    """The database's and its ``-wal``'s identity, size and times, by ``stat`` alone.

    Never opened: closing any descriptor of the live file drops this process's POSIX locks
    on it (the app's own connections' too). Every commit changes the file or its WAL. None
    when a file was written within SETTLE_SECONDS (a second write in the same clock tick
    would not show).
    """
    fingerprint: dict[str, Any] = {}
    for suffix in ("", "-wal"):
        try:
            status = os.stat(f"{db_path}{suffix}")
        except FileNotFoundError:
            continue
        except OSError:
            return None
        if suffix and status.st_size == 0:
            # An empty -wal holds no frame: any connection opening the file makes one and
            # the last to close removes it, so a reader (another window's, the copy's own)
            # would make an unchanged file look changed.
            continue
        if abs(now - status.st_mtime) < SETTLE_SECONDS:
            return None
        fingerprint[suffix or "db"] = [
            status.st_dev,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        ]
    return fingerprint or None


# --- making one --------------------------------------------------------------------------------


def _stamp(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"


def sqlite_copier(db_path: Path, key: keys.DatabaseKey | None) -> Copier:
    return lambda target: _copy(db_path, target, key)


def make_backup(
    db_path: Path,
    *,
    copier: Copier,
    key: keys.DatabaseKey | None,
    now: float | None = None,
    policy: BackupPolicy = DEFAULT_POLICY,
    second_place: Path | None = None,
    only_if_due: bool = False,
    lock_timeout: float = DUE_LOCK_TIMEOUT,
) -> BackupReport:
    """The call's part of a scheduled backup: decide, and make the copy durable, unverified.

    The copy is written through ``copier`` under a ``.unverified`` name, flushed, and
    recorded as waiting (``report.pending``); ``finish_backups`` verifies it, and only then
    is it a backup. When the database is unchanged since the newest verified copy, or since
    a copy still waiting, no copy is made. Raises DataLayerError when no copy can be made
    here (the lock is busy, the data folder is full). ``db_path`` is the database file, or
    for a server the name its copies and record go by.
    """
    report = BackupReport(str(db_path), due=True)
    folder = backup_folder(db_path)
    with migration_lock(db_path, lock_timeout):
        now = time.time() if now is None else now
        # Re-read under the lock: another window may have just made one.
        record = _read_record(db_path)
        newest = newest_scheduled(record)
        waiting = pending_entries(record)
        if only_if_due and not (
            is_due(last_confirmed(newest), now, policy) or mirror_pending(newest, second_place)
        ):
            report.due = False
            if waiting:  # left by a process that exited before verifying it
                report.pending = str(folder / str(waiting[-1]["file"]))
            return report
        copy = _newest_here(db_path, newest)
        fingerprint = stat_fingerprint(db_path, now)
        same = [e for e in waiting if fingerprint is not None and e.get("source") == fingerprint]
        if (
            copy is not None
            and fingerprint is not None
            and newest
            and newest.get("source") == fingerprint
        ):
            _confirm(db_path, copy.name, now)
            report.made, report.unchanged = str(copy), True
        elif same:  # a copy of the file as it is now is already being verified
            report.pending = str(folder / str(same[-1]["file"]))
        else:
            report.pending = str(_make_one(db_path, folder, copier, now, fingerprint))
    log.info("%s", report.describe())
    return report


def pending_entries(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's copies made and not verified yet, oldest first."""
    waiting = [
        e
        for e in record.get("copies", ())
        if isinstance(e, dict) and e.get("kind") == PENDING and isinstance(e.get("file"), str)
    ]
    return sorted(waiting, key=lambda e: int(e.get("seq", 0)))


def unverified_copies(db_path: Path) -> list[Path]:
    """The copies of ``db_path`` made and not verified yet (never listed as backups)."""
    folder = backup_folder(db_path)
    return [folder / str(e["file"]) for e in pending_entries(_read_record(db_path))]


def _newest_here(db_path: Path, newest: dict[str, Any] | None) -> Path | None:
    if newest is None:
        return None
    copy = backup_folder(db_path) / str(newest.get("file"))
    try:
        return copy if copy.stat().st_size == newest.get("size") else None
    except OSError:
        return None


def _confirm(db_path: Path, name: str, now: float) -> None:
    record = _read_record(db_path, to_write=True)
    for entry in record["copies"]:
        if entry.get("kind") == SCHEDULED and entry.get("file") == name:
            entry["checked_at"] = iso(now)
    _write_record(db_path, record)


def _make_one(
    db_path: Path,
    folder: Path,
    copier: Copier,
    now: float,
    fingerprint: dict[str, Any] | None,
) -> Path:
    """Write a copy under its ``.unverified`` name, durably; recorded as waiting first, so
    a process that dies at any point leaves either nothing or a copy the record names."""
    pending = folder / f"{db_path.stem}-{_stamp(now)}.db{PENDING_SUFFIX}"
    try:
        make_private_folder(folder)
        record = _read_record(db_path, to_write=True)
        pending = _free_name(folder, pending, record)
        seq = record["next_seq"]
        record["next_seq"] += 1
        entry = {"file": pending.name, "kind": PENDING, "seq": seq, "made_at": iso(now)}
        record["copies"].append({**entry, "source": fingerprint})
        _write_record(db_path, record)
        copier(pending)  # flushed, renamed from .partial, its folder flushed
    except raw_sqlite.IO_ERRORS as exc:
        _forget(db_path, pending.name)
        raise BackupError(
            str(db_path),
            f"the scheduled backup could not be written to {pending} ({exc})",
            "Free some disk space or fix the folder's permissions; the next start tries "
            "again. " + UNCHANGED,
        ) from exc
    return pending


def _free_name(folder: Path, pending: Path, record: dict[str, Any]) -> Path:
    """``pending``, or a numbered name when its backup (or failed) name is in use or
    recorded: renamed to its backup name, it would replace a copy the record names."""
    taken = {str(e.get("file")) for e in record["copies"] if isinstance(e, dict)}

    def in_use(candidate: Path) -> bool:
        made = candidate.name.removesuffix(PENDING_SUFFIX)
        names = (candidate.name, made, made + FAILED_SUFFIX)
        return any(name in taken or (folder / name).exists() for name in names)

    return free_name(pending, f".db{PENDING_SUFFIX}", in_use)


def _forget(db_path: Path, name: str) -> None:
    with _suppressed():
        record = _read_record(db_path, to_write=True)
        record["copies"] = [
            e for e in record["copies"] if not (e.get("kind") == PENDING and e.get("file") == name)
        ]
        _write_record(db_path, record)


@contextlib.contextmanager
def _suppressed() -> Iterator[None]:
    try:
        yield
    except OSError as exc:  # a record left naming a missing copy is dropped by the next call
        log.warning("the backup record could not be updated: %s", exc)


# --- verifying, in the background --------------------------------------------------------------


@contextlib.contextmanager
def verification_lock(db_path: Path, timeout: float = VERIFY_LOCK_TIMEOUT) -> Iterator[None]:
    """One verifier at a time per database (the app's worker, a scheduler's command), held
    while copies are checked. Not ``migration_lock``: a whole-file check of a copy (seconds
    for a large studio) must not hold up another window's start, a restore or the next
    copy; the record is updated under ``migration_lock``, briefly, after each check."""
    from filelock import FileLock, Timeout

    from data.db.errors import DatabaseBusyError
    from data.db.file_modes import OWNER_ONLY_FILE

    lock = FileLock(f"{db_path}.verify.lock", timeout=timeout, mode=OWNER_ONLY_FILE)
    try:
        lock.acquire()
    except Timeout as exc:
        raise DatabaseBusyError(
            str(db_path),
            f"another process has been verifying its backups for more than {timeout:.0f} s",
            "The copy stays unverified (never counted) and the next backup verifies it.",
        ) from exc
    try:
        yield
    finally:
        lock.release()


def finish_backups(
    db_path: Path,
    started: BackupReport,
    *,
    key: keys.DatabaseKey | None,
    policy: BackupPolicy = DEFAULT_POLICY,
    second_place: Path | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> BackupReport:
    """The worker's part: verify every copy waiting (``started``'s and any a process that
    exited left), then mirror the newest verified copy and apply retention; returns the
    final report. A copy becomes a backup only here: manifest written, renamed to its
    backup name, recorded as verified; one that fails is set aside and reported."""
    final = BackupReport(started.database, started.due)
    final.made, final.unchanged = started.made, started.unchanged
    folder = backup_folder(db_path)
    # A call that was not due has no copy of its own: it came to verify what was left.
    own = started.pending if started.due else None
    with verification_lock(db_path):
        for entry in pending_entries(_read_record(db_path)):
            made = _verify_one(db_path, folder, entry, key, final, lock_timeout)
            if made is not None and str(folder / str(entry["file"])) != own:
                final.earlier.append(str(made))
        if own is not None:
            _outcome_of(db_path, Path(own), final)
        try:
            with migration_lock(db_path, lock_timeout):
                copy = _newest_here(db_path, newest_scheduled(_read_record(db_path)))
                if copy is not None and second_place is not None:
                    _mirror(db_path, copy, second_place, final)
                removed = _rotate_here(db_path, policy)
                if second_place is not None:
                    removed += _rotate_there(db_path, second_place, policy, final)
                final.removed = [str(p) for p in removed]
        except Exception as exc:
            # What is verified and recorded stays a backup: the rest is the next call's.
            final.warn(
                "the copy to the second place and the removal of old backups (what of them "
                f"was not done) wait for the next backup ({exc})"
            )
            log.warning("backups of %s: mirroring and retention put off: %s", db_path, exc)
    log.info("%s", final.describe())
    return final


def _verify_one(
    db_path: Path,
    folder: Path,
    entry: dict[str, Any],
    key: keys.DatabaseKey | None,
    report: BackupReport,
    lock_timeout: float,
) -> Path | None:
    """Check one waiting copy, holding no lock of the database's (the copy is its own
    file); record the outcome under ``migration_lock``. Returns the backup it became."""
    pending = folder / str(entry["file"])
    target = pending.with_name(pending.name.removesuffix(PENDING_SUFFIX))
    made_at = epoch_of(entry.get("made_at")) or time.time()
    if not pending.is_file():
        there = read_manifest(target)
        with migration_lock(db_path, lock_timeout):
            if there is None or not there.get("verified"):  # it died before the copy was whole
                _forget(db_path, pending.name)
                return None
            # Its process ended between the rename and the record: the manifest says it all.
            _update_entry(
                db_path,
                entry,
                kind=SCHEDULED,
                file=target.name,
                size=there["size"],
                checked_at=there.get("made_at"),
                revision=there.get("revision"),
                rows=there.get("rows"),
                encrypted=there.get("encrypted"),
                verified=there["verified"],
            )
        return target
    try:
        found = verify_copy(pending, key)
    except VerificationFailedError as exc:
        aside = target.with_name(target.name + FAILED_SUFFIX)
        with migration_lock(db_path, lock_timeout):
            os.replace(pending, aside)
            _update_entry(db_path, entry, kind=FAILED, file=aside.name, reason=str(exc))
        report.failed = str(aside)
        report.warn(
            f"the backup {target.name} failed its check ({exc}); it is kept aside as {aside}, "
            "and the previous backups are untouched"
        )
        log.error("backup %s of %s failed verification: %s", pending, db_path, exc)
        return None
    manifest = _manifest(db_path, target, SCHEDULED, made_at, found, size=pending.stat().st_size)
    with migration_lock(db_path, lock_timeout):
        # The manifest first: a crash before the rename leaves a manifest of no file (never
        # trusted) and the copy still waiting, verified again next time.
        write_json(manifest_path(target), manifest)
        os.replace(pending, target)
        _sync_folder(folder)
        _update_entry(
            db_path,
            entry,
            kind=SCHEDULED,
            file=target.name,
            size=manifest["size"],
            checked_at=manifest["made_at"],
            revision=found.revision,
            rows=found.rows,
            encrypted=found.encrypted,
            verified=manifest["verified"],
        )
    return target


def _update_entry(db_path: Path, waiting: dict[str, Any], **fields: Any) -> None:
    """Turn the record's waiting entry into what its verification found (same ``seq``: its
    place in the order copies were made); re-added if the record lost it meanwhile."""
    record = _read_record(db_path, to_write=True)
    for entry in record["copies"]:
        if entry.get("kind") == PENDING and entry.get("file") == waiting["file"]:
            entry.update(fields)
            break
    else:
        record["copies"].append({**waiting, **fields, "seq": record["next_seq"]})
        record["next_seq"] += 1
    _write_record(db_path, record)


def _outcome_of(db_path: Path, pending: Path, report: BackupReport) -> None:
    """What became of ``pending`` (verified by this worker or by another process's)."""
    name = pending.name.removesuffix(PENDING_SUFFIX)
    for entry in _read_record(db_path)["copies"]:
        if entry.get("kind") == SCHEDULED and entry.get("file") == name:
            report.made = str(pending.with_name(name))
            return
        if entry.get("kind") == FAILED and entry.get("file") == name + FAILED_SUFFIX:
            report.failed = report.failed or str(pending.with_name(name + FAILED_SUFFIX))
            if not report.warnings:
                report.warn(f"the backup just made failed its check: {entry.get('reason')}")
            return
    report.pending = str(pending)
    report.warn(
        f"the backup {pending} was not verified (its process ended first?); it is not "
        "counted, and the next backup verifies it"
    )


def _manifest(
    db_path: Path,
    copy: Path,
    kind: str,
    made_at: float,
    found: Verification,
    size: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "database": db_path.name,
        "origin": origin(db_path),
        "file": copy.name,
        "kind": kind,
        "made_at": iso(made_at),
        "revision": found.revision,
        "size": copy.stat().st_size if size is None else size,
        "rows": found.rows,
        "encrypted": found.encrypted,
        "verified": {"at": iso(time.time()), "check": found.check},
        **extra,
    }


def _mirror(db_path: Path, copy: Path, second_place: Path, report: BackupReport) -> None:
    """Copy a verified copy into the second place; what goes wrong there is a warning."""
    here = read_manifest(copy)
    if here is None:
        report.warn(f"{copy} has no manifest: not copied to {second_place}")
        return
    # Named for its database too: desks sharing a second place may make copies of files of
    # the same name in the same second.
    target = second_place / f"{copy.stem}-{origin_tag(db_path)}{copy.suffix}"
    try:
        if not second_place.is_dir():
            raise FileNotFoundError(errno.ENOENT, "missing (is the drive connected?)")
        # A copy of this database's killed midway (never another database's: its stem).
        for stale in second_place.glob(f"{glob_escape(db_path.stem)}-*.partial"):
            stale.unlink(missing_ok=True)
        there = read_manifest(target)
        digest = there.get("sha256") if there and there.get("origin") == here["origin"] else None
        if digest is None:
            digest = copy_file(copy, target)
            if sha256_of(target) != digest:
                aside = set_aside(target)
                raise OSError(
                    errno.EIO, f"the copy written there differs from {copy}; kept aside as {aside}"
                )
            write_json(
                manifest_path(target),
                {
                    **here,
                    "file": target.name,
                    "size": target.stat().st_size,
                    "sha256": digest,
                    "verified": {
                        "at": iso(time.time()),
                        "check": f"sha256 equal to the verified copy {copy}",
                    },
                },
            )
            _sync_folder(second_place)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            reason = "the disk is full"
        report.warn(
            f"the backup could not be copied to the second place {second_place}: {reason}. "
            f"It is kept in {copy.parent}; the next backup tries again."
        )
        log.warning("second place %s: %s", second_place, exc)
        return
    record = _read_record(db_path, to_write=True)
    for entry in record["copies"]:
        if entry.get("kind") == SCHEDULED and entry.get("file") == copy.name:
            entry["second_place"] = {
                "folder": str(second_place),
                "file": target.name,
                "sha256": digest,
            }
    _write_record(db_path, record)
    report.second_place = str(target)


def _delete(copy: Path) -> None:
    copy.unlink(missing_ok=True)
    manifest_path(copy).unlink(missing_ok=True)
    log.info("removed old backup %s", copy)


def _rotate_here(db_path: Path, policy: BackupPolicy) -> list[Path]:
    """Delete scheduled copies retention does not keep; only what the record names."""
    folder = backup_folder(db_path)
    entries = [e for e in _recorded(db_path, SCHEDULED) if e.get("verified")]
    kept = [
        KeptCopy(
            str(e["file"]),
            epoch_of(e.get("made_at")) or 0.0,
            e.get("revision"),
            int(e.get("seq", 0)),
        )
        for e in entries
    ]
    keep = to_keep(kept, policy)
    doomed = {str(e["file"]) for e in entries} - keep
    if not doomed:
        return []
    for name in sorted(doomed):
        _delete(folder / name)
    record = _read_record(db_path, to_write=True)
    record["copies"] = [
        e for e in record["copies"] if not (e.get("kind") == SCHEDULED and e.get("file") in doomed)
    ]
    _write_record(db_path, record)
    return [folder / name for name in sorted(doomed)]


def _mirrored_order(db_path: Path) -> dict[Path, int]:
    """Each copy in a second place that the record names, with the order (``seq``) its
    twin beside the database was made in: the clock may have been moved back since."""
    return {
        Path(str(e["second_place"].get("folder"))) / str(e["second_place"].get("file")): int(
            e.get("seq", 0)
        )
        for e in _read_record(db_path)["copies"]
        if e.get("kind") == SCHEDULED and isinstance(e.get("second_place"), dict)
    }


def _rotate_there(
    db_path: Path, second_place: Path, policy: BackupPolicy, report: BackupReport
) -> list[Path]:
    """The same retention in the second place, over this database's own copies there."""
    mine = origin(db_path)
    ours = [
        (copy, manifest)
        for copy, manifest in manifests_in(second_place)
        if manifest.get("origin") == mine and manifest.get("kind") == SCHEDULED
    ]
    # In the order they were made: by the record's sequence for the copies it names there
    # (the clock may have been moved back since: the copy made last is still the newest),
    # after them by date the older ones it no longer names.
    made_order = _mirrored_order(db_path)
    by_order = sorted(
        ours,
        key=lambda item: (
            item[0] in made_order,
            made_order.get(item[0], 0),
            epoch_of(item[1].get("made_at")) or 0.0,
        ),
    )
    kept = [
        KeptCopy(copy.name, epoch_of(m.get("made_at")) or 0.0, m.get("revision"), seq)
        for seq, (copy, m) in enumerate(by_order)
    ]
    keep = to_keep(kept, policy)
    removed = []
    for copy, _ in ours:
        if copy.name not in keep:
            try:
                _delete(copy)
            except OSError as exc:
                report.warn(f"an old backup in {second_place} could not be removed ({exc})")
                continue
            removed.append(copy)
    return removed


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedBackup:
    """One backup either place holds, as its record or manifest describes it."""

    path: Path
    place: str  # "here" (beside the database) or "second place"
    kind: str  # "scheduled" or "before upgrade"
    made_at: str
    revision: str | None
    size: int
    rows: dict[str, int] | None
    encrypted: bool | None
    sha256: str | None = None
    of: str | None = None  # another database's copy (a shared second place): "host:path"
    seq: int | None = None  # the order it was made in, for a copy the record names

    @property
    def epoch(self) -> float:
        return epoch_of(self.made_at) or 0.0


def list_everywhere(db_path: Path, second_place: Path | None) -> list[ListedBackup]:
    """Every backup of ``db_path`` beside it, and every verified copy in the second place
    (of any database: after a lost disk it may be all there is), newest first."""
    folder = backup_folder(db_path)
    listed = []
    for entry in _recorded(db_path, SCHEDULED):
        if entry.get("verified"):
            listed.append(_from_entry(folder, entry, "scheduled"))
    for entry in _recorded(db_path, BACKUP):
        listed.append(_from_entry(folder, entry, "before upgrade"))
    if second_place is not None:
        # A copy there takes the order of the record's entry that mirrored it (kept after
        # the copy beside the database is lost): "latest" goes by the order copies were made.
        made_order = _mirrored_order(db_path)
        for copy, manifest in manifests_in(second_place):
            if any(b.path == copy for b in listed):
                continue
            there = _from_manifest(copy, "second place", manifest, db_path)
            listed.append(dataclasses.replace(there, seq=made_order.get(copy)))
    return sorted(listed, key=lambda b: b.epoch, reverse=True)


def _from_manifest(
    copy: Path, place: str, manifest: dict[str, Any], db_path: Path | None = None
) -> ListedBackup:
    found = manifest.get("origin")
    of = None
    if db_path is not None and isinstance(found, dict) and found != origin(db_path):
        of = f"{found.get('host')}:{found.get('path')}"
    return ListedBackup(
        copy,
        place,
        "scheduled" if manifest.get("kind") == SCHEDULED else str(manifest.get("kind")),
        str(manifest.get("made_at")),
        manifest.get("revision"),
        int(manifest.get("size", 0)),
        manifest.get("rows"),
        manifest.get("encrypted"),
        manifest.get("sha256"),
        of,
    )


def _from_entry(folder: Path, entry: dict[str, Any], kind: str) -> ListedBackup:
    return ListedBackup(
        folder / str(entry["file"]),
        "here",
        kind,
        str(entry.get("made_at")),
        entry.get("revision"),
        int(entry.get("size", 0)),
        entry.get("rows"),
        entry.get("encrypted"),
        seq=int(entry.get("seq", 0)),
    )


def choose(db_path: Path, second_place: Path | None, choice: str) -> ListedBackup:
    """The backup ``choice`` names: a path or a file name as listed (or any copy whose
    manifest beside it vouches for it), ``latest``, or the start of a date and time
    (``2026-12-01``, ``2026-12-01T18``: the newest made then)."""
    display = str(db_path)
    given = Path(choice).expanduser()
    if given.is_absolute() or os.sep in choice:
        manifest = read_manifest(given.absolute())
        if manifest is not None and manifest.get("verified"):
            return _from_manifest(given.absolute(), "given", manifest)
    listed = list_everywhere(db_path, second_place)
    for backup in listed:
        if backup.path == given.absolute() or backup.path.name == choice:
            return backup
    # By time: this database's own copies; on a new computer (none are), any, if they are
    # all of one database: in a shared second place "latest" could be another desk's.
    own = [b for b in listed if b.of is None] or listed
    if len({b.of for b in own}) > 1:
        raise BackupError(
            display,
            f"the second place {second_place} holds copies of several databases ("
            + ", ".join(sorted({str(b.of) for b in own}))
            + ")",
            "Give the path of the copy to restore, from `python -m data.db list-backups`. "
            + UNCHANGED,
        )
    if choice == "latest" and own:
        # The copy made last, which the record knows even after the clock was moved back
        # (a copy dated in the future is older than it says); by date only without a record.
        named = [b for b in own if b.seq is not None]
        if not named:
            return own[0]
        made_last = max(named, key=lambda b: b.seq or 0)
        # A copy the record does not know dated later (a data folder put back from an old
        # image, its record older than the second place): by date, as without a record.
        return own[0] if own[0].seq is None and own[0].epoch > made_last.epoch else made_last
    for backup in own:  # newest first: the newest made at that date and time
        if backup.made_at.startswith(choice):
            return backup
    where = (
        f"beside it or in {second_place}"
        if second_place
        else f"beside it ({SECOND_PLACE_ENV} is not set: set it to the folder of the copies)"
    )
    raise BackupError(
        display,
        f"{choice} is not one of its listed, verified backups ({len(listed)} listed {where})",
        "Run `python -m data.db list-backups` and give a path, a name or a date from it. "
        + UNCHANGED,
    )


# --- the way back after damage -----------------------------------------------------------------


def last_good_copy(
    db_path: Path, key: keys.DatabaseKey | None = None, second_place: Path | None = None
) -> Path | None:
    """The newest copy of ``db_path`` whose every page passes SQLite's check: of any kind
    (before an upgrade, scheduled and verified) and in either place, this database's own.

    The way back from damage found after start: the newest copy may have been made from the
    damaged file itself (a copy is the file's bytes; an upgrade checks only what it touched),
    so each is checked again, newest first, until one passes; a copy here comes before its
    twin in the second place. The copies of an encrypted database have its key and salt:
    ``key`` opens them. A copy not verified yet is never offered.
    """
    folder = backup_folder(db_path)
    found: list[tuple[float, int, Path]] = []
    for entry in _recorded(db_path, BACKUP):
        found.append((epoch_of(entry.get("made_at")) or 0.0, 1, folder / str(entry["file"])))
    for entry in _recorded(db_path, SCHEDULED):
        if entry.get("verified"):
            found.append((epoch_of(entry.get("made_at")) or 0.0, 1, folder / str(entry["file"])))
    if second_place is not None:
        mine = origin(db_path)
        for copy, manifest in manifests_in(second_place):
            if manifest.get("origin") == mine and manifest.get("kind") == SCHEDULED:
                found.append((epoch_of(manifest.get("made_at")) or 0.0, 0, copy))
    for _, _, candidate in sorted(found, key=lambda item: item[:2], reverse=True):
        try:
            if not whole_file_problems(candidate, read_only=True, key=key):
                return candidate
        except raw_sqlite.IO_ERRORS as exc:
            log.warning("backup %s could not be checked: %s", candidate, exc)
    return None


# --- restoring ---------------------------------------------------------------------------------


def check_against_manifest(backup: ListedBackup, display: str) -> None:
    """The file is still what its record or manifest says was verified."""
    try:
        size = backup.path.stat().st_size
    except OSError as exc:
        raise BackupError(
            display, f"the backup {backup.path} cannot be read ({exc})", UNCHANGED
        ) from exc
    if size != backup.size or (
        backup.sha256 is not None and sha256_of(backup.path) != backup.sha256
    ):
        raise BackupError(
            display,
            f"the backup {backup.path} is not the file that was verified (its size or "
            "checksum differs from its manifest)",
            "Choose another backup from `python -m data.db list-backups`. " + UNCHANGED,
        )


def restore_verified(
    backup: ListedBackup,
    db_path: Path,
    *,
    lock_timeout: float | None = None,
    set_aside_unreadable: bool = False,
) -> Path:
    """Restore a listed backup under ``restore_backup``'s guarantees, even when the
    database file (or its folder) is gone; returns where the replaced file was kept."""
    display = str(db_path)
    check_against_manifest(backup, display)
    if backup.encrypted and not keys.looks_encrypted(backup.path):
        raise BackupError(
            display, f"the backup {backup.path} should be encrypted and is not", UNCHANGED
        )
    try:
        make_private_folder(db_path.parent)
    except OSError as exc:
        raise BackupError(
            display, f"its folder cannot be made ({exc})", "Check the path and permissions."
        ) from exc
    return restore_backup(
        backup.path, db_path, lock_timeout=lock_timeout, set_aside_unreadable=set_aside_unreadable
    )
