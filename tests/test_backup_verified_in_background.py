"""A due backup returns once its copy is on disk; the copy is verified in a background thread
and counted only then, also when the process that made it exits first (issue 16, item 7).

A verification is held up, where a test needs it to be, by a real child process holding the
database's verification lock: the app's worker waits for it as for a second window's.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import pytest

from data.db.backups import backup_if_due, list_backups_everywhere, wait_for_backups
from data.db.errors import BackupError
from data.db.outcome import BackupReport
from data.migration import scheduled_backup
from data.migration.file_lock import migration_lock
from data.migration.schedule import BackupPolicy
from data.migration.scheduled_backup import PENDING, PENDING_SUFFIX
from data.migration.verified_copy import manifest_path
from tests.conftest import PROJECT_ROOT, sha256, subprocess_env
from tests.test_safety_upgrade import make_studio
from tests.test_scheduled_backups import DAY, T0, add_client, data_db, record, scheduled

HOLD_LOCK = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def verification_held(db: Path) -> AbstractContextManager[None]:
    """Another process (a second window, a scheduler's command) is verifying ``db``'s copies."""
    return lock_held(Path(f"{db}.verify.lock"))


@contextmanager
def lock_held(lock_file: Path) -> Iterator[None]:
    """Another process holds the file lock ``lock_file`` until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()


def run_child(code: str, db: Path, now: float) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (an app window), given the database and the clock."""
    child = subprocess.run(
        [sys.executable, "-c", code, str(db), repr(now)],
        env=subprocess_env(db),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    return child


def waiting(db: Path) -> list[dict[str, object]]:
    if not (db.parent / f"{db.name}.backups.json").exists():
        return []
    return [e for e in record(db)["copies"] if e["kind"] == PENDING]  # type: ignore[attr-defined]


def test_a_due_backup_returns_before_its_copy_is_verified_and_counts_it_only_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were the check on the call's path, the call would wait for the held lock: 5 s, then fail.
    monkeypatch.setattr(scheduled_backup, "VERIFY_LOCK_TIMEOUT", 5.0)
    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"
    usb.mkdir()
    finals: list[BackupReport] = []
    with verification_held(db):
        report = backup_if_due(db, second_place=usb, now=T0, on_done=finals.append)
        assert report.due and report.pending and not report.made, report.describe()
        assert report.verifying and not report.warnings and finals == []
        pending = Path(report.pending)
        assert pending.is_file() and pending.name.endswith(".db" + PENDING_SUFFIX)
        assert not manifest_path(pending).exists()
        # Not a backup yet: not listed, not recorded as one, not in the second place.
        assert list_backups_everywhere(db, second_place=usb) == []
        assert scheduled(db) == [] and len(waiting(db)) == 1
        assert list(usb.iterdir()) == []
        with pytest.raises(BackupError):
            scheduled_backup.choose(db, usb, "latest")
        # Called again meanwhile (the window closed at once), nothing changed: no second
        # copy, the same one is awaited.
        again = backup_if_due(db, second_place=usb, now=T0 + 60)
        assert again.due and again.pending == report.pending, again.describe()
        assert len(list(pending.parent.glob("*.db*"))) == 1
        assert report.wait(timeout=2.0) is None, "verified while another verifier held the lock"
        assert pending.is_file() and scheduled(db) == []
    final = report.wait(timeout=120)
    assert final is not None and final is not report
    assert final.made == str(pending.with_name(pending.name.removesuffix(PENDING_SUFFIX)))
    assert final.second_place and final.ok, final.describe()
    assert again.wait(timeout=120) is not None and wait_for_backups(timeout=120)
    assert finals == [final], "on_done is called exactly once, with the final report"
    assert not pending.exists() and waiting(db) == []
    (entry,) = scheduled(db)
    assert entry["verified"] and entry["rows"] and entry["file"] == Path(final.made).name
    assert [b.path for b in list_backups_everywhere(db)] == [Path(final.made)]
    assert json.loads(manifest_path(Path(final.made)).read_text())["verified"]["check"]


EXIT_AFTER_THE_CALL = """
import os, sys
from data.db.backups import backup_if_due
report = backup_if_due(sys.argv[1], now=float(sys.argv[2]), force=True)
print(report.pending, flush=True)
os._exit(0)  # the window closed: the daemon thread dies with the process
"""


def test_a_copy_left_unverified_by_a_process_that_exited_is_not_counted_until_verified(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    first = backup_if_due(db, now=T0, wait=True)
    assert first.made and first.ok
    add_client(db, 1)
    with verification_held(db):  # so the child's worker is surely not done when it exits
        child = run_child(EXIT_AFTER_THE_CALL, db, T0 + 3600)
    left = Path(child.stdout.strip())
    assert left.is_file() and left.name.endswith(PENDING_SUFFIX)
    # Never counted, listed nor restored while it waits; the verified copy is the latest.
    assert [b.path for b in list_backups_everywhere(db)] == [Path(str(first.made))]
    assert [e["file"] for e in scheduled(db)] == [Path(str(first.made)).name]
    listed = data_db("list-backups", db=db)
    assert listed.returncode == 0 and f"not verified yet (not a backup until it is): {left}" in (
        listed.stdout
    )
    restored = data_db("restore", left.name, db=db)
    assert restored.returncode == 2 and "not one of its listed" in restored.stderr
    # The next call, though nothing is due by the clock, verifies it and counts it.
    later = backup_if_due(db, now=T0 + 2 * 3600, wait=True)
    assert not later.due and later.ok, later.describe()
    made = left.with_name(left.name.removesuffix(PENDING_SUFFIX))
    assert later.earlier == [str(made)] and made.is_file() and not left.exists()
    assert waiting(db) == []
    newest = list_backups_everywhere(db)[0]
    assert newest.path == made and newest.rows and newest.rows["clients"] == 21


def test_the_verification_holds_no_lock_of_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the copy is checked, another window can upgrade or back up (the migration
    lock) and save (SQLite's write lock): the copy is a file of its own."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    real = scheduled_backup.verify_copy
    seen: list[str] = []

    def verify_copy_while_trying_the_locks(copy: Path, key: object) -> object:
        with migration_lock(db, timeout=0):
            seen.append("migration lock free")
        connection = sqlite3.connect(db, timeout=0)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("UPDATE clients SET first_name = first_name WHERE 0")
            connection.commit()
            seen.append("write lock free")
        finally:
            connection.close()
        return real(copy, key)  # type: ignore[arg-type]

    monkeypatch.setattr(scheduled_backup, "verify_copy", verify_copy_while_trying_the_locks)
    report = backup_if_due(db, now=T0)
    final = report.wait(timeout=120)
    assert final is not None and final.made and final.ok, final and final.describe()
    assert seen == ["migration lock free", "write lock free"]


TWO_AT_ONCE = """
import sys
from data.db.backups import backup_if_due
report = backup_if_due(sys.argv[1], now=float(sys.argv[2]), force=True, wait=True)
print(report.made or "", report.failed or "", "|".join(report.warnings), sep="\\n")
"""


def start_both(db: Path, now: float) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", TWO_AT_ONCE, str(db), repr(now + n)],
            env=subprocess_env(db),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]


def test_two_processes_backing_up_at_once_make_and_verify_one_copy(tmp_path: Path) -> None:
    """Two windows (or a window and the scheduler) back up the same file at once: the
    second finds the first's copy waiting and awaits its verification; the two workers
    never verify one copy together (one would find it renamed under it)."""
    db = make_studio(tmp_path / "studio" / "inklink.db", clients=400)
    connection = sqlite3.connect(db)
    with connection:  # 32 MB of photos, so a check takes a while
        connection.execute("CREATE TABLE padding (b BLOB)")
        connection.executemany("INSERT INTO padding VALUES (randomblob(1048576))", [()] * 32)
    connection.close()
    for day in range(2):
        add_client(db, day)
        with verification_held(db):  # both calls return their copy before either is checked
            children = start_both(db, T0 + day * DAY)
            while not waiting(db) and all(child.poll() is None for child in children):
                time.sleep(0.05)
            time.sleep(2.0)  # the second child's call, past the migration lock
        made = []
        for child in children:
            out, err = child.communicate(timeout=300)
            assert child.returncode == 0, err
            made_line, failed_line, warnings = out.split("\n")[:3]
            assert made_line and not failed_line and not warnings, out
            made.append(made_line)
        assert len(set(made)) == 1, f"two copies of one unchanged file: {made}"
    assert waiting(db) == []
    assert [e["rows"]["clients"] for e in scheduled(db)] == [401, 402]  # type: ignore[index]
    assert not list((db.parent / "backups").glob("*" + PENDING_SUFFIX))


DIE_BEFORE_THE_RECORD = """
import os, sys
from data.migration import scheduled_backup
# The process ends after the verified copy's manifest and rename, before its record entry.
scheduled_backup._update_entry = lambda *args, **fields: os._exit(0)
from data.db.backups import backup_if_due
backup_if_due(sys.argv[1], now=float(sys.argv[2]), wait=True)
os._exit(3)
"""


def test_a_copy_verified_by_a_process_that_ended_before_recording_it_is_recorded_next(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    run_child(DIE_BEFORE_THE_RECORD, db, T0)
    (entry,) = waiting(db)
    made = db.parent / "backups" / str(entry["file"]).removesuffix(PENDING_SUFFIX)
    assert made.is_file() and manifest_path(made).is_file()
    assert list_backups_everywhere(db) == [], "listed before its record said so"
    final = backup_if_due(db, now=T0 + 60, wait=True)
    assert final.made == str(made) and final.ok, final.describe()
    assert waiting(db) == [] and [e["file"] for e in scheduled(db)] == [made.name]
    assert [b.path for b in list_backups_everywhere(db)] == [made]


def test_retention_never_removes_nor_counts_a_copy_still_waiting_for_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second window makes a copy after this worker listed the copies waiting and before
    it applies retention: retention keeps that copy, untouched, and does not count it (the
    newest *verified* copy is the one it must keep); the next call verifies it."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    for day in range(3):
        add_client(db, day)
        assert backup_if_due(db, now=T0 + day * DAY, wait=True).ok
    older = [db.parent / "backups" / str(e["file"]) for e in scheduled(db)]
    assert len(older) == 3 and all(copy.is_file() for copy in older)
    real = scheduled_backup._outcome_of
    theirs: list[Path] = []

    def a_second_window_backs_up_meanwhile(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        add_client(db, 99)
        # Its worker waits for this one's verification lock and dies with its process.
        child = run_child(EXIT_AFTER_THE_CALL, db, T0 + 3 * DAY + 60)
        theirs.append(Path(child.stdout.strip()))

    monkeypatch.setattr(scheduled_backup, "_outcome_of", a_second_window_backs_up_meanwhile)
    tight = BackupPolicy(daily=1, weekly=0, monthly=0)
    add_client(db, 3)
    final = backup_if_due(db, now=T0 + 3 * DAY, policy=tight, wait=True)
    assert final.made and final.ok, final.describe()
    (left,) = theirs
    assert left.is_file() and left.name.endswith(PENDING_SUFFIX), "retention removed it"
    digest = sha256(left)
    assert [e["file"] for e in waiting(db)] == [left.name]
    # Retention ran (the older days went) and kept this call's copy, the newest verified.
    assert sorted(final.removed) == sorted(str(copy) for copy in older)
    assert [e["file"] for e in scheduled(db)] == [Path(final.made).name]
    assert Path(final.made).is_file()
    monkeypatch.setattr(scheduled_backup, "_outcome_of", real)
    later = backup_if_due(db, now=T0 + 3 * DAY + 120, policy=tight, wait=True)
    made = left.with_name(left.name.removesuffix(PENDING_SUFFIX))
    assert later.earlier == [str(made)] and later.ok, later.describe()
    assert sha256(made) == digest and waiting(db) == []
    assert list_backups_everywhere(db)[0].rows["clients"] == 25  # type: ignore[index]


def test_on_done_is_called_once_also_when_nothing_is_left_for_the_background(
    tmp_path: Path,
) -> None:
    """Not due, put off (a session open), or impossible (no file): ``on_done`` gets the
    call's own report, once, before the call returns; no thread is left running."""
    from sqlalchemy import text

    from data.db.session import create_app_engine
    from tests.conftest import sqlite_url

    db = make_studio(tmp_path / "studio" / "inklink.db")
    assert backup_if_due(db, now=T0, wait=True).ok
    workers = {t for t in threading.enumerate() if t.name == "inklink-backup-verify"}
    seen: list[BackupReport] = []
    not_due = backup_if_due(db, now=T0 + 60, on_done=seen.append)
    assert seen == [not_due] and not not_due.due and not not_due.warnings
    assert not_due.wait(timeout=0) is not_due
    engine = create_app_engine(sqlite_url(db))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            put_off = backup_if_due(db, engine=engine, force=True, on_done=seen.append)
    finally:
        engine.dispose()
    assert seen == [not_due, put_off] and put_off.warnings and put_off.made is None
    missing = backup_if_due(tmp_path / "gone" / "inklink.db", force=True, on_done=seen.append)
    assert seen == [not_due, put_off, missing] and missing.warnings
    assert "no database file" in missing.warnings[0]
    # No verifying thread was started by these calls (earlier tests' may still be running).
    assert {t for t in threading.enumerate() if t.name == "inklink-backup-verify"} <= workers


def test_a_studios_own_retention_is_applied_here_and_in_the_second_place(tmp_path: Path) -> None:
    """``policy=`` decides what is kept in both places, not only when a copy is due."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"
    usb.mkdir()
    two_days = BackupPolicy(daily=2, weekly=0, monthly=0)
    made = []
    for day in range(4):
        add_client(db, day)
        report = backup_if_due(db, second_place=usb, policy=two_days, now=T0 + day * DAY, wait=True)
        assert report.made and report.second_place and report.ok, report.describe()
        made.append(Path(report.made).name)
    assert [e["file"] for e in scheduled(db)] == made[2:]
    assert len(list(usb.glob("*.db"))) == 2
    listed = list_backups_everywhere(db, second_place=usb)
    assert sorted((b.place, b.rows and b.rows["clients"]) for b in listed) == [
        ("here", 23),
        ("here", 24),
        ("second place", 23),
        ("second place", 24),
    ]


def test_a_verified_copy_stays_a_backup_when_its_mirroring_and_retention_must_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration lock busy after the copy was verified and recorded (an upgrade in
    another window): the report still names the backup made, warns, and the next call
    copies it to the second place. It said "no backup was made" (the command's exit 2)."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"
    usb.mkdir()
    started = scheduled_backup.make_backup(
        db, copier=scheduled_backup.sqlite_copier(db, None), key=None, now=T0
    )
    assert started.pending
    real = scheduled_backup._outcome_of
    busy = ExitStack()

    def an_upgrade_starts_meanwhile(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        busy.enter_context(lock_held(Path(f"{db}.lock")))

    monkeypatch.setattr(scheduled_backup, "_outcome_of", an_upgrade_starts_meanwhile)
    with busy:
        final = scheduled_backup.finish_backups(
            db, started, key=None, second_place=usb, lock_timeout=1.0
        )
    made = Path(started.pending).with_name(Path(started.pending).name.removesuffix(PENDING_SUFFIX))
    assert final.made == str(made) and final.second_place is None, final.describe()
    assert final.warnings and "wait for the next backup" in final.warnings[0]
    assert [b.path for b in list_backups_everywhere(db)] == [made]
    assert list(usb.iterdir()) == []
    monkeypatch.setattr(scheduled_backup, "_outcome_of", real)
    later = backup_if_due(db, second_place=usb, now=T0 + 60, wait=True)
    assert later.second_place and later.ok, later.describe()
    assert len(list(usb.glob("*.db"))) == 1
