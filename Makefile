# llmpool: every target creates/updates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
ARGS   ?=

.PHONY: demo test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make demo ARGS="--terminals 10 --requests 5": the main job, on the embedded simulated provider.
demo: $(STAMP)
	$(BIN)/llmpool demo $(ARGS)

## make test: ruff, mypy --strict on src/, then pytest (asyncio and trio).
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP)
	$(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage report --fail-under=90

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
