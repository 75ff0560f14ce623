"""Scheduled backups a studio can bet on: due by the system clock, verified, in a second place,
kept by retention, and restored in one step from either place (issue 16).

The clock is moved two ways: the API's ``now`` argument, and for the command a child process
whose ``time.time`` is replaced before anything runs (libfaketime is not installed on this
machine; the code reads no other clock, so a child whose ``time.time`` lies sees the whole
schedule move, as under libfaketime).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from data.db.backups import backup_if_due, list_backups_everywhere, restore_and_upgrade
from data.db.errors import BackupError, DataLayerError
from data.migration.backup import backup_database, list_backups, record_path
from data.migration.schedule import DEFAULT_POLICY, BackupPolicy, KeptCopy, is_due, to_keep
from data.migration.scheduled_backup import finish_backups, make_backup, sqlite_copier
from data.migration.verified_copy import manifest_path
from tests.conftest import PROJECT_ROOT, sha256, subprocess_env
from tests.scratch import query
from tests.studio_data import STAMP
from tests.test_safety_upgrade import make_studio

DAY = 86400.0
# Monday 2 March 2026, 09:00 UTC: a studio's first morning in these tests.
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC).timestamp()


def add_client(db: Path, n: int) -> None:
    connection = sqlite3.connect(db)
    with connection:
        connection.execute(
            "INSERT INTO clients (first_name, last_name, email, created_at, updated_at)"
            " VALUES ('Day', 'Client', ?, ?, ?)",
            (f"day{n}@example.com", STAMP, STAMP),
        )
    connection.close()
    # As if written an hour before the (fake) clock's "now": its stamp can be trusted.
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            os.utime(path, (os.stat(path).st_atime, os.stat(path).st_mtime - 3600))


def clients(db: Path) -> int:
    return int(query(db, "SELECT count(*) FROM clients")[0][0])  # type: ignore[call-overload]


def record(db: Path) -> dict[str, object]:
    return json.loads(record_path(db).read_text())  # type: ignore[no-any-return]


def scheduled(db: Path) -> list[dict[str, object]]:
    return [e for e in record(db)["copies"] if e["kind"] == "scheduled"]  # type: ignore[attr-defined]


def studio_rows(rows: dict[str, int]) -> dict[str, int]:
    """The counts of the three tables these tests fill (the models may have more tables)."""
    return {table: rows[table] for table in ("clients", "tattoo_sessions", "transactions")}


FAKE_CLOCK_CHILD = """
import runpy, sys, time
_now = float(sys.argv[1])
time.time = lambda: _now
time.time_ns = lambda: int(_now * 1e9)
sys.argv = ["data.db", *sys.argv[2:]]
runpy.run_module("data.db", run_name="__main__", alter_sys=True)
"""


def data_db_at(now: float, *args: str, db: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m data.db ARGS`` in a child whose system clock reads ``now``."""
    return subprocess.run(
        [sys.executable, "-c", FAKE_CLOCK_CHILD, repr(now), *args],
        env=subprocess_env(db, **extra),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def data_db(*args: str, db: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "data.db", *args],
        env=subprocess_env(db, **extra),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- the rules ---------------------------------------------------------------------------------


def test_due_by_age_and_when_the_clock_went_back() -> None:
    every = DEFAULT_POLICY.every_seconds
    assert is_due(None, T0)
    assert not is_due(T0, T0 + every - 1)
    assert is_due(T0, T0 + every)
    assert is_due(T0, T0 - 60), "a copy dated in the future must not stop backups"


def test_retention_keeps_dense_recent_and_sparse_old_history() -> None:
    # A copy every evening for a year, one revision all along.
    copies = [KeptCopy(f"c{n}", T0 + n * DAY, "r1", n) for n in range(365)]
    keep = to_keep(copies)
    kept = sorted((c for c in copies if c.name in keep), key=lambda c: c.made_at)
    days = {dt.datetime.fromtimestamp(c.made_at, dt.UTC).date() for c in kept}
    newest = copies[-1]
    assert newest.name in keep
    assert {newest.made_at - n * DAY for n in range(7)} <= {c.made_at for c in kept}
    assert len(days) == len(kept) <= 7 + 4 + 12
    assert len(kept) >= 12, "a year of history should leave a copy per month"
    months = {(c.made_at // (31 * DAY)) for c in kept}
    assert len(months) >= 11


def test_retention_never_drops_the_only_copy_of_a_revision() -> None:
    copies = [KeptCopy(f"c{n}", T0 + n * 3600, "old" if n == 0 else "new", n) for n in range(48)]
    keep = to_keep(copies, BackupPolicy(daily=1, weekly=0, monthly=0))
    assert "c0" in keep, "the only copy of revision 'old' was dropped"
    assert "c47" in keep
    assert len(keep) == 2


def test_the_newest_copy_is_kept_even_when_its_clock_was_wrong() -> None:
    # Made last, dated years back (a dead CMOS battery): still the newest, still kept.
    copies = [KeptCopy(f"c{n}", T0 + n * DAY, "r", n) for n in range(30)]
    copies.append(KeptCopy("late", T0 - 3 * 365 * DAY, "r", 30))
    assert "late" in to_keep(copies, BackupPolicy(daily=1, weekly=0, monthly=0))


# --- making them -------------------------------------------------------------------------------


def test_a_due_backup_is_verified_recorded_and_mirrored(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"
    usb.mkdir()
    report = backup_if_due(db, second_place=usb, now=T0, wait=True)
    assert report.ok and report.due and report.made and report.second_place, report.describe()
    made, there = Path(report.made), Path(report.second_place)
    assert made.parent == db.parent / "backups" and there.parent == usb
    assert sha256(made) == sha256(there)
    for copy in (made, there):
        manifest = json.loads(manifest_path(copy).read_text())
        assert studio_rows(manifest["rows"]) == {
            "clients": 20,
            "tattoo_sessions": 20,
            "transactions": 100,
        }
        assert manifest["revision"] == query(db, "SELECT version_num FROM alembic_version")[0][0]
        assert manifest["verified"]["check"]
        assert manifest["made_at"].startswith("2026-03-02T09:00")
        assert os.stat(copy).st_mode & 0o077 == 0
    assert json.loads(manifest_path(there).read_text())["sha256"] == sha256(there)
    (entry,) = scheduled(db)
    assert entry["rows"] and entry["second_place"]
    # Not due again until the policy says so; then due, and nothing changed: no new copy.
    assert not backup_if_due(db, second_place=usb, now=T0 + 3600, wait=True).due
    again = backup_if_due(db, second_place=usb, now=T0 + DAY, wait=True)
    assert again.due and again.unchanged and again.made == str(made)
    assert len(scheduled(db)) == 1
    assert not backup_if_due(db, second_place=usb, now=T0 + DAY + 60, wait=True).due


def test_not_due_reads_only_the_record_and_imports_no_engine(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    assert backup_if_due(db, wait=True).made
    before = sha256(db)
    code = (
        "import sys\n"
        "from data.db.session import backup_if_due, init_db\n"
        "init_db()  # as the app does first\n"
        "before = set(sys.modules)\n"
        "report = backup_if_due()\n"
        "assert not report.due, report.describe()\n"
        "print('new:', sorted(m for m in set(sys.modules) - before if m.startswith(('data', "
        "'alembic', 'sqlite3', 'sqlcipher3', 'hashlib', 'socket'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(db),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "new: ['data.db.backup_due']"  # not data.db.backups
    assert sha256(db) == before


def test_the_command_goes_by_the_system_clock(tmp_path: Path) -> None:
    """`backup --if-due` for a system scheduler, run under a fake clock."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    first = data_db_at(T0, "backup", "--if-due", db=db)
    assert first.returncode == 0, first.stdout + first.stderr
    (entry,) = scheduled(db)
    assert str(entry["made_at"]).startswith("2026-03-02T09:00"), entry
    later = data_db_at(T0 + 3600, "backup", "--if-due", db=db)
    assert later.returncode == 0 and "no backup due" in later.stdout
    add_client(db, 1)
    next_day = data_db_at(T0 + DAY, "backup", "--if-due", db=db)
    assert next_day.returncode == 0, next_day.stdout + next_day.stderr
    assert [str(e["made_at"])[:10] for e in scheduled(db)] == ["2026-03-02", "2026-03-03"]
    # `backup` makes one now, whatever the schedule says.
    add_client(db, 2)
    now = data_db_at(T0 + DAY + 60, "backup", db=db)
    assert now.returncode == 0, now.stdout + now.stderr
    # Retention keeps the newest of each day: the morning's copy of the 3rd made way.
    assert [str(e["made_at"])[:16] for e in scheduled(db)] == [
        "2026-03-02T09:00",
        "2026-03-03T09:01",
    ]
    assert "removed by retention" in now.stdout


def test_a_missing_or_full_second_place_is_a_warning_and_is_caught_up_later(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"  # not plugged in: the folder is not there
    report = backup_if_due(db, second_place=usb, now=T0, wait=True)
    assert report.made and not report.second_place
    assert report.warnings and str(usb) in report.warnings[0] and "connected" in report.warnings[0]
    assert not usb.exists(), "the missing folder was created (onto the mount point?)"
    # By the command: exit 1, the copy here made, the warning printed.
    add_client(db, 1)
    result = data_db_at(T0 + DAY, "backup", "--if-due", db=db, INKLINK_BACKUP_DIR=str(usb))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "warning" in result.stdout and str(usb) in result.stdout
    # A file where the folder should be: the same warning, never an exception.
    usb.write_text("not a folder")
    assert backup_if_due(db, second_place=usb, now=T0 + 2 * DAY, wait=True).warnings
    usb.unlink()
    # Plugged in: the next check is due at once (the newest copy is not there yet).
    usb.mkdir()
    caught_up = backup_if_due(db, second_place=usb, now=T0 + 2 * DAY + 60, wait=True)
    assert caught_up.due and caught_up.second_place and caught_up.ok, caught_up.describe()
    assert not backup_if_due(db, second_place=usb, now=T0 + 2 * DAY + 120, wait=True).due


def test_a_full_second_place_leaves_no_partial_copy(tmp_path: Path) -> None:
    from tests.conftest import small_disk

    db = make_studio(tmp_path / "studio" / "inklink.db")
    with small_disk(tmp_path) as usb:
        free = shutil.disk_usage(usb).free
        filler = usb / "someone-elses-film.mov"
        filler.write_bytes(b"\0" * (free - 48 * 1024))  # less room left than one copy
        report = backup_if_due(db, second_place=usb, now=T0, wait=True)
        assert report.made and not report.second_place
        assert report.warnings and "full" in report.warnings[0], report.warnings
        assert list(usb.iterdir()) == [filler], "a partial copy was left in the second place"


def test_a_copy_killed_midway_never_looks_like_a_backup_in_the_second_place(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    connection = sqlite3.connect(db)
    with connection:  # 64 MB of photos, so the copy takes a while
        connection.execute("CREATE TABLE padding (b BLOB)")
        connection.executemany("INSERT INTO padding VALUES (randomblob(1048576))", [()] * 64)
    connection.close()
    usb = tmp_path / "usb"
    usb.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-m", "data.db", "backup"],
        env=subprocess_env(db, INKLINK_BACKUP_DIR=str(usb)),
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not any(usb.iterdir()) and child.poll() is None:
            pass  # the first byte of the second place's copy: kill it there
    finally:
        child.kill()
        child.wait()
    here = db.parent / "backups"
    for found in usb.iterdir():
        if found.suffix == ".db":  # under a backup's name: whole, or not there at all
            assert sha256(found) == sha256(here / found.name), f"{found} is a partial copy"
    assert list_backups_everywhere(db, second_place=usb)[0].place == "here"
    # The next backup clears what the killed one left, and mirrors.
    report = backup_if_due(db, second_place=usb, now=T0, wait=True)
    assert report.second_place and report.ok, report.describe()
    assert not list(usb.glob("*.partial"))


def test_a_copy_that_fails_verification_is_kept_aside_reported_and_never_counted(
    tmp_path: Path,
) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    good = backup_if_due(db, now=T0, wait=True)
    assert good.made

    def damaging(target: Path) -> None:
        sqlite_copier(db, None)(target)
        with target.open("r+b") as handle:  # a page in the middle turned to noise
            handle.seek(2 * 4096)
            handle.write(os.urandom(4096))

    add_client(db, 1)
    started = make_backup(db, copier=damaging, key=None, now=T0 + DAY)
    assert started.pending and not started.made
    report = finish_backups(db, started, key=None)
    assert report.failed and report.made is None and report.warnings
    assert "integrity check" in report.warnings[0], report.warnings
    assert Path(report.failed).is_file() and report.failed.endswith(".failed")
    listed = [b.path for b in list_backups_everywhere(db)]
    assert listed == [Path(good.made)], "a copy that failed its check was listed"
    # Not counted: the next check is still due, and retention kept the good copy.
    assert backup_if_due(db, now=T0 + DAY + 60, wait=True).made
    assert Path(good.made).is_file()


def test_backup_if_due_never_raises(tmp_path: Path) -> None:
    report = backup_if_due(tmp_path / "nowhere" / "inklink.db", now=T0, wait=True)
    assert report.due and report.made is None and report.warnings
    assert not (tmp_path / "nowhere").exists()
    letter = tmp_path / "inklink.db"
    letter.write_bytes(b"this is a letter, not a database" * 100)
    before = sha256(letter)
    report = backup_if_due(letter, now=T0, wait=True)
    assert report.made is None and "not a SQLite database" in report.warnings[0]
    result = data_db("backup", db=letter)
    assert result.returncode == 2 and result.stderr.count(f"Database {letter}") == 1
    assert "Traceback" not in result.stderr
    assert sha256(letter) == before
    assert not (tmp_path / "backups").exists()


NO_CURRENT_FOLDER = """
import os, sys
os.chdir(sys.argv[1])
os.rmdir(sys.argv[1])  # the folder the app was started from is deleted under it
from data.db.backups import backup_if_due
report = backup_if_due("inklink.db", second_place="usb", force=True)
print(report.due, report.made, bool(report.warnings))
"""


def test_backup_if_due_never_raises_without_a_current_folder(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", NO_CURRENT_FOLDER, str(gone)],
        env=subprocess_env(tmp_path / "inklink.db", INKLINK_BACKUP_DIR="usb"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["True", "None", "True"], child.stdout + child.stderr


def test_upgrade_backups_and_scheduled_ones_keep_their_own_rules(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    for day in range(10):
        add_client(db, day)
        assert backup_if_due(db, now=T0 + day * DAY, wait=True).made
    head = str(query(db, "SELECT version_num FROM alembic_version")[0][0])
    for n in range(7):  # more upgrades than the five kept
        add_client(db, 100 + n)
        backup_database(db, label=head)
    assert len(list_backups(db)) == 5
    assert len(scheduled(db)) == 7, "upgrade backups' rotation touched scheduled copies"
    add_client(db, 200)
    assert backup_if_due(db, now=T0 + 10 * DAY, wait=True).made
    assert len(list_backups(db)) == 5, "scheduled retention touched upgrade backups"
    kinds = {b.kind for b in list_backups_everywhere(db)}
    assert kinds == {"scheduled", "before upgrade"}


# --- restoring ---------------------------------------------------------------------------------


def test_restore_refuses_a_copy_that_is_not_what_its_manifest_says(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"
    usb.mkdir()
    report = backup_if_due(db, second_place=usb, now=T0, wait=True)
    there = Path(str(report.second_place))
    data = bytearray(there.read_bytes())
    data[-100] ^= 0xFF  # same size, one byte changed: only the checksum tells
    there.write_bytes(bytes(data))
    before = sha256(db)
    with pytest.raises(BackupError, match="not the file that was verified"):
        restore_and_upgrade(there, db, second_place=usb)
    assert sha256(db) == before
    # By the command: exit 2, the message printed, nothing changed.
    result = data_db("restore", str(there), db=db, INKLINK_BACKUP_DIR=str(usb))
    assert result.returncode == 2 and "not the file that was verified" in result.stderr
    assert sha256(db) == before


def test_restore_by_date_keeps_the_current_file_aside(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    backup_if_due(db, now=T0, wait=True)
    add_client(db, 1)
    backup_if_due(db, now=T0 + DAY, wait=True)
    add_client(db, 2)
    result = data_db("restore", "2026-03-02", db=db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert clients(db) == 20
    kept = [e for e in record(db)["copies"] if e["kind"] == "replaced"]  # type: ignore[attr-defined]
    assert len(kept) == 1
    assert clients(db.parent / "backups" / str(kept[0]["file"])) == 22


def test_restore_latest_is_the_copy_made_last_also_after_the_clock_was_moved_back(
    tmp_path: Path,
) -> None:
    """A computer whose clock ran a year ahead, then was put right: its copies from then are
    dated in the future, and "latest" is still the copy made last, not the one dated last."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    ahead = backup_if_due(db, now=T0 + 365 * DAY, wait=True)
    assert ahead.made
    add_client(db, 1)
    put_right = backup_if_due(db, now=T0, wait=True)  # due: the newest is dated ahead
    assert put_right.made and put_right.made != ahead.made, put_right.describe()
    add_client(db, 2)
    result = data_db("restore", "latest", db=db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(put_right.made) in result.stdout and clients(db) == 21


def test_restore_latest_takes_the_second_places_copy_when_the_newest_here_is_lost(
    tmp_path: Path,
) -> None:
    """Also after a clock that ran ahead was put right: the record still knows the order."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"
    usb.mkdir()
    assert backup_if_due(db, second_place=usb, now=T0 + 365 * DAY, wait=True).second_place
    add_client(db, 1)
    newest = backup_if_due(db, second_place=usb, now=T0, wait=True)
    assert newest.made and newest.second_place, newest.describe()
    Path(newest.made).unlink()  # the newest copy beside the database is lost
    add_client(db, 2)
    result = data_db("restore", "latest", "--to", str(usb), db=db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(newest.second_place) in result.stdout and clients(db) == 21


WRITE_AND_DIE = """
import os, sqlite3, sys
connection = sqlite3.connect(sys.argv[1])
connection.execute("PRAGMA wal_autocheckpoint = 0")
with connection:
    connection.execute("UPDATE clients SET first_name = 'Unsaved'")
os._exit(0)  # the window crashed: its commit is only in the -wal
"""


def test_a_restore_over_a_file_whose_header_is_destroyed_keeps_it_and_its_wal_aside(
    tmp_path: Path,
) -> None:
    """The commonest restore: the file no longer opens. It was refused as "encrypted" (its
    header gone, it looks like SQLCipher's); now it is set aside as it was, with its -wal,
    whose frames must never be played onto the restored file."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    assert backup_if_due(db, now=T0, wait=True).made
    add_client(db, 1)
    crashed = subprocess.run([sys.executable, "-c", WRITE_AND_DIE, str(db)], timeout=60)
    assert crashed.returncode == 0
    wal = db.with_name(db.name + "-wal")
    assert wal.stat().st_size > 0
    with open(db, "r+b") as damaged:  # a disk error over the first page's header
        damaged.write(bytes(100))
    hashes = {db.name: sha256(db), wal.name: sha256(wal)}
    # It looks encrypted: without the key at hand it might be a good file another window
    # has open. Refused, unchanged, saying how to go on.
    refused = data_db("restore", "latest", db=db)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--set-aside-unreadable" in refused.stderr and str(db) in refused.stderr
    assert {db.name: sha256(db), wal.name: sha256(wal)} == hashes
    result = data_db("restore", "latest", "--set-aside-unreadable", db=db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert clients(db) == 20 and query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "SELECT count(*) FROM clients WHERE first_name = 'Unsaved'") == [(0,)]
    (kept,) = [e for e in record(db)["copies"] if e["kind"] == "replaced"]  # type: ignore[attr-defined]
    aside = db.parent / "backups" / str(kept["file"])
    assert sha256(aside) == hashes[db.name], "the damaged file is not kept as it was"
    assert sha256(aside.with_name(aside.name + "-wal")) == hashes[wal.name]
    assert data_db("verify", db=db).returncode == 0


def test_a_file_with_a_header_sqlite_rejects_is_set_aside_and_put_back_if_the_restore_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite header SQLite calls "not a database" (no key can be missing) is set aside at
    once; a restore that fails after that (the disk full) puts it back as it was, and no
    empty file is left for the next start to take for a new studio."""
    from data.migration import raw_sqlite

    db = make_studio(tmp_path / "studio" / "inklink.db")
    assert backup_if_due(db, now=T0, wait=True).made
    with open(db, "r+b") as damaged:
        damaged.seek(16)
        damaged.write(b"\x00\x03")  # a page size of 3 bytes
    before = sha256(db)
    files = {p.name: sha256(p) for p in db.parent.glob(db.name + "*") if p.is_file()}
    real = raw_sqlite.overwrite_holding_the_lock

    def the_disk_fills(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(raw_sqlite, "overwrite_holding_the_lock", the_disk_fills)
    with pytest.raises(BackupError, match="disk is full"):
        restore_and_upgrade("latest", db)
    assert {p.name: sha256(p) for p in db.parent.glob(db.name + "*") if p.is_file()} == files
    assert not list((db.parent / "backups").glob("*replaced*"))
    assert [e for e in record(db)["copies"] if e["kind"] == "replaced"] == []  # type: ignore[attr-defined]
    monkeypatch.setattr(raw_sqlite, "overwrite_holding_the_lock", real)
    restored = restore_and_upgrade("latest", db)
    assert restored.kept_aside is not None and sha256(restored.kept_aside) == before
    assert clients(db) == 20 and query(db, "PRAGMA integrity_check") == [("ok",)]


def test_an_encrypted_studio_stays_encrypted_everywhere_and_restore_needs_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    key = secrets.token_hex(32)
    monkeypatch.setenv("INKLINK_DB_KEY", key)
    monkeypatch.setenv("INKLINK_TEST_KEYRING", "")
    db = make_studio(tmp_path / "studio" / "inklink.db")
    encrypting = data_db("encrypt", db=db)  # the real command, with INKLINK_DB_KEY's key
    assert encrypting.returncode == 0, encrypting.stdout + encrypting.stderr
    assert db.read_bytes()[:16] != b"SQLite format 3\x00"
    usb = tmp_path / "usb"
    usb.mkdir()
    result = data_db_at(T0, "backup", db=db, INKLINK_BACKUP_DIR=str(usb))
    assert result.returncode == 0, result.stdout + result.stderr
    listed = list_backups_everywhere(db, second_place=usb)
    copies = [b.path for b in listed if b.kind == "scheduled"]
    assert len(copies) == 2
    for copy in copies:
        assert copy.read_bytes()[:16] != b"SQLite format 3\x00", f"{copy} is readable without key"
        assert json.loads(manifest_path(copy).read_text())["encrypted"] is True
    shutil.rmtree(db.parent)
    # No key: refused, nothing made in the database's place.
    result = data_db("restore", "latest", db=db, INKLINK_BACKUP_DIR=str(usb), INKLINK_DB_KEY="")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "key" in result.stderr.lower()
    assert not db.exists() or db.stat().st_size == 0
    result = data_db("restore", "latest", db=db, INKLINK_BACKUP_DIR=str(usb))
    assert result.returncode == 0, result.stdout + result.stderr
    assert db.read_bytes()[:16] != b"SQLite format 3\x00"
    assert query(db, "SELECT count(*) FROM transactions", key=key) == [(100,)]


def test_restore_drill_a_week_of_backups_the_disk_lost_back_from_the_second_place(
    tmp_path: Path,
) -> None:
    """The issue's drill: a populated studio, a week of scheduled backups under a fake clock
    (at each start and close, by the command a scheduler or the app runs), the data folder
    lost, and the studio back from the second place with its rows counted."""
    db = make_studio(tmp_path / "studio" / "inklink.db", clients=200)
    usb = tmp_path / "usb"
    usb.mkdir()
    env = {"INKLINK_BACKUP_DIR": str(usb)}
    expected = {}
    for day in range(7):
        opening, closing = T0 + day * DAY, T0 + day * DAY + 10 * 3600
        start = data_db_at(opening, "backup", "--if-due", db=db, **env)
        assert start.returncode == 0, start.stdout + start.stderr
        for n in range(5):  # the day's new clients
            add_client(db, day * 10 + n)
        close = data_db_at(closing, "backup", "--if-due", db=db, **env)
        assert close.returncode == 0, close.stdout + close.stderr
        expected[day] = clients(db)
    listed = data_db_at(T0 + 7 * DAY, "list-backups", db=db, **env)
    print(listed.stdout)
    there = [b for b in list_backups_everywhere(db, second_place=usb) if b.place == "second place"]
    # One a day: each evening's (the first morning's made way for its evening's; every later
    # morning found the file as the evening before left it, and made none).
    assert [b.made_at[:16] for b in there] == [
        f"2026-03-{day:02d}T19:00" for day in range(8, 1, -1)
    ]
    assert there[0].rows and there[0].rows["clients"] == expected[6]

    shutil.rmtree(db.parent)  # the laptop is gone: the database and its backups/

    listed = data_db("list-backups", db=db, **env)
    assert listed.returncode == 0 and "second place" in listed.stdout
    restored = data_db("restore", "latest", db=db, **env)
    print(restored.stdout)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "current" in restored.stdout
    assert clients(db) == expected[6] == 235
    assert query(db, "SELECT count(*) FROM transactions") == [(1000,)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    status = subprocess.run(
        [sys.executable, "-m", "data.db"],
        env=subprocess_env(db),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stdout + status.stderr  # at head: the app starts
    # And the middle of the week, by its date, from the same place.
    wednesday = data_db("restore", "2026-03-04T19", db=db, **env)
    assert wednesday.returncode == 0, wednesday.stdout + wednesday.stderr
    assert clients(db) == expected[2]


def test_a_restore_names_only_listed_backups(tmp_path: Path) -> None:
    db = make_studio(tmp_path / "studio" / "inklink.db")
    stranger = tmp_path / "found-on-a-stick.db"
    shutil.copy(db, stranger)
    before = sha256(db)
    with pytest.raises(DataLayerError, match=r"0 listed beside it \(INKLINK_BACKUP_DIR is not set"):
        restore_and_upgrade(stranger, db)
    made = Path(str(backup_if_due(db, now=T0, wait=True).made))
    with pytest.raises(DataLayerError, match=r"not one of its listed, verified backups \(1 listed"):
        restore_and_upgrade(stranger, db)
    assert sha256(db) == before
    # A copy carried elsewhere with its manifest still vouches for itself.
    stick = tmp_path / "stick"
    stick.mkdir()
    for path in (made, manifest_path(made)):
        shutil.copy(path, stick / path.name)
    add_client(db, 1)
    outcome = restore_and_upgrade(stick / made.name, db)
    assert outcome.restored.place == "given" and clients(db) == 20


def test_a_shared_second_place_keeps_each_desks_copies_apart(tmp_path: Path) -> None:
    usb = tmp_path / "share"
    usb.mkdir()
    desk_a = make_studio(tmp_path / "a" / "inklink.db")
    desk_b = make_studio(tmp_path / "b" / "inklink.db", clients=30)
    for day in range(40):  # A's retention runs forty times over B's copy
        add_client(desk_a, day)
        assert backup_if_due(desk_a, second_place=usb, now=T0 + day * DAY, wait=True).second_place
        if day == 0:  # both desks' copies made in the same second, of files of one name
            assert backup_if_due(desk_b, second_place=usb, now=T0, wait=True).second_place
            (a_there,) = [
                b
                for b in list_backups_everywhere(desk_a, second_place=usb)
                if b.place == "second place" and b.of is None
            ]
            assert a_there.rows and a_there.rows["clients"] == 21, "B's copy replaced A's"
            assert sha256(a_there.path) == a_there.sha256
    b_copies = [b for b in list_backups_everywhere(desk_b, second_place=usb) if b.of is None]
    assert len(b_copies) == 2, "A's retention deleted B's copy in the shared folder"
    restore_and_upgrade("latest", desk_b, second_place=usb)
    assert clients(desk_b) == 30
    # A new computer (another path): both desks' copies, so "latest" is refused, a path is not.
    new = tmp_path / "new" / "inklink.db"
    with pytest.raises(BackupError, match="several databases"):
        restore_and_upgrade("latest", new, second_place=usb)
    assert not new.exists()
    restore_and_upgrade(b_copies[-1].path, new, second_place=usb)
    assert clients(new) == 30


def test_in_the_app_a_backup_waits_until_no_session_is_open(tmp_path: Path) -> None:
    """Reading the file from Python while the app holds a connection would drop that
    connection's POSIX locks: with a session open the backup is put off, with a warning."""
    from sqlalchemy import text

    from data.db.session import create_app_engine
    from tests.conftest import sqlite_url

    db = make_studio(tmp_path / "studio" / "inklink.db")
    engine = create_app_engine(sqlite_url(db))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT count(*) FROM clients")).scalar()
            report = backup_if_due(db, engine=engine, now=T0, wait=True)
            assert report.due and report.made is None
            assert report.warnings and "in use" in report.warnings[0]
            assert not (db.parent / "backups").exists()
        with engine.connect() as connection:  # idle in the pool afterwards: closed first
            connection.execute(text("SELECT 1"))
        report = backup_if_due(db, engine=engine, now=T0, wait=True)
        assert report.made and report.ok, report.describe()
        assert engine.pool.checkedin() == 0  # type: ignore[attr-defined]
        with engine.connect() as connection:  # and the app goes on as before
            assert connection.execute(text("SELECT count(*) FROM clients")).scalar() == 20
    finally:
        engine.dispose()


def test_an_unwritable_second_place_is_a_warning(tmp_path: Path) -> None:
    """A read-only file system (a write-protected card, a share mounted read-only): root
    writes through file modes, not through a read-only mount."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    card = tmp_path / "card"
    card.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=4m", "tmpfs", str(card)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a read-only tmpfs here: {mounted.stderr}")
    try:
        report = backup_if_due(db, second_place=card, now=T0, wait=True)
        assert report.made and not report.second_place
        assert report.warnings and "Read-only" in report.warnings[0], report.warnings
        assert list(card.iterdir()) == []
    finally:
        subprocess.run(["umount", "--lazy", str(card)], check=True)


def test_the_way_back_after_damage_is_the_newest_good_copy_of_any_kind_in_either_place(
    tmp_path: Path,
) -> None:
    """`verify` names the newest copy that passes the check: a scheduled copy newer than the
    last upgrade's, and when the data folder's copies are gone, the second place's."""
    from tests.test_scoped_checks import damage_table

    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"
    usb.mkdir()
    head = str(query(db, "SELECT version_num FROM alembic_version")[0][0])
    before_upgrade = backup_database(db, label=head)
    add_client(db, 1)
    scheduled_copy = Path(str(backup_if_due(db, second_place=usb, wait=True).made))
    damage_table(db, "transactions")

    def verify() -> subprocess.CompletedProcess[str]:
        return data_db("verify", db=db, INKLINK_BACKUP_DIR=str(usb))

    found = verify()
    assert found.returncode == 1, found.stdout + found.stderr
    assert str(scheduled_copy) in found.stderr and str(before_upgrade) not in found.stderr
    shutil.rmtree(db.parent / "backups")  # the copies beside it lost too
    found = verify()
    assert found.returncode == 1, found.stdout + found.stderr
    (there,) = [p for p in usb.iterdir() if p.suffix == ".db"]
    assert str(there) in found.stderr, found.stderr
    # The command it names puts that copy back, from the second place, and the file is sound.
    named = f"`python -m data.db restore {there}`"
    assert named in found.stderr, found.stderr
    restored = data_db("restore", str(there), db=db, INKLINK_BACKUP_DIR=str(usb))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert verify().returncode == 0 and clients(db) == 21


def test_a_reader_holding_the_file_open_does_not_make_it_look_changed(tmp_path: Path) -> None:
    """Another window only reading (its connection makes an empty -wal) changes nothing."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    first = backup_if_due(db, now=T0, wait=True)
    assert first.made and not db.with_name(db.name + "-wal").exists()
    reader = sqlite3.connect(db)
    try:
        assert reader.execute("SELECT count(*) FROM clients").fetchone() == (20,)
        assert db.with_name(db.name + "-wal").stat().st_size == 0
        again = backup_if_due(db, now=T0 + DAY, wait=True)
        assert again.unchanged and again.made == first.made, again.describe()
    finally:
        reader.close()
    assert len(scheduled(db)) == 1


def test_the_second_place_keeps_the_newest_copy_after_the_clock_went_back(tmp_path: Path) -> None:
    """A copy made after the clock was moved back (earlier the same day) is the newest: the
    second place keeps it, as the folder beside the database does, not the one dated later."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    usb = tmp_path / "usb"
    usb.mkdir()
    evening = T0 + DAY + 10 * 3600  # Tuesday 19:00
    first = backup_if_due(db, second_place=usb, now=evening, wait=True)
    assert first.ok and first.second_place, first.describe()
    add_client(db, 1)
    morning = T0 + DAY  # Tuesday 09:00: the clock was moved back
    report = backup_if_due(db, second_place=usb, now=morning, wait=True)
    assert report.ok and report.made and report.second_place, report.describe()
    newest_there = Path(report.second_place)
    assert newest_there.is_file(), "retention in the second place deleted the newest copy"
    assert [b.path for b in list_backups_everywhere(db) if b.place == "here"] == [Path(report.made)]
    there = [b for b in list_backups_everywhere(db, second_place=usb) if b.place != "here"]
    assert [b.rows["clients"] for b in there if b.rows] == [21]


def test_a_second_place_under_an_unknown_home_is_a_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~someone/...`` for a user this computer does not know is a second place that cannot
    be found: a warning, and the copy beside the database made anyway."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    monkeypatch.setenv("INKLINK_BACKUP_DIR", "~no-such-user-inklink/usb")
    report = backup_if_due(db, now=T0, wait=True)
    assert report.made and Path(report.made).is_file(), report.describe()
    assert report.second_place is None and report.warnings
    assert "second place" in report.warnings[0]
    result = data_db("backup", db=db, INKLINK_BACKUP_DIR="~no-such-user-inklink/usb")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_restore_refuses_a_backup_newer_than_the_app_before_replacing_anything(
    tmp_path: Path,
) -> None:
    """A copy made by a newer InkLinkOS (a shared second place, an app put back to an older
    version) would be put in place and then refused at start: the studio left with a file its
    app cannot open, told "nothing changed". Refused first, the database untouched."""
    newer = make_studio(tmp_path / "newer-desk" / "inklink.db")
    connection = sqlite3.connect(newer)
    with connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    connection.close()
    os.utime(newer, (os.stat(newer).st_atime, os.stat(newer).st_mtime - 3600))
    copy = backup_if_due(newer, now=T0, wait=True)
    assert copy.made, copy.describe()
    db = make_studio(tmp_path / "studio" / "inklink.db")
    before = sha256(db)
    with pytest.raises(DataLayerError, match="ffffffffffff") as refused:
        restore_and_upgrade(copy.made, db)
    assert "not changed" in str(refused.value)
    assert sha256(db) == before
    assert not (db.parent / "backups").exists(), "a restore that was refused kept a file aside"
    result = data_db("restore", copy.made, db=db)
    assert result.returncode == 2 and "ffffffffffff" in result.stderr, result.stderr
    assert sha256(db) == before


def test_two_copies_made_at_the_same_clock_time_are_two_files(tmp_path: Path) -> None:
    """A clock that stands still (libfaketime at a fixed time) gives two copies the same time:
    the second must not overwrite the first, which its record entry still describes."""
    db = make_studio(tmp_path / "studio" / "inklink.db")
    first = backup_if_due(db, now=T0, wait=True)
    assert first.made, first.describe()
    add_client(db, 1)
    second = backup_if_due(db, now=T0, force=True, wait=True)
    assert second.made and second.made != first.made, second.describe()
    listed = list_backups_everywhere(db)
    assert listed[0].path == Path(second.made)
    for backup in listed:  # what the record says of each copy is what the file holds
        assert backup.rows and clients(backup.path) == backup.rows["clients"], backup
    assert not Path(first.made).exists() or clients(Path(first.made)) == 20, (
        "the first copy was overwritten by the second"
    )
