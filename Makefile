# Quick start: `make demo` (offline, on the built-in emulator) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Keep Prefect offline and quiet, and keep its state inside the project.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: install demo test test-ui bench emulator server worker deploy serve clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(PY) -m flows demo --dest ./archive

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .prefect archive .pytest_cache
