# Quick start: `make demo` (offline, on the built-in emulator) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Keep Prefect offline and quiet. Its state stays in the user's PREFECT_HOME (~/.prefect by
# default), so `make demo`, `make server` and later `python -m flows` runs share one local server
# and one database, as a plain `prefect worker start` does.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: install template demo test test-fast lint test-ui bench emulator server worker deploy serve clean

install: $(STAMP) template

# uv resolves and installs in about 15 s where pip took 70 s (the same versions; pyproject's
# floors keep the two resolvers agreeing). pip installs uv into the venv; if that or uv fails,
# pip installs the project itself. --compile-bytecode, as pip does: where PYTHONDONTWRITEBYTECODE
# is set (as on this project's machines) nothing else writes .pyc files, and every process
# would compile Prefect from source (importing it: 2.6 s instead of 1 s). `make template`
# (part of install) migrates a Prefect database once per Prefect version (user cache): a new
# PREFECT_HOME's first server start copies it, 5 s instead of 14.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	( $(PY) -m pip install -q --disable-pip-version-check uv && \
	  $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -e '.[dev]' ) || \
	  $(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m compileall -q -j 0 archiver cli flows tasks emulator deployments benchmarks tests >/dev/null
	touch $(STAMP)

# Once per Prefect version (0.3 s when done): cli/database_template.py.
template: $(STAMP)
	$(PY) -m flows server prepare || echo "note: no Prefect database template; a new PREFECT_HOME's first server start migrates its own (about 10 s more)"

DEMO_DEST ?= ./archive
demo: install
	$(PY) -m flows demo --dest $(DEMO_DEST)

# Five workers on two cores: most tests wait on servers and subprocesses, not on the CPU (the
# suite used 1.3 cores on average with three; four took it from 5:35 to 4:52 on 2026-12-03, and
# five from 7:14 to 6:26 on 2026-12-08, 720 tests, back to back).
# A file runs whole on one worker (its module fixtures are shared); each worker has its own
# PREFECT_HOME and free ports. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 5
# The venv, Chromium (apt) and Azurite (npm) install side by side; the lint and the database
# template run as soon as the venv is there, while npm may still be at work: on a fresh machine
# about a minute in all.
test:
	$(MAKE) --no-print-directory -j4 lint template chromium azurite
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The inner loop: everything that needs no server but the emulator (no Prefect API, S3, GCS,
# Azure, browser)
# and spawns no fleet of processes (marked slow).
test-fast: install lint
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not prefect and not server and not s3 and not cloud and not ui and not slow"

# The whole tree, as a bare `ruff format --check .` sees it: since ruff 0.16 that includes the
# Python code blocks of README.md and docs/*.md. Ruff's default excludes and .gitignore keep
# .venv and tests/azurite/node_modules out.
lint: $(STAMP)  ## ruff format, ruff check and mypy (also part of make test and test-fast)
	$(VENV)/bin/ruff format --check -q .
	$(VENV)/bin/ruff check -q .
	$(VENV)/bin/mypy

# Benchmarks (not tests): naive vs raw asyncio vs the batch pipeline, on the emulator, with its
# own `prefect server`; figures in bench-results/. Shrink: make bench BENCH_ARGS="--k 20".
BENCH_ARGS ?=
bench: install
	$(PY) -m benchmarks $(BENCH_ARGS)
	$(PY) -m benchmarks adhoc  # replicate client vs `python -m flows run`, ad hoc
	$(PY) -m benchmarks webhooks $(BENCH_WEBHOOKS_ARGS)  # the receiver's soak (docs/webhooks.md)

# --- Deployments, schedules and scale-out (docs/deployments.md) --------------------------------
# make server | pool | secret | deploy | worker (one per machine or terminal) | serve | test-ui
PREFECT := $(VENV)/bin/prefect
PREFECT_HOST ?= 127.0.0.1
PREFECT_PORT ?= 4200
POOL ?= archiver
WORKER_NAME ?=
WORKER_LIMIT ?= 4
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: pool secret chromium azurite

# Every Prefect command talks to this server unless PREFECT_API_URL says otherwise.
server pool secret deploy worker serve: export PREFECT_API_URL ?= http://$(PREFECT_HOST):$(PREFECT_PORT)/api

server: install  ## API + UI; SQLite in PREFECT_HOME (~/.prefect), or PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...
	PREFECT_SERVER_API_HOST=$(PREFECT_HOST) PREFECT_SERVER_API_PORT=$(PREFECT_PORT) $(PREFECT) server start

pool: install  ## the process work pool the deployments use
	$(PREFECT) work-pool create $(POOL) --type process --overwrite

secret: install  ## REPLICATE_API_TOKEN -> the Prefect Secret block the deployments name
	$(PY) -m deployments secret

deploy: install  ## every deployment in prefect.yaml
	$(PREFECT) --no-prompt deploy --all

worker: install  ## a process worker: start one per machine (or several); they share the server
	$(PREFECT) worker start --pool $(POOL) --type process $(if $(WORKER_NAME),--name $(WORKER_NAME)) $(if $(WORKER_LIMIT),--limit $(WORKER_LIMIT))

serve: install  ## single machine without pool or worker: serve the same deployments from one process
	$(PY) -m deployments serve

# Azurite (Azure Blob emulator) for tests/test_storage_azure.py, from the npm registry, at the
# versions tests/azurite/package-lock.json pins, into tests/azurite/node_modules (once).
AZURITE := tests/azurite/node_modules/.bin/azurite-blob
azurite: $(AZURITE)
$(AZURITE): tests/azurite/package.json tests/azurite/package-lock.json
	npm ci --prefix tests/azurite --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

test-ui: install chromium  ## the browser test only
	$(PY) -m pytest -q -m ui tests/test_ui.py

chromium:  ## Debian's chromium for the UI test (Playwright never downloads browsers)
	@test -x $(CHROMIUM) || ( $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ) || \
	  echo "warning: could not install chromium; tests/test_ui.py will be skipped"

clean:
	rm -rf $(VENV) archive .pytest_cache
