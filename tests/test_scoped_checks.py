"""An upgrade's checks cover what it touched; the whole file is checked after start.

The scope is read from the migration transaction itself (SQLite's authorizer and the catalog
before and after), so these tests run statements inside the runner's own transaction and
look at what it would check; then whole upgrades in a newer app's copy prove that damage or a
broken reference where the upgrade wrote is still refused, and that damage elsewhere is
reported after start with the way back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from data.db.session import create_app_engine
from data.migration.backends.sqlite import Backend, migration_transaction
from data.migration.backup import backup_database, list_backups
from data.migration.rebuild import rebuild_table
from data.migration.touched import Scope
from tests.conftest import sha256, sqlite_url
from tests.scratch import Revision, ScratchProject, outcome_line, query
from tests.test_safety_upgrade import make_studio


def scope_after(db: Path, *statements: str) -> tuple[Scope, list[tuple[object, ...]], list[str]]:
    """Run ``statements`` in the runner's migration transaction, then roll back; returns
    the scope it would check, the reference violations and the damage found there."""
    engine = create_app_engine(sqlite_url(db))
    backend = Backend(engine)
    try:
        with (
            pytest.raises(_RolledBack),
            migration_transaction(engine.url, str(db), None, read_only=True) as connection,
        ):
            for sql in statements:
                if sql == "REBUILD transactions":
                    rebuild_table(connection, "transactions")
                else:
                    connection.exec_driver_sql(sql)
            found = (
                backend.scope(connection),
                backend.foreign_key_violations(connection),
                backend.integrity_problems(connection),
            )
            raise _RolledBack
    finally:
        engine.dispose()
    return found


class _RolledBack(Exception):
    pass


@pytest.fixture
def studio(tmp_path: Path) -> Path:
    return make_studio(tmp_path / "studio" / "inklink.db", clients=30)


def test_an_added_column_checks_that_table_only(studio: Path) -> None:
    scope, broken, damage = scope_after(studio, "ALTER TABLE clients ADD COLUMN nickname TEXT")
    assert scope.integrity == ["clients"]
    # Its rows stay where they were: the tables pointing at it are not read.
    assert scope.foreign_keys == ["clients"]
    assert broken == [] and damage == []


def test_rows_written_in_a_parent_check_its_children(studio: Path) -> None:
    children = {
        str(row[0])
        for row in query(
            studio,
            "SELECT m.name FROM sqlite_master m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table' AND f.\"table\" = 'clients'",
        )
    }
    assert children, "the studio has tables pointing at clients"
    scope, broken, _ = scope_after(
        studio, "DELETE FROM clients WHERE id IN (SELECT client_id FROM tattoo_sessions)"
    )
    assert "clients" in scope.integrity
    assert children <= set(scope.foreign_keys)
    # The check is scoped, not weakened: the rows left pointing at nothing are found.
    assert broken, "deleted parents with children left behind were not found"
    assert {str(row[0]) for row in broken} <= children


def test_a_broken_reference_written_by_the_revision_is_found(studio: Path) -> None:
    _, broken, _ = scope_after(
        studio,
        "UPDATE transactions SET client_id = 987654321 WHERE id = (SELECT min(id) FROM transactions)",
    )
    assert {str(row[0]) for row in broken} == {"transactions"}


def test_a_rebuild_checks_the_rebuilt_table_and_its_children(studio: Path) -> None:
    scope, broken, damage = scope_after(studio, "REBUILD transactions")
    assert "transactions" in scope.integrity and "transactions" in scope.foreign_keys
    assert "clients" not in scope.integrity
    assert broken == [] and damage == []


def test_nothing_written_checks_no_table(studio: Path) -> None:
    scope, _, _ = scope_after(studio, "SELECT count(*) FROM transactions")
    assert scope.integrity == [] and scope.foreign_keys == []


# --- damage: where the upgrade writes, and elsewhere ----------------------------------------


def _plain(db: Path) -> None:
    """Every page in the main file (no WAL), as a damaged file is found."""
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.close()


def damage_table(db: Path, table: str) -> None:
    """Scribble over the b-tree header of ``table``'s root page."""
    _plain(db)
    (root,) = query(db, f"SELECT rootpage FROM sqlite_master WHERE name = '{table}'")[0]
    (page_size,) = query(db, "PRAGMA page_size")[0]
    assert isinstance(root, int) and isinstance(page_size, int)
    with db.open("r+b") as handle:
        handle.seek(page_size * (root - 1) + (100 if root == 1 else 0))
        handle.write(b"\x0d\xff\xff\xff\xff\xff\xff\xff" * 4)
    try:
        found = query(db, "PRAGMA quick_check")
    except sqlite3.DatabaseError as exc:
        found = [(str(exc),)]
    assert found != [("ok",)]


