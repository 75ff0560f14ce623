"""The data layer ships inside the app: a wheel installed elsewhere, and a PyInstaller binary.

Both run the first-run create-or-upgrade with nothing of the checkout on disk, and put the
database in the per-user data directory (design.md sections 3 and 7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine

from data.db.head import HEAD_REVISION
from data.db.runner import alembic_config, script_directory
from tests.conftest import PROJECT_ROOT, db_versions, legacy_database
from tests.file_kind import is_encrypted
from tests.scratch import query

pytestmark = pytest.mark.slow

CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
EXAMPLE_APP = PROJECT_ROOT / "examples" / "frontdesk_app.py"
# Variables that would point a child at the checkout, at another database or another Python.
_LEAKY = ("DB_PATH", "DATABASE_URL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
# A studio's own file (the per-user folder) is created encrypted: these tests give its key
# through INKLINK_DB_KEY, as a server would (a headless Linux has no keyring).
STUDIO_KEY = "5e" * 32


def encrypted_versions(path: Path) -> list[object]:
    assert is_encrypted(path), f"{path} is not encrypted"
    return [
        row[0] for row in query(path, "SELECT version_num FROM alembic_version", key=STUDIO_KEY)
    ]


def _run(args: list[str | Path], *, env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result.stdout


def _clean_env(**extra: str | Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _user_env(home: Path, **extra: str | Path) -> dict[str, str]:
    """An app user's environment whose home and data directory are scratch folders."""
    return _clean_env(HOME=home, XDG_DATA_HOME=home / "xdg-data", **extra)


def _files(root: Path) -> set[Path]:
    """Every file under ``root`` except bytecode caches, which Python may write at will."""
    return {
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _previous_revision() -> str | None:
    """The revision before head, to test a real upgrade once there is more than one."""
    down = script_directory().get_revision(HEAD_REVISION).down_revision  # type: ignore[union-attr]
    if isinstance(down, tuple):
        return down[0] if down else None
    return down


def _database_at(path: Path, revision: str) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()


# --- the wheel ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the repository as a release would be (isolated build)."""
    out = tmp_path_factory.mktemp("wheel")
    _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", out, PROJECT_ROOT],
        env=_clean_env(PIP_CONSTRAINT=CONSTRAINTS),  # pins the isolated build's hatchling too
        cwd=out,
    )
    (built,) = out.glob("inklinkos_data-*.whl")
    return built


class Venv:
    """A fresh virtual environment outside the repository (no system site-packages)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        scripts = root / ("Scripts" if sys.platform == "win32" else "bin")
        self.python = scripts / ("python.exe" if sys.platform == "win32" else "python")

    def pip_install(self, *args: str | Path) -> None:
        _run(
            [self.python, "-m", "pip", "install", "--quiet", "-c", CONSTRAINTS, *args],
            env=_clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
            cwd=self.root,
        )

    def site_packages(self) -> Path:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        return Path(_run([self.python, "-c", code], env=_clean_env(), cwd=self.root).strip())


@pytest.fixture(scope="module")
def app_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("app-venv")
    _run([sys.executable, "-m", "venv", root], env=_clean_env(), cwd=root)
    venv = Venv(root)
    venv.pip_install(wheel)
    return venv


def test_wheel_contains_every_migration_script(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"data/migrations/env.py", "data/migrations/script.py.mako"} | {
        f"data/migrations/versions/{p.name}"
        for p in (PROJECT_ROOT / "migrations" / "versions").glob("*.py")
    }
    assert len(expected) > 2, "no revision found in the checkout"
    assert expected <= names, f"the wheel lacks {sorted(expected - names)}"
    assert "data/_pyinstaller/hook-data.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pyinstaller40]" in text
    assert "hook-dirs = data._pyinstaller:get_hook_dirs" in text


# Run in the installed environment: where the code and scripts come from, and init_db() twice.
_INIT_TWICE = """
import json, sys
import data, data.db.session as s
from data.db.runner import migrations_location
steps = []
first = s.init_db(progress=lambda step: steps.append(step.revision))
second = s.init_db()
print(json.dumps({
    "package": data.__file__, "migrations": migrations_location(), "db_path": s.DB_PATH,
    "actions": [first.action, second.action], "from": first.from_revision,
    "to": second.to_revision, "steps": steps,
    "backup": str(first.backup_path) if first.backup_path else None,
}))
"""


def _init_twice(venv: Venv, env: dict[str, str], cwd: Path) -> dict[str, object]:
    report: dict[str, object] = json.loads(
        _run([venv.python, "-c", _INIT_TWICE], env=env, cwd=cwd).splitlines()[-1]
    )
    return report


def test_installed_wheel_creates_then_finds_current_in_the_user_data_dir(
    app_venv: Venv, tmp_path: Path
) -> None:
    site = app_venv.site_packages()
    before = _files(site)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    report = _init_twice(app_venv, _user_env(home, INKLINK_DB_KEY=STUDIO_KEY), cwd)

    expected = home / "xdg-data" / "InkLinkOS" / "inklink.db"
    assert Path(str(report["package"])).is_relative_to(site), "data was not imported from the wheel"
    assert Path(str(report["migrations"])) == site / "data" / "migrations"
    assert report["db_path"] == str(expected)
    assert report["actions"] == ["created", "current"]
    assert encrypted_versions(expected) == [HEAD_REVISION]
    assert list(cwd.iterdir()) == [], "init_db() wrote into the working directory"
    assert _files(site) == before, f"init_db() wrote into site-packages: {_files(site) - before}"


def test_installed_wheel_runs_the_migration_scripts(app_venv: Venv, tmp_path: Path) -> None:
    """Adopting a pre-Alembic database loads env.py and the revisions from site-packages."""
    site = app_venv.site_packages()
    before = _files(site)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    legacy = tmp_path / "studio" / "legacy.db"
    legacy.parent.mkdir()
    legacy_database(legacy)

    report = _init_twice(app_venv, _user_env(tmp_path / "home", DB_PATH=legacy), cwd)

    assert report["db_path"] == str(legacy)
    assert report["actions"] == ["adopted", "current"]
    assert db_versions(legacy) == [HEAD_REVISION]
    assert report["backup"] is not None and Path(str(report["backup"])).is_file()
    assert not (tmp_path / "home" / "xdg-data").exists(), "DB_PATH was not honoured"
    assert list(cwd.iterdir()) == []
    assert _files(site) == before


# --- the frozen app --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frozen_app(app_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example app as a one-file binary, built from the installed wheel.

    The command names no hook, data file or hidden import: the data layer's hook arrives
    through its ``pyinstaller40`` entry point, as it would for the studio's own app.
    """
    app_venv.pip_install("pyinstaller")
    build = tmp_path_factory.mktemp("pyinstaller")
    _run(
        [
            app_venv.python,
            "-m",
            "PyInstaller",
            "--onefile",
            "--noconfirm",
            "--clean",
            "--log-level=WARN",
            "--name=frontdesk",
            f"--workpath={build / 'work'}",
            f"--distpath={build / 'dist'}",
            f"--specpath={build / 'spec'}",
            EXAMPLE_APP,
        ],
        env=_clean_env(PYINSTALLER_CONFIG_DIR=build / "config"),
        cwd=build,
        timeout=900,
    )
    binary = build / "dist" / ("frontdesk.exe" if sys.platform == "win32" else "frontdesk")
    assert binary.is_file()
    return binary


