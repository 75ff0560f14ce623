"""The README's ER diagram: generated from the models, and failing the suite when it is stale."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from data.db.er_diagram import (
    END_MARKER,
    START_MARKER,
    DiagramError,
    fenced,
    readme_block,
    render,
    with_block,
)
from data.models import Base
from tests.conftest import PROJECT_ROOT, subprocess_env

README = PROJECT_ROOT / "README.md"
WRITE = "python -m data.authoring.er_diagram --write README.md"


def entities(diagram: str) -> dict[str, list[str]]:
    """Entity name -> its attribute lines, read back from the diagram's text."""
    found: dict[str, list[str]] = {}
    for name, body in re.findall(r"^    (\w+) \{\n(.*?)^    \}$", diagram, re.M | re.S):
        found[name] = [line.strip() for line in body.splitlines()]
    return found


def relationships(diagram: str) -> list[str]:
    return [line.strip() for line in diagram.splitlines() if "--" in line]


def test_the_readme_diagram_matches_the_models() -> None:
    block = readme_block(README.read_text(encoding="utf-8"))
    assert block == fenced(Base.metadata), (
        f"README.md's ER diagram no longer matches data/models: run `{WRITE}` and commit README.md"
    )


def small_metadata() -> MetaData:
    metadata = MetaData()
    Table(
        "studios",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("code", String(10), nullable=False, unique=True),
        Column("name", String(100)),
    )
    Table(
        "artists",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("studio_id", ForeignKey("studios.id"), nullable=False),
        Column("mentor_id", ForeignKey("artists.id"), nullable=True),
    )
    return metadata


def test_entities_keys_and_cardinalities_of_a_small_schema() -> None:
    diagram = render(small_metadata())

    assert diagram.startswith("erDiagram\n")
    assert entities(diagram) == {
        "artists": [
            "integer id PK",
            'integer studio_id FK "not null"',
            "integer mentor_id FK",
        ],
        "studios": [
            "integer id PK",
            'string code UK "not null"',
            "string name",
        ],
    }
    # Tables sorted by name, whatever order they were declared in.
    assert diagram.index("    artists {") < diagram.index("    studios {")
    # Parent first: a NOT NULL key has exactly one parent, a nullable one zero or one.
    assert relationships(diagram) == [
        'artists |o--o{ artists : "mentor_id"',
        'studios ||--o{ artists : "studio_id"',
    ]


def test_a_composite_key_is_one_line_and_a_unique_key_is_one_to_one() -> None:
    metadata = small_metadata()
    Table(
        "contracts",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("artist_id", Integer, nullable=False),
        Column("studio_id", Integer, nullable=False),
        ForeignKeyConstraint(["artist_id", "studio_id"], ["artists.id", "artists.studio_id"]),
        UniqueConstraint("artist_id", "studio_id"),
    )
    diagram = render(metadata)

    assert 'artists ||--o| contracts : "artist_id, studio_id"' in relationships(diagram)
    # A composite unique constraint makes neither column unique on its own.
    assert entities(diagram)["contracts"][1] == 'integer artist_id FK "not null"'


def test_the_models_enum_and_utc_types_show_what_they_store() -> None:
    attributes = entities(render(Base.metadata))["tattoo_sessions"]

    assert 'datetime starts_at "not null"' in attributes
    assert (
        'string status "not null, one of: scheduled, in_progress, completed, cancelled, no_show"'
        in attributes
    )


def test_every_table_and_column_of_the_models_is_drawn() -> None:
    drawn = entities(render(Base.metadata))

    assert set(drawn) == set(Base.metadata.tables)
    for table in Base.metadata.tables.values():
        names = [line.split()[1] for line in drawn[table.name]]
        assert names == [column.name for column in table.columns], table.name
    foreign_keys = {
        (constraint.table.name, tuple(constraint.column_keys))
        for table in Base.metadata.tables.values()
        for constraint in table.foreign_key_constraints
    }
    labels = {
        (line.split()[2], tuple(line.split(" : ")[1].strip('"').split(", ")))
        for line in relationships(render(Base.metadata))
    }
    assert labels == foreign_keys


def test_the_output_is_the_same_on_every_run() -> None:
    assert render(Base.metadata) == render(Base.metadata)
    assert render(small_metadata()) == render(small_metadata())


@pytest.mark.parametrize(
    ("table", "column"), [("my-table", "id"), ("end", "id"), ("artists", "pk")]
)
def test_a_name_mermaid_cannot_draw_is_refused(table: str, column: str) -> None:
    metadata = MetaData()
    Table(table, metadata, Column(column, Integer, primary_key=True))

    with pytest.raises(DiagramError, match=f"table '{table}'"):
        render(metadata)


def test_write_replaces_only_the_block_and_check_says_what_to_run(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before = "# Title\r\n\r\nintro\r\n"
    after = "\n## Next\n\nother people's text\n"
    readme.write_bytes(f"{before}{START_MARKER}\nstale\n{END_MARKER}{after}".encode())

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "data.db.er_diagram", *args],
            env=subprocess_env(tmp_path / "unused.db"),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    stale = command("--check", str(readme))
    assert stale.returncode == 1
    assert stale.stderr.strip().splitlines() == [
        f"{readme}: the ER diagram differs from the models; "
        f"run python -m data.authoring.er_diagram --write {readme}"
    ]

    assert command("--write", str(readme)).returncode == 0
    assert readme.read_bytes().decode() == (
        f"{before}{START_MARKER}\n{fenced(Base.metadata)}{END_MARKER}{after}"
    )
    assert command("--check", str(readme)).returncode == 0

    printed = command()
    assert printed.returncode == 0
    assert printed.stdout == fenced(Base.metadata)


def test_missing_markers_are_reported_with_the_fix() -> None:
    with pytest.raises(DiagramError, match=r"expected one .* found 0 and 0.*--write README\.md"):
        readme_block("# no diagram here\n")
    with pytest.raises(DiagramError, match="found 1 and 0"):
        with_block(f"{START_MARKER}\n", "x")
