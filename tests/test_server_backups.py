"""A server studio's backups (issue 16): verified portable SQLite copies through the server
move's export, on the same schedule and retention, listed with the file studios' (needs the
real PostgreSQL server, as the other server tests)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from data.db.head import recorded_history
from tests.conftest import PROJECT_ROOT
from tests.postgres import pg_env, studio_at_head
from tests.test_scheduled_backups import DAY, FAKE_CLOCK_CHILD, T0


def at(now: float, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", FAKE_CLOCK_CHILD, repr(now), *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_server_studio_gets_verified_portable_copies_on_the_schedule(
    tmp_path: Path, pg_url: URL
) -> None:
    studio_at_head(pg_url)  # one client
    usb = tmp_path / "usb"
    usb.mkdir()
    env = pg_env(pg_url, tmp_path, INKLINK_BACKUP_DIR=str(usb))
    made = at(T0, env, "backup", "--if-due")
    assert made.returncode == 0, made.stdout + made.stderr
    copies = sorted((tmp_path / "backups").glob("server-*.db"))
    assert len(copies) == 1 and len(list(usb.glob("server-*.db"))) == 1
    connection = sqlite3.connect(copies[0])
    try:
        assert connection.execute("SELECT count(*) FROM clients").fetchone() == (1,)
        versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        assert versions == [(recorded_history().head,)]
    finally:
        connection.close()
    assert not (tmp_path / "unused-sqlite.db").exists()

    later = at(T0 + 3600, env, "backup", "--if-due")
    assert later.returncode == 0 and "no backup due" in later.stdout
    listed = at(T0 + 3600, env, "list-backups")
    assert listed.returncode == 0 and "clients 1" in listed.stdout
    assert listed.stdout.count("second place") == 1
    next_day = at(T0 + DAY, env, "backup", "--if-due")
    assert next_day.returncode == 0, next_day.stdout + next_day.stderr
    assert len(list((tmp_path / "backups").glob("server-*.db"))) == 2

    refused = at(T0 + DAY, env, "restore", "latest")
    assert refused.returncode == 2 and "move-to" in refused.stderr
