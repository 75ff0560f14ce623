"""The migration lint: ``python -m data.migration.revision_lint [files]`` reports revision mistakes.

Each finding prints as ``path:line: rule: message. Fix: ...``. The rules read the revision
files' source (nothing is imported or run), so the lint is fast and safe on any revision:

- ``standalone``: a revision imports ``data.models``; the models move on, a revision must not.
- ``acknowledged-drop``: a table or column is dropped and the module does not name it in
  ``acknowledged_drops``. A downgrade that drops a table its own upgrade created, or a column
  its own upgrade added, is the plain inverse and needs no acknowledgement.
- ``possible-rename``: an unacknowledged drop of column ``T.X`` next to an add of a column to
  the same table ``T`` in the same function, which is how autogenerate writes a rename; the
  drop loses every value. Reported instead of ``acknowledged-drop`` for that column.
- ``named-constraint``: a constraint or index without a name. Revisions do not get the models'
  naming convention, and SQLite can only drop or alter a constraint later by its name.
- ``check-before-column-change``: a column is renamed or dropped while a named CHECK still
  mentions it. The CHECKs in force are followed through the whole chain of revisions.
- ``downgrade``: ``downgrade()`` is missing or empty without an explicit ``raise``.
- ``batch-alter``: an ALTER other than adding a column or an index outside
  ``op.batch_alter_table`` (SQLite rebuilds the table for those).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ACKNOWLEDGEMENT = "acknowledged_drops"

# Constraint classes that take a ``name=``; ``ForeignKey`` names the constraint it makes.
_CONSTRAINT_CLASSES = frozenset(
    {"CheckConstraint", "UniqueConstraint", "ForeignKeyConstraint", "PrimaryKeyConstraint"}
)
# Operations whose first argument is the name of the constraint or index they make or drop.
_NAMED_OPERATIONS = frozenset(
    {
        "create_check_constraint",
        "create_unique_constraint",
        "create_foreign_key",
        "create_primary_key",
        "create_index",
        "drop_constraint",
        "drop_index",
    }
)
_NAME_KEYWORDS = frozenset({"constraint_name", "index_name", "name"})
# Operations SQLite cannot do with ALTER TABLE: outside batch mode they fail or half-apply.
_BATCH_ONLY = frozenset(
    {
        "alter_column",
        "drop_column",
        "create_check_constraint",
        "create_unique_constraint",
        "create_foreign_key",
        "create_primary_key",
        "drop_constraint",
    }
)
_DROP_TABLE_SQL = re.compile(r"\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?[\"'`\[]?(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One mistake, where it is, and what to do about it."""

    path: Path
    line: int
    rule: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.message}. Fix: {self.fix}"


@dataclass(frozen=True)
class Operation:
    """One ``op.<name>(...)`` or ``batch_op.<name>(...)`` call in source order."""

    name: str
    line: int
    call: ast.Call
    # The table a batch operation works on; None for ``op.`` calls.
    batch_table: str | None

    @property
    def in_batch(self) -> bool:
        return self.batch_table is not None

    def positional(self, index: int) -> str | None:
        """A literal string argument, or the name inside ``op.f("...")``."""
        if index >= len(self.call.args):
            return None
        return literal_name(self.call.args[index])

    def keyword(self, name: str) -> ast.expr | None:
        for keyword in self.call.keywords:
            if keyword.arg == name:
                return keyword.value
        return None

    def table(self) -> str | None:
        """The table for table-level operations: the batch's, or the first argument's."""
        if self.batch_table is not None:
            return self.batch_table
        return self.positional(0)

    def argument(self, index: int, keyword: str) -> str | None:
        """Argument ``index`` of the ``op.`` form; a batch form has no table argument first."""
        index = index - 1 if self.in_batch else index
        found = self.keyword(keyword)
        if found is not None:
            return literal_name(found)
        return self.positional(index)


