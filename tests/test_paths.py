"""Where the database lives: the four path rules of design.md section 3."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import DEV_DB, PROJECT_ROOT, run_python, subprocess_env

SHOW = "import data.db.session as s; print(s.DB_PATH); print(s.DATA_DIR); print(s.get_data_root())"


def _show(env: dict[str, str], cwd: Path = PROJECT_ROOT) -> list[str]:
    return run_python(SHOW, env=env, cwd=cwd).stdout.splitlines()


def test_db_path_variable_wins(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "studio.db"
    lines = _show(subprocess_env(target))
    assert lines == [str(target), str(target.parent), str(target.parent)]
    assert target.parent.is_dir(), "the seed makes the database's folder at import"
    assert not target.exists(), "importing the module must not create the database"


def test_frozen_app_uses_the_per_user_data_directory(tmp_path: Path) -> None:
    env = subprocess_env(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"))
    code = "import sys; sys.frozen = True\n" + SHOW
    lines = run_python(code, env=env).stdout.splitlines()
    expected = tmp_path / "xdg" / "InkLinkOS" / "inklink.db"
    assert lines[0] == str(expected)
    assert not expected.exists()


def test_checkout_computes_dev_db_at_the_project_root_without_creating_it(tmp_path: Path) -> None:
    existed = DEV_DB.exists()
    lines = _show(subprocess_env(), cwd=tmp_path)  # from any working directory
    assert lines[0] == str(DEV_DB)
    assert DEV_DB.exists() == existed


def test_installed_package_never_uses_its_own_folder(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    shutil.copytree(PROJECT_ROOT / "data", site / "data")
    env = subprocess_env(XDG_DATA_HOME=str(tmp_path / "xdg"))
    env["PYTHONPATH"] = str(site)
    lines = _show(env, cwd=tmp_path)
    assert lines[0] == str(tmp_path / "xdg" / "InkLinkOS" / "inklink.db")
    assert not lines[0].startswith(str(site))
