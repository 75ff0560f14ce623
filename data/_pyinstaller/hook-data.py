# ruff: noqa: N999  (PyInstaller finds a hook by its file name: hook-<module>.py)
"""PyInstaller hook for ``data``: ship the migrations as source files, and what they import.

Alembic loads ``env.py`` and the revisions by path at run time, so PyInstaller's analysis
never sees them: their sources go in as data files at ``data/migrations`` (where
``data.db.head.migrations_dir()`` looks), and the modules they import, which
nothing else may import, become hidden imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

# PyInstaller ships no type information.
from PyInstaller import isolated  # type: ignore[import-untyped]
from PyInstaller.utils.hooks import (  # type: ignore[import-untyped]
    collect_submodules,
    copy_metadata,
)

# Where the runner looks for the scripts inside the package (a frozen app's _MEIPASS).
BUNDLED_MIGRATIONS = "data/migrations"
SCRIPT_SUFFIXES = (".py", ".mako", ".json")


@isolated.decorate  # type: ignore[untyped-decorator]
def _migrations_location() -> str:
    """The scripts the build environment's data layer uses (installed or a checkout)."""
    from data.db.head import migrations_dir

    return str(migrations_dir())


def _scripts(root: Path) -> list[Path]:
    """``env.py``, ``script.py.mako``, the manifest, every revision and its exported schema."""
    found = [p for p in root.iterdir() if p.is_file() and p.suffix in SCRIPT_SUFFIXES]
    found += sorted((root / "versions").glob("*.py"))
    found += sorted((root / "schemas").glob("*.json"))
    return found


def _imported_modules(script: Path) -> set[str]:
    """Every module a script imports, at any depth (``from a import b`` may name a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"), str(script))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from data.authoring import er_diagram` may name a module, not an attribute;
            # an unknown name is skipped by PyInstaller with a warning, never an error.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


_root = Path(_migrations_location())
_sources = _scripts(_root)

datas = [
    (str(path), str(Path(BUNDLED_MIGRATIONS, path.parent.relative_to(_root)))) for path in _sources
] + copy_metadata("keyring")  # keyring lists even its own backends as entry points

hiddenimports = sorted(
    set().union(*(_imported_modules(p) for p in _sources if p.suffix == ".py"))
    # env.py's `from alembic import context` and the revisions' `op` are module proxies
    # filled in at run time; take the whole of Alembic's runtime rather than guess.
    | set(collect_submodules("alembic", filter=lambda name: not name.startswith("alembic.testing")))
    # The runner finds a database's backend module by its dialect's name.
    | set(collect_submodules("data.migration.backends"))
    # The dialect a sqlite:/// URL names is imported by name when the engine is made; an
    # encrypted file's dialect (ours, over SQLAlchemy's pysqlcipher) and its driver too.
    | {
        "sqlalchemy.dialects.sqlite.pysqlite",
        "sqlalchemy.dialects.sqlite.pysqlcipher",
        "data.db.cipher",
        "sqlcipher3",
        "sqlcipher3.dbapi2",
        "logging.config",
    }
    # keyring finds its backends through entry points: ship them all (the OS picks one).
    | set(collect_submodules("keyring.backends"))
)