def _run_app(binary: Path, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """The app's ``key: value`` lines (progress lines are collected under ``progress``)."""
    lines: dict[str, str] = {}
    for line in _run([binary], env=env, cwd=cwd, timeout=120).splitlines():
        key, _, value = line.partition(": ")
        lines[key] = value if key != "progress" else lines.get(key, "") + value + "\n"
    return lines


def test_frozen_app_creates_then_finds_current_in_the_user_data_dir(
    frozen_app: Path, tmp_path: Path
) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    expected = home / "xdg-data" / "InkLinkOS" / "inklink.db"

    first = _run_app(frozen_app, _user_env(home, INKLINK_DB_KEY=STUDIO_KEY), cwd)
    assert first["database"] == str(expected)
    assert first["outcome"] == "created"
    assert encrypted_versions(expected) == [HEAD_REVISION]
    # The scheduled backup runs inside the binary too: made, verified, encrypted.
    assert "backed up to" in first["scheduled backup"] and "backup warning" not in first
    (copy,) = (expected.parent / "backups").glob("inklink-*.db")
    assert encrypted_versions(copy) == [HEAD_REVISION]

    second = _run_app(frozen_app, _user_env(home, INKLINK_DB_KEY=STUDIO_KEY), cwd)
    assert second["scheduled backup"].endswith("no backup due")
    assert second["outcome"] == "current"
    assert second["revision"] == HEAD_REVISION
    assert second["clients"] == "0"
    assert list(cwd.iterdir()) == [], "the frozen app wrote into the working directory"


def test_frozen_app_honours_db_path_and_runs_the_bundled_migrations(
    frozen_app: Path, tmp_path: Path
) -> None:
    """Adoption (and an upgrade, once there are two revisions) needs env.py and the revisions
    inside the binary, and every module they import."""
    home = tmp_path / "home"
    cases = {"legacy.db": "adopted"}
    legacy_database(tmp_path / "legacy.db")
    previous = _previous_revision()
    if previous is not None:
        _database_at(tmp_path / "old.db", previous)
        cases["old.db"] = "upgraded"

    for name, action in cases.items():
        target = tmp_path / name
        first = _run_app(frozen_app, _user_env(home, DB_PATH=target), tmp_path)
        assert first["database"] == str(target)
        assert first["outcome"] == action, first
        assert Path(first["backup"]).is_file()
        assert db_versions(target) == [HEAD_REVISION]
        again = _run_app(frozen_app, _user_env(home, DB_PATH=target), tmp_path)
        assert again["outcome"] == "current"
    assert not (home / "xdg-data").exists(), "DB_PATH was not honoured"


def test_frozen_app_opens_an_encrypted_studio_with_its_key_and_refuses_it_without(
    frozen_app: Path, tmp_path: Path
) -> None:
    """A plain studio encrypted by ``python -m data.db encrypt`` (as a deploy would), then
    opened by the frozen app with INKLINK_DB_KEY; without the key it is refused, unchanged."""
    import hashlib

    home = tmp_path / "home"
    target = tmp_path / "studio.db"
    legacy_database(target)
    adopted = _run_app(frozen_app, _user_env(home, DB_PATH=target), tmp_path)
    assert adopted["outcome"] == "adopted"
    _run(
        [sys.executable, "-m", "data.db", "encrypt"],
        env=_clean_env(DB_PATH=target, INKLINK_DB_KEY=STUDIO_KEY, PYTHONPATH=PROJECT_ROOT),
        cwd=PROJECT_ROOT,
    )
    assert encrypted_versions(target) == [HEAD_REVISION]

    opened = _run_app(
        frozen_app, _user_env(home, DB_PATH=target, INKLINK_DB_KEY=STUDIO_KEY), tmp_path
    )
    assert opened["outcome"] == "current", opened
    assert opened["clients"] == "0"

    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    refused = subprocess.run(
        [str(frozen_app)],
        env=_user_env(home, DB_PATH=target, INKLINK_DB_KEY="00" * 32),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert "DatabaseKeyError" in refused.stderr and str(target) in refused.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
