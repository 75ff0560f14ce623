"""Reading the live database behind SQLite's back never drops this process's POSIX locks.

POSIX advisory locks belong to a process and a file: closing any descriptor of the database
file releases every lock the process's SQLite connections hold on it. In WAL mode an open
connection holds a SHARED lock on the file for its whole life; without it, another process
closing its last connection takes the EXCLUSIVE lock, checkpoints, and deletes the -wal and
-shm that the first process is still using: its next commits go to a deleted file and are
lost ("How To Corrupt an SQLite Database", 2.2).

Process A here is an app window: an open WAL connection with a commit in the WAL, then one
of the data layer's reads or copies of the live file. Process B is another window that opens
the database, reads, and closes its last connection. A's side files must survive B, and A's
next commit must be in the file afterwards.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, subprocess_env

WINDOW_A = """
import sqlite3, sys
from pathlib import Path
from data.migration import backup, raw_sqlite

db = Path(sys.argv[1])
operation = sys.argv[2]
connection = sqlite3.connect(db, isolation_level=None)
connection.execute("PRAGMA journal_mode = WAL")
connection.execute("INSERT INTO t (v) VALUES ('a')")  # a commit in the WAL
connection.execute("SELECT count(*) FROM t").fetchall()
if operation == "read_header":
    raw_sqlite.read_header(db)
elif operation == "backup_database":
    backup.backup_database(db, label="test")
elif operation == "keep_before_recovery":
    backup.keep_before_recovery(db)
else:
    raise SystemExit(f"unknown operation {operation}")
print("done", flush=True)
sys.stdin.readline()  # window B has opened, read and closed the database meanwhile
connection.execute("INSERT INTO t (v) VALUES ('after')")
print(connection.execute("PRAGMA quick_check").fetchone()[0], flush=True)
connection.close()
"""

WINDOW_B = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("SELECT count(*) FROM t").fetchall()
connection.close()  # the last connection closing checkpoints and deletes the side files
"""


def _studio(db: Path) -> None:
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        connection.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 200,)] * 500)
    finally:
        connection.close()


@pytest.mark.parametrize("operation", ["read_header", "backup_database", "keep_before_recovery"])
def test_reading_the_live_file_keeps_the_process_locks(tmp_path: Path, operation: str) -> None:
    db = tmp_path / "inklink.db"
    _studio(db)
    env = subprocess_env(db)
    window_a = subprocess.Popen(
        [sys.executable, "-c", WINDOW_A, str(db), operation],
        env=env,
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert window_a.stdout is not None and window_a.stdin is not None
        line = window_a.stdout.readline().strip()
        assert line == "done", window_a.communicate(timeout=60)[1]
        subprocess.run([sys.executable, "-c", WINDOW_B, str(db)], env=env, check=True, timeout=60)
        # Window A is still open: its WAL and wal-index must still be there.
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists(), (
            f"after {operation}, another process checkpointed and deleted the side files "
            "of a database this process still had open: its locks were dropped"
        )
        out, err = window_a.communicate("go\n", timeout=60)
        assert window_a.returncode == 0, err
        assert out.strip() == "ok"
    finally:
        if window_a.poll() is None:
            window_a.kill()
            window_a.wait()
    reopened = sqlite3.connect(db)
    try:
        assert reopened.execute("SELECT v FROM t ORDER BY id DESC LIMIT 1").fetchone() == ("after",)
        assert reopened.execute("PRAGMA quick_check").fetchone() == ("ok",)
    finally:
        reopened.close()
