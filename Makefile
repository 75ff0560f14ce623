# Two commands on a fresh machine with Python 3.11+: `make db` and `make test`.
# The first use of either makes the virtual environment (.venv) from the pinned constraints.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: db db-reset test lint pytest bench revisions clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==25.3
	# PIP_CONSTRAINT also pins what the isolated build of this package installs (hatchling).
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: create or upgrade the development database, then say where it is.
db: $(STAMP)
	$(BIN)/alembic upgrade head
	$(BIN)/python -m data.db

## Start the development database again from nothing (it holds no studio's data).
db-reset: $(STAMP)
	rm -f dev.db dev.db-wal dev.db-shm dev.db-journal dev.db.lock
	$(MAKE) db

## The whole test suite: lint, types, then pytest (PostgreSQL tests included).
test: lint pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

## After editing a revision that is not released yet: record it again (alembic revision records new ones).
revisions: $(STAMP)
	$(BIN)/python -m data.authoring.revisions --update

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