@dataclass
class RevisionFile:
    """What the lint reads from one revision's source."""

    path: Path
    tree: ast.Module
    revision: str | None
    down_revisions: tuple[str, ...]
    acknowledged: frozenset[str]
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)

    def operations(self, function: str) -> list[Operation]:
        node = self.functions.get(function)
        return _OperationCollector.collect(node) if node is not None else []

    @property
    def downgrade_refuses(self) -> bool:
        """``downgrade()`` raises on purpose: the revision says its data cannot be undone."""
        node = self.functions.get("downgrade")
        return node is not None and any(isinstance(n, ast.Raise) for n in ast.walk(node))

    @property
    def downgrade_discards_data(self) -> bool:
        """``downgrade()`` drops something the revision acknowledges losing."""
        return any(_drop_target(op) in self.acknowledged for op in self.operations("downgrade"))


def literal_name(node: ast.expr) -> str | None:
    """``"x"`` or ``op.f("x")`` / ``batch_op.f("x")`` as ``x``; anything else is unknown."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "f"
        and len(node.args) == 1
    ):
        return literal_name(node.args[0])
    return None


def _is_none(node: ast.expr | None) -> bool:
    return node is None or (isinstance(node, ast.Constant) and node.value is None)


class _OperationCollector(ast.NodeVisitor):
    """Every operation call of one function, in source order, with its batch table."""

    def __init__(self) -> None:
        self.batches: dict[str, str | None] = {}
        self.found: list[Operation] = []

    @classmethod
    def collect(cls, node: ast.AST) -> list[Operation]:
        collector = cls()
        collector.visit(node)
        return collector.found

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            context = item.context_expr
            if (
                isinstance(context, ast.Call)
                and isinstance(context.func, ast.Attribute)
                and context.func.attr == "batch_alter_table"
                and isinstance(item.optional_vars, ast.Name)
            ):
                table = literal_name(context.args[0]) if context.args else None
                self.batches[item.optional_vars.id] = table if table is not None else "?"
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            if owner == "op" and func.attr != "f":
                self.found.append(Operation(func.attr, node.lineno, node, None))
            elif owner in self.batches and func.attr != "f":
                self.found.append(Operation(func.attr, node.lineno, node, self.batches[owner]))
        self.generic_visit(node)


def _string_tuple(node: ast.expr | None) -> tuple[str, ...]:
    if node is None:
        return ()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(
            e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        )
    return ()


def _acknowledged(node: ast.expr | None) -> frozenset[str]:
    if isinstance(node, ast.Dict):
        return frozenset(
            key.value
            for key in node.keys
            if isinstance(key, ast.Constant) and isinstance(key.value, str)
        )
    return frozenset(_string_tuple(node))


def parse_revision(path: Path) -> RevisionFile:
    """Read a revision file's identifiers, acknowledgements and functions from its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    values: dict[str, ast.expr | None] = {}
    functions: dict[str, ast.FunctionDef] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = statement.value
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            values[statement.target.id] = statement.value
        elif isinstance(statement, ast.FunctionDef):
            functions[statement.name] = statement
    revision = _string_tuple(values.get("revision"))
    return RevisionFile(
        path=path,
        tree=tree,
        revision=revision[0] if revision else None,
        down_revisions=_string_tuple(values.get("down_revision")),
        acknowledged=_acknowledged(values.get(ACKNOWLEDGEMENT)),
        functions=functions,
    )


# --- the rules -------------------------------------------------------------------------------


