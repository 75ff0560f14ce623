"""The layout is the architecture: imports go one way, with no circles.

``python -m tests.test_architecture`` prints the import graph of ``data`` (module -> what it
imports, lazily imported ones marked), the same graph these tests check.

The layers, from the top: the app-facing part (``data.db``: the seed's session module and
what ``init_db()`` needs at start), the migration engine (``data.migration.runner``), its
backends (``data.migration.backends``), and the shared helpers below them.
``data.db.errors``, ``outcome``, ``head``, ``policy`` and ``file_modes`` are the vocabulary
every layer shares: they import nothing above them. The developer tools (``data.authoring``) stand beside the stack: they may use it,
and nothing the app runs imports them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "data"

APP_FACING = {"data.db.session", "data.db.fast_path", "data.db.__main__"}
VOCABULARY = {
    "data.db.errors",
    "data.db.outcome",
    "data.db.head",
    "data.db.policy",
    "data.db.file_modes",
}
ENGINE = {"data.migration.runner"}
# Import paths kept for existing code: each only re-exports from where the code now lives.
DEPRECATED_PATHS = {
    f"data.db.{name}"
    for name in (
        "runner",
        "server",
        "backup",
        "sqlite_file",
        "schema",
        "pg_schema",
        "rebuild",
        "revision_lint",
        "revisions",
        "er_diagram",
    )
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str]) -> dict[str, bool]:
    """The project modules ``path`` imports, each mapped to True when imported lazily."""
    found: dict[str, bool] = {}

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            return  # annotations only: never imported at run time
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            names = []
        for name in names:
            if name in known:
                found[name] = found.get(name, True) and lazy
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return found


def import_graph() -> dict[str, dict[str, bool]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py") if "_pyinstaller" not in p.parts}
    known = set(paths)
    graph = {name: imports_of(path, known) for name, path in sorted(paths.items())}
    # `from data.db import errors` names the package and the module: keep the module.
    for edges in graph.values():
        for name in [n for n in edges if any(other.startswith(n + ".") for other in edges)]:
            del edges[name]
        edges.pop("data", None)
    return graph


def cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in graph.get(node, {}):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                walk(target)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            walk(node)
    return found


GRAPH = import_graph()


def test_no_module_imports_itself_back_lazily_or_not() -> None:
    # Lazy imports count: an import moved into a function to dodge a circle is still one.
    assert cycles(GRAPH) == []


def test_cycle_detection_sees_a_circle() -> None:
    assert cycles({"a": {"b": False}, "b": {"c": True}, "c": {"a": False}}) == [
        ["a", "b", "c", "a"]
    ]


def _offenders(modules: set[str], forbidden: set[str] | str) -> list[str]:
    def banned(target: str) -> bool:
        if isinstance(forbidden, str):
            return target == forbidden or target.startswith(forbidden + ".")
        return target in forbidden

    return [
        f"{module} imports {target}"
        for module in sorted(modules)
        for target in GRAPH[module]
        if banned(target)
    ]


def _under(prefix: str) -> set[str]:
    return {m for m in GRAPH if m == prefix or m.startswith(prefix + ".")}


def test_the_vocabulary_imports_nothing_above_it() -> None:
    allowed = VOCABULARY | {"data"}
    assert [
        f"{module} imports {target}"
        for module in sorted(VOCABULARY)
        for target in GRAPH[module]
        if target not in allowed
    ] == []


def test_the_engine_never_imports_the_app_facing_part_or_the_tools() -> None:
    engine = _under("data.migration")
    assert _offenders(engine, APP_FACING) == []
    assert _offenders(engine, "data.authoring") == []
    assert _offenders(engine, DEPRECATED_PATHS) == []


def test_backends_and_helpers_never_import_the_runner() -> None:
    below = _under("data.migration") - ENGINE
    assert _offenders(below, ENGINE) == []
    helpers = below - _under("data.migration.backends")
    assert _offenders(helpers, "data.migration.backends") == []


def test_the_runner_has_no_branch_per_database() -> None:
    source = (PACKAGE / "migration" / "runner.py").read_text(encoding="utf-8")
    for dialect in ("sqlite", "postgresql"):
        assert f'"{dialect}"' not in source, f"the runner names {dialect}: ask a backend instead"


def test_the_app_start_reaches_the_engine_only_lazily() -> None:
    eager = {t for t, lazy in GRAPH["data.db.session"].items() if not lazy}
    assert not {t for t in eager if t.startswith(("data.migration", "data.authoring"))}, eager


def test_nothing_the_app_runs_imports_the_developer_tools() -> None:
    users = {m for m in GRAPH if not m.startswith("data.authoring")} - DEPRECATED_PATHS
    assert _offenders(users, "data.authoring") == []


def test_one_place_opens_a_raw_sqlite_connection() -> None:
    opener = PACKAGE / "migration" / "raw_sqlite.py"
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in PACKAGE.rglob("*.py")
        if path != opener and "sqlite3.connect(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


@pytest.mark.parametrize("module", sorted(DEPRECATED_PATHS))
def test_a_deprecated_path_only_re_exports(module: str) -> None:
    assert not [t for t in GRAPH[module] if t in DEPRECATED_PATHS], module


if __name__ == "__main__":
    for module, edges in GRAPH.items():
        shown = ", ".join(f"{t}{' (lazy)' if lazy else ''}" for t, lazy in sorted(edges.items()))
        print(f"{module} -> {shown or '-'}")
    sys.exit(1 if cycles(GRAPH) else 0)
