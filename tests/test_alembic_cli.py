"""The real ``alembic`` command, run as a deploy or a developer would."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from data.db.head import BASELINE_REVISION, HEAD_REVISION
from data.db.runner import alembic_config, migrations_location
from tests.conftest import PROJECT_ROOT, db_versions, run_alembic


def test_upgrade_check_downgrade_upgrade(db_path: Path) -> None:
    run_alembic("upgrade", "head", db_path=db_path)
    assert db_versions(db_path) == [HEAD_REVISION]
    check = run_alembic("check", db_path=db_path)
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    run_alembic("downgrade", "base", db_path=db_path)
    assert db_versions(db_path) == []
    run_alembic("upgrade", "head", db_path=db_path)
    assert db_versions(db_path) == [HEAD_REVISION]


def test_cli_honours_db_path_from_any_directory_with_an_explicit_ini(
    db_path: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "deploy"
    elsewhere.mkdir()
    run_alembic(
        "-c", str(PROJECT_ROOT / "alembic.ini"), "upgrade", "head", db_path=db_path, cwd=elsewhere
    )
    assert db_versions(db_path) == [HEAD_REVISION]
    assert not (elsewhere / "dev.db").exists()


def test_autogenerate_on_a_clean_tree_writes_no_revision(db_path: Path) -> None:
    versions = PROJECT_ROOT / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    run_alembic("upgrade", "head", db_path=db_path)
    result = run_alembic("revision", "--autogenerate", "-m", "should be empty", db_path=db_path)
    written = set(versions.glob("*.py")) - before
    for stray in written:
        stray.unlink()
    assert not written, f"autogenerate wrote {written}:\n{result.stderr}"
    assert "no revision written" in result.stderr


def test_single_head_and_the_recorded_history_match_the_scripts() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD_REVISION], (
        "migrations/manifest.json disagrees with the scripts: run "
        "`python -m data.db.revisions --update` (see README)"
    )
    assert script.get_base() == BASELINE_REVISION
    assert Path(migrations_location()) == PROJECT_ROOT / "migrations"


def test_env_runs_without_an_ini_file_on_a_handed_over_engine(db_path: Path) -> None:
    """How a program drives migrations: a Config built in code, an Engine in attributes."""
    from tests.conftest import run_python

    code = f"""
import logging
from alembic import command
from sqlalchemy import create_engine
from data.db.runner import alembic_config

app_log = logging.getLogger("frontdesk")
engine = create_engine("sqlite:///{db_path}")
config = alembic_config()
assert config.config_file_name is None
config.attributes["connection"] = engine
command.upgrade(config, "head")
print("DISABLED", app_log.disabled)
"""
    db_path.parent.mkdir(parents=True)
    result = run_python(code, db_path.with_name("unused.db"))
    assert "DISABLED False" in result.stdout
    assert db_versions(db_path) == [HEAD_REVISION]


def test_command_line_logging_leaves_the_apps_loggers_alone(db_path: Path) -> None:
    from tests.conftest import run_python

    code = f"""
import logging
from alembic import command
from alembic.config import Config

app_log = logging.getLogger("frontdesk")
command.upgrade(Config("{PROJECT_ROOT / "alembic.ini"}"), "head")
print("DISABLED", app_log.disabled)
"""
    result = run_python(code, db_path)
    assert "DISABLED False" in result.stdout
    assert db_versions(db_path) == [HEAD_REVISION]


def test_first_start_after_a_deploy_takes_the_fast_path(db_path: Path) -> None:
    """A file `alembic upgrade head` wrote is left in WAL mode, so the app need not load Alembic."""
    from tests.conftest import run_python

    run_alembic("upgrade", "head", db_path=db_path)
    assert db_path.read_bytes()[18] == 2, "the deploy left the file out of WAL mode"
    code = (
        "import sys\nfrom data.db.session import init_db\n"
        "print(init_db().action, 'alembic' in sys.modules)"
    )
    assert run_python(code, db_path).stdout.split() == ["current", "False"]