def _standalone(revision: RevisionFile) -> Iterable[Finding]:
    for node in ast.walk(revision.tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        if any(name == "data.models" or name.startswith("data.models.") for name in names):
            yield Finding(
                revision.path,
                node.lineno,
                "standalone",
                "the revision imports data.models, which will have moved on when a studio "
                "runs this revision",
                "spell the types here (sa.DateTime(timezone=True), sa.String(20)) and read or "
                'write rows with sa.table("clients", sa.column("id")) or op.execute(sa.text(...))',
            )


def _drop_target(operation: Operation) -> str | None:
    """``table`` or ``table.column`` for a drop; None for anything else."""
    if operation.name == "drop_table":
        return operation.argument(0, "table_name") or "?"
    if operation.name == "drop_column":
        table = operation.table() or "?"
        column = operation.argument(1, "column_name") or "?"
        return f"{table}.{column}"
    return None


def _dropped_by_sql(operation: Operation) -> list[str]:
    if operation.name != "execute" or not operation.call.args:
        return []
    sql = [
        node.value
        for node in ast.walk(operation.call.args[0])
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    return [match.group(1) for text in sql for match in _DROP_TABLE_SQL.finditer(text)]


def _column_added(operation: Operation) -> tuple[str, str, ast.Call] | None:
    """``(table, column, the sa.Column(...) call)`` for an ``add_column``; None otherwise."""
    if operation.name != "add_column":
        return None
    column = operation.keyword("column")
    if column is None and operation.call.args:
        column = operation.call.args[-1]
    if not isinstance(column, ast.Call) or not column.args:
        return None
    table = operation.batch_table or operation.argument(0, "table_name")
    name = literal_name(column.args[0])
    if table is None or name is None:
        return None
    return table, name, column


def _inverse_of_upgrade(revision: RevisionFile) -> set[str]:
    """What ``upgrade()`` creates: tables and ``table.column``s its downgrade may drop freely."""
    made: set[str] = set()
    for operation in revision.operations("upgrade"):
        if operation.name == "create_table":
            made.add(operation.argument(0, "table_name") or "?")
        added = _column_added(operation)
        if added is not None:
            made.add(f"{added[0]}.{added[1]}")
    return made


def _lost(revision: RevisionFile, function: str) -> list[tuple[Operation, str]]:
    """``function``'s drops that lose data the revision does not acknowledge, in source order."""
    inverse = _inverse_of_upgrade(revision) if function == "downgrade" else set()
    lost: list[tuple[Operation, str]] = []
    for operation in revision.operations(function):
        targets = _dropped_by_sql(operation)
        target = _drop_target(operation)
        if target is not None:
            targets.append(target)
        for dropped in targets:
            if dropped in revision.acknowledged:
                continue
            if dropped in inverse or dropped.partition(".")[0] in inverse:
                continue  # the inverse of this revision's own create_table or add_column
            lost.append((operation, dropped))
    return lost


def _added_types(revision: RevisionFile, function: str) -> dict[tuple[str, str], str]:
    """``{(table, column): "sa.Text()"}`` for the columns ``function`` adds, in source order."""
    types: dict[tuple[str, str], str] = {}
    for operation in revision.operations(function):
        found = _column_added(operation)
        if found is not None:
            table, column, call = found
            spelled = ast.unparse(call.args[1]) if len(call.args) > 1 else ""
            types.setdefault((table, column), spelled)
    return types


def _same_type(first: str, second: str) -> bool:
    """``sa.VARCHAR(length=40)`` (as reflected) and ``sa.String(length=40)`` are one type."""

    def key(spelled: str) -> str:
        bare = spelled.removeprefix("sa.").lower()
        return "string" + bare.removeprefix("varchar") if bare.startswith("varchar") else bare

    return bool(first) and key(first) == key(second)


@dataclass(frozen=True)
class _Rename:
    """An unacknowledged column drop, and the columns the same function adds to its table."""

    operation: Operation
    function: str
    table: str
    column: str
    # The columns added to the table, in source order.
    added: tuple[str, ...]
    # The same, the likeliest new name first: an added column of the dropped column's type.
    candidates: tuple[str, ...]
    same_type: bool
    # The dropped column's type as the revision spells it, for ``existing_type=``.
    existing_type: str


def _possible_renames(revision: RevisionFile, function: str) -> dict[str, _Rename]:
    """``{"table.column": _Rename}`` for each lost column whose table also gains a column."""
    added = _added_types(revision, function)
    # Autogenerate re-adds a dropped column, with its type, in the other function.
    restored = _added_types(revision, "downgrade" if function == "upgrade" else "upgrade")
    renames: dict[str, _Rename] = {}
    for operation, dropped in _lost(revision, function):
        table, _, column = dropped.partition(".")
        if operation.name != "drop_column" or "?" in (table, column):
            continue
        # Dropping and re-adding a column of the same name changes its type; it renames nothing.
        in_order = tuple(name for (on, name) in added if on == table and name != column)
        if not in_order:
            continue
        names = list(in_order)
        old_type = restored.get((table, column), "")
        alike = [name for name in names if _same_type(old_type, added[(table, name)])]
        if len(alike) == 1:
            names.remove(alike[0])
            names.insert(0, alike[0])
        existing_type = old_type or (added[(table, names[0])] if len(names) == 1 else "")
        renames[dropped] = _Rename(
            operation,
            function,
            table,
            column,
            in_order,
            tuple(names),
            same_type=len(alike) == 1,
            existing_type=existing_type or "<its type>",
        )
    return renames


def _acknowledged_drops(revision: RevisionFile) -> Iterable[Finding]:
    for function in ("upgrade", "downgrade"):
        renames = _possible_renames(revision, function)
        for operation, dropped in _lost(revision, function):
            if dropped in renames:
                continue  # one clearer finding from possible-rename
            what = "column" if "." in dropped else "table"
            yield Finding(
                revision.path,
                operation.line,
                "acknowledged-drop",
                f"{function}() drops {what} {dropped} and every value a studio keeps "
                "in it, and the revision does not acknowledge it",
                "if the loss is intended, declare at module level "
                f'{ACKNOWLEDGEMENT}: dict[str, str] = {{"{dropped}": "why losing it is '
                'safe"}; otherwise copy the data elsewhere first or keep the '
                f"{what}",
            )


def _renames(revision: RevisionFile) -> Iterable[Finding]:
    for function in ("upgrade", "downgrade"):
        for dropped, rename in _possible_renames(revision, function).items():
            table, column, names = rename.table, rename.column, rename.candidates
            added = ", ".join(f"{table}.{name}" for name in rename.added)
            if len(names) == 1:
                question, new_name = f"{table}.{names[0]}", names[0]
            elif rename.same_type:
                question, new_name = f"{table}.{names[0]}, the added column of its type", names[0]
            else:
                question = " or ".join(f"{table}.{name}" for name in names)
                new_name = f"<{' or '.join(names)}>"
            inverse = "downgrade" if function == "upgrade" else "upgrade"
            yield Finding(
                revision.path,
                rename.operation.line,
                "possible-rename",
                f"{function}() drops column {dropped} and adds {added}: did you rename "
                f"{dropped} to {question}? Autogenerate writes a rename as this drop and add, "
                "and the drop loses every value a studio keeps in the column (the added one "
                "starts empty)",
                f'replace the pair with batch_op.alter_column("{column}", '
                f'new_column_name="{new_name}", existing_type={rename.existing_type}) inside '
                f'`with op.batch_alter_table("{table}") as batch_op:`, and the inverse in '
                f"{inverse}(); if the drop is deliberate, declare at module level "
                f'{ACKNOWLEDGEMENT}: dict[str, str] = {{"{dropped}": "why losing it is safe"}}',
            )


def _named_constraints(revision: RevisionFile) -> Iterable[Finding]:
    fix = (
        'pass name=op.f("<kind>_<table>_<columns or name>"), following NAMING_CONVENTION in '
        "data/models/base.py (autogenerate does this when the model names its constraint)"
    )
    for node in ast.walk(revision.tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        keywords = {k.arg: k.value for k in node.keywords}
        if called in _CONSTRAINT_CLASSES or called == "ForeignKey":
            if _is_none(keywords.get("name")):
                yield Finding(
                    revision.path,
                    node.lineno,
                    "named-constraint",
                    f"{called}(...) has no name, so no later revision can drop or change it "
                    "on SQLite",
                    fix,
                )
        elif called == "Column":
            unique = keywords.get("unique")
            if isinstance(unique, ast.Constant) and unique.value is True:
                yield Finding(
                    revision.path,
                    node.lineno,
                    "named-constraint",
                    "Column(..., unique=True) makes an unnamed UNIQUE constraint",
                    "declare sa.UniqueConstraint(<column>, "
                    'name=op.f("uq_<table>_<column>")) on the table instead',
                )
        elif (
            called in _NAMED_OPERATIONS
            and isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
        ):
            named = [keywords[k] for k in _NAME_KEYWORDS if k in keywords]
            first = node.args[0] if node.args else (named[0] if named else None)
            if _is_none(first):
                yield Finding(
                    revision.path,
                    node.lineno,
                    "named-constraint",
                    f"{func.value.id}.{called}() is given no name",
                    fix,
                )


def _batch_alters(revision: RevisionFile) -> Iterable[Finding]:
    for function in revision.functions:
        for operation in revision.operations(function):
            if operation.name in _BATCH_ONLY and not operation.in_batch:
                table = operation.table() or "<table>"
                yield Finding(
                    revision.path,
                    operation.line,
                    "batch-alter",
                    f"op.{operation.name}() outside batch mode: SQLite cannot ALTER a table "
                    "this way",
                    f'move it into `with op.batch_alter_table("{table}") as batch_op:` and '
                    f"call batch_op.{operation.name}() without the table argument",
                )


def _does_nothing(function: ast.FunctionDef) -> bool:
    """Only a docstring, ``pass`` or bare constants."""
    return all(
        isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        for s in function.body
    )


def _downgrade(revision: RevisionFile) -> Iterable[Finding]:
    fix = (
        "write the steps that undo upgrade(), or refuse on purpose: "
        'raise NotImplementedError("<why this revision cannot be undone>")'
    )
    node = revision.functions.get("downgrade")
    if node is None:
        line = (revision.tree.body[-1].end_lineno or 1) if revision.tree.body else 1
        yield Finding(revision.path, line, "downgrade", "the revision has no downgrade()", fix)
        return
    # An empty upgrade() (a revision just started by hand) is undone by an empty downgrade().
    upgrade = revision.functions.get("upgrade")
    if _does_nothing(node) and (upgrade is None or not _does_nothing(upgrade)):
        yield Finding(
            revision.path, node.lineno, "downgrade", "downgrade() is empty: it does nothing", fix
        )


# --- CHECK constraints followed through the chain --------------------------------------------

Checks = dict[str, dict[str, str]]  # {table: {check name: its SQL}}


def _check_sql(node: ast.expr) -> str:
    """The text of a CHECK's condition; unknown expressions count as mentioning anything."""
    strings = [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    return " ".join(strings) if strings else "*"


def _mentions(sql: str, column: str) -> bool:
    return sql == "*" or re.search(rf"\b{re.escape(column)}\b", sql, re.IGNORECASE) is not None


def _follow_checks(
    revision: RevisionFile, function: str, checks: Checks, report: bool
) -> Iterable[Finding]:
    """Apply ``function``'s operations to ``checks`` in order; report column changes they hit."""
    for operation in revision.operations(function):
        name = operation.name
        table: str | None
        check: str | None
        if name == "create_table":
            table = operation.positional(0) or "?"
            for element in operation.call.args[1:]:
                if (
                    isinstance(element, ast.Call)
                    and getattr(element.func, "attr", getattr(element.func, "id", None))
                    == "CheckConstraint"
                    and element.args
                ):
                    keywords = {k.arg: k.value for k in element.keywords}
                    check = literal_name(keywords["name"]) if "name" in keywords else None
                    if check is not None:
                        checks.setdefault(table, {})[check] = _check_sql(element.args[0])
        elif name == "create_check_constraint":
            check = operation.positional(0)
            table = operation.table() if operation.in_batch else operation.positional(1)
            condition = operation.call.args[1 if operation.in_batch else 2 :][:1]
            condition_node = operation.keyword("condition")
            if condition_node is None and condition:
                condition_node = condition[0]
            if check is not None and table is not None and condition_node is not None:
                checks.setdefault(table, {})[check] = _check_sql(condition_node)
        elif name == "drop_constraint":
            check = operation.positional(0)
            table = operation.table() if operation.in_batch else operation.positional(1)
            if table is not None and check is not None:
                checks.get(table, {}).pop(check, None)
        elif name == "drop_table":
            checks.pop(operation.argument(0, "table_name") or "?", None)
        elif name == "rename_table":
            old, new = operation.positional(0), operation.positional(1)
            if old is not None and new is not None and old in checks:
                checks[new] = checks.pop(old)
        elif name in ("drop_column", "alter_column"):
            renamed = operation.keyword("new_column_name")
            if name == "alter_column" and _is_none(renamed):
                continue
            table = operation.table() or "?"
            column = operation.argument(1, "column_name") or "?"
            action = "drops" if name == "drop_column" else "renames"
            for check_name, sql in sorted(checks.get(table, {}).items()):
                if report and _mentions(sql, column):
                    yield Finding(
                        revision.path,
                        operation.line,
                        "check-before-column-change",
                        f"{function}() {action} column {table}.{column} while CHECK {check_name} "
                        "mentions it; the table rebuild would copy a CHECK on a column that "
                        "is gone",
                        f'first batch_op.drop_constraint("{check_name}", type_="check"), then '
                        f"recreate it afterwards with batch_op.create_check_constraint("
                        f'"{check_name}", <condition on the new column>) if it still applies',
                    )


def _chain(revisions: Sequence[RevisionFile]) -> list[RevisionFile]:
    """The revisions ordered so that each comes after every revision it revises."""
    by_id = {r.revision: r for r in revisions if r.revision is not None}
    ordered: list[RevisionFile] = []
    seen: set[str] = set()

    def visit(revision: RevisionFile) -> None:
        if revision.revision in seen:
            return
        seen.add(revision.revision or "")
        for parent in revision.down_revisions:
            if parent in by_id:
                visit(by_id[parent])
        ordered.append(revision)

    for revision in sorted(revisions, key=lambda r: r.path.name):
        visit(revision)
    return ordered


def _check_rule(revisions: Sequence[RevisionFile], report: set[Path]) -> list[Finding]:
    after: dict[str, Checks] = {}
    findings: list[Finding] = []
    for revision in _chain(revisions):
        checks: Checks = {}
        for parent in revision.down_revisions:
            for table, named in after.get(parent, {}).items():
                checks.setdefault(table, {}).update(named)
        reporting = revision.path in report
        findings.extend(_follow_checks(revision, "upgrade", checks, reporting))
        upgraded = {table: dict(named) for table, named in checks.items()}
        findings.extend(_follow_checks(revision, "downgrade", checks, reporting))
        after[revision.revision or str(revision.path)] = upgraded
    return findings


# --- entry points ----------------------------------------------------------------------------

_PER_FILE_RULES = (
    _standalone,
    _acknowledged_drops,
    _renames,
    _named_constraints,
    _batch_alters,
    _downgrade,
)


def revision_files(versions: Path) -> list[Path]:
    return sorted(p for p in versions.glob("*.py") if not p.name.startswith("_"))


def lint_files(paths: Iterable[Path]) -> list[Finding]:
    """Lint ``paths``; CHECKs are followed through every revision in each file's directory."""
    wanted = [Path(p) for p in paths]
    findings: list[Finding] = []
    for directory in sorted({p.resolve().parent for p in wanted}):
        report = {p.resolve() for p in wanted if p.resolve().parent == directory}
        parsed: list[RevisionFile] = []
        for path in revision_files(directory) if directory.is_dir() else []:
            try:
                parsed.append(parse_revision(path.resolve()))
            except SyntaxError as exc:
                if path.resolve() in report:
                    findings.append(
                        Finding(
                            path, exc.lineno or 1, "syntax", str(exc.msg), "make it valid Python"
                        )
                    )
        for revision in parsed:
            if revision.path in report:
                for rule in _PER_FILE_RULES:
                    findings.extend(rule(revision))
        findings.extend(_check_rule(parsed, report))
    shown = {p.resolve(): p for p in wanted}
    relabelled = [
        Finding(shown.get(f.path, f.path), f.line, f.rule, f.message, f.fix) for f in findings
    ]
    return sorted(relabelled, key=lambda f: (str(f.path), f.line, f.rule))


def lint_directory(versions: Path) -> list[Finding]:
    """Lint every revision in a ``versions`` directory."""
    return lint_files(revision_files(versions))


def default_versions() -> Path:
    from data.db.head import migrations_dir

    return migrations_dir() / "versions"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.migration.revision_lint",
        description="Check migration revisions for mistakes that would hurt a studio.",
    )
    parser.add_argument(
        "files", nargs="*", type=Path, help="revision files (default: every revision)"
    )
    arguments = parser.parse_args(argv)
    files: list[Path] = arguments.files or revision_files(default_versions())
    findings = lint_files(files)
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} problem(s) in {len(files)} revision file(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
