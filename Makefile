# llmpool: every target creates/updates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
ARGS   ?=

.PHONY: demo demo-cluster serve chat test lint typecheck pytest redis-server chromium bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make demo ARGS="--terminals 10 --requests 5": the main job, on the embedded simulated provider.
demo: $(STAMP)
	$(BIN)/llmpool demo $(ARGS)

## make demo-cluster ARGS="--duration 30": 3 processes, each its own ConnectionManager, one
## quota (120 RPM, 4 in flight) shared through a local redis-server (docs/demo.md).
demo-cluster: $(STAMP) redis-server
	$(BIN)/llmpool demo --instances 3 $(ARGS)

## make serve ARGS="--port 8001": the chat server (docs/server.md), on the simulated provider
## unless an endpoint is configured; Ctrl-C drains and stops it.
serve: $(STAMP)
	$(BIN)/llmpool serve $(ARGS)

## make chat ARGS="--url ws://127.0.0.1:8001 --session notes": the terminal client of
## `make serve` (docs/cli.md); /help lists its commands.
chat: $(STAMP)
	$(BIN)/llmpool chat $(ARGS)

## make test: ruff, mypy --strict on src/, pytest (asyncio and trio), the benchmarks' smoke run.
test: lint typecheck pytest bench-smoke

## Also the import layering (import-linter, [tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/lint-imports --no-cache

## Also checks tests/typing/ as a user would: --strict without the pydantic mypy plugin.
typecheck: $(STAMP)
	$(BIN)/mypy --strict src
	$(BIN)/mypy --config-file tests/typing/mypy.ini tests/typing

pytest: $(STAMP) redis-server chromium
	$(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage report --fail-under=90

## llmpool.redis's tests start a real redis-server (the Debian package) on a free loopback
## port, and fail when it is missing. As root (CI) it is installed here (apt-get update first
## when the package lists don't know it, and again if the install fails on stale lists);
## otherwise the message says what to install.
redis-server:
	@if command -v redis-server >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "redis-server is missing: apt-get install -y redis-server"; \
	  if ! apt-cache show redis-server >/dev/null 2>&1; then apt-get update; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server \
	    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; }; \
	else \
	  echo "llmpool.redis's tests and the cluster benchmark need redis-server on PATH: install the 'redis-server'" \
	    "package (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)" >&2; \
	  exit 1; \
	fi

## The chat page's browser tests (tests/server/test_browser.py) drive Debian's chromium
## (/usr/bin/chromium) with Playwright, and fail when it is missing. As root (CI) it is
## installed here, as redis-server is; Playwright's own browser download (`playwright
## install`) is never used.
chromium:
	@if [ -x /usr/bin/chromium ]; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "chromium is missing: apt-get install -y chromium"; \
	  if ! apt-cache show chromium >/dev/null 2>&1; then apt-get update; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
	    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; \
	else \
	  echo "the chat page's browser tests need /usr/bin/chromium: install the 'chromium'" \
	    "package (Debian/Ubuntu: sudo apt-get install chromium)" >&2; \
	  exit 1; \
	fi

## make bench ARGS="--quick": the benchmark suite (docs/performance.md). LiteLLM 1.109 declares
## certifi>=2026.10.19, missing from the package index here: its other dependencies are
## installed, then litellm with --no-deps; if that fails the LiteLLM column is skipped.
$(BENCH_STAMP): pyproject.toml benchmarks/litellm-deps.txt | $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	( $(BIN)/python -m pip install --quiet -r benchmarks/litellm-deps.txt \
	  && $(BIN)/python -m pip install --quiet --no-deps "litellm==1.109.*" ) \
	  || echo "litellm not installed: the benchmarks will skip the LiteLLM Router column"
	touch $(BENCH_STAMP)

## The cluster scenario runs a real redis-server (llmpool.testing.RedisServer), as the tests do.
bench: $(BENCH_STAMP) redis-server
	$(BIN)/python -m benchmarks $(ARGS)

## Seconds: checks the suite runs and writes well-formed results; times nothing.
bench-smoke: $(STAMP) redis-server
	$(BIN)/python -m benchmarks --smoke

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