ADD_COLUMN = Revision(
    "5c0bed000001",
    doc="a nickname for clients",
    upgrade='op.add_column("clients", sa.Column("nickname", sa.String(length=40), nullable=True))',
)


@pytest.fixture(scope="module")
def newer_app(tmp_path_factory: pytest.TempPathFactory) -> ScratchProject:
    project = ScratchProject(tmp_path_factory.mktemp("newer-app"))
    project.add(ADD_COLUMN)
    return project


CHECK = (
    "from data.db.session import check_database\n"
    "r = check_database()\n"
    "print('REPORT', r.status, r.last_good_backup)\n"
    "print(r.describe())\n"
)


def test_damage_the_upgrade_does_not_touch_is_found_after_start_with_the_way_back(
    studio: Path, newer_app: ScratchProject
) -> None:
    good = backup_database(studio, label="before-damage")
    damage_table(studio, "transactions")
    _, _, to_revision, backup = outcome_line(newer_app.init_db(studio))
    assert to_revision == ADD_COLUMN.revision
    assert Path(backup) != good and Path(backup) in list_backups(studio)
    assert query(
        studio, "SELECT count(*) FROM pragma_table_info('clients') WHERE name = 'nickname'"
    ) == [(1,)]

    checked = newer_app.python(CHECK, studio)
    report = next(line for line in checked.stdout.splitlines() if line.startswith("REPORT"))
    # The newest backup was copied from the damaged file: the way back is the older one.
    assert report.split()[1:] == ["damaged", str(good)]
    assert str(good) in checked.stdout and "restore" in checked.stdout

    verify = newer_app.inklink_db("verify", db_path=studio)
    assert verify.returncode == 1, verify
    assert "damaged" in verify.stderr and str(good) in verify.stderr


def test_verify_on_its_own_still_reads_every_page_before_it_opens_the_file(
    studio: Path,
) -> None:
    """The command checks every page first and tells ``verify_database`` so; called on its
    own, it checks them itself, and damage is an error for people, not the driver's."""
    from data.db.errors import DatabaseCorruptError
    from data.db.verify import verify_database

    damage_table(studio, "transactions")
    engine = create_app_engine(sqlite_url(studio))
    try:
        with pytest.raises(DatabaseCorruptError, match="damaged"):
            verify_database(engine)
    finally:
        engine.dispose()


def test_damage_where_the_upgrade_writes_is_refused_and_changes_nothing(
    studio: Path, newer_app: ScratchProject
) -> None:
    damage_table(studio, "clients")
    digest = sha256(studio)
    result = newer_app.init_db(studio, check=False)
    assert result.returncode != 0
    assert "DatabaseCorruptError" in result.stderr and str(studio) in result.stderr
    assert "damaged" in result.stderr and "not changed" in result.stderr
    assert sha256(studio) == digest


def test_a_sound_file_passes_the_check_from_the_command_line(
    studio: Path, newer_app: ScratchProject
) -> None:
    newer_app.init_db(studio)  # verify also holds the file to its app's head
    verify = newer_app.inklink_db("verify", db_path=studio)
    assert verify.returncode == 0, verify
    assert "no damage found" in verify.stdout


def test_the_app_facing_background_check_calls_back(
    studio: Path, newer_app: ScratchProject
) -> None:
    code = (
        "import threading\n"
        "from data.db.session import check_database_in_background\n"
        "seen = []\n"
        "worker = check_database_in_background(seen.append)\n"
        "worker.join(120)\n"
        "print('CALLED', [r.status for r in seen], worker.daemon)\n"
    )
    result = newer_app.python(code, studio)
    assert "CALLED ['ok'] True" in result.stdout
