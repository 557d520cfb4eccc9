# bqx: one command to run the embedded pipeline, one to run the tests.
#   make demo   - create .venv, install, run the whole pipeline on simulated bars
#   make test   - same setup, start/check PostgreSQL and Redis, run pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
# Extra pip arguments for torch, e.g. the CPU wheel index of PyTorch on a machine
# without a local wheel (otherwise pip may pull a multi-GB CUDA build).
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.bqx-installed
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: setup demo test services secrets-scan bench lock clean help

help:
	@echo "make demo   # set up .venv and run the embedded pipeline end to end"
	@echo "make test   # set up .venv, start/check PostgreSQL and Redis, run pytest"
	@echo "make bench  # run the benchmarks (prints measured figures)"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/bqx demo

services:
	bash scripts/services.sh

# Fails on any credential-looking string not in .secrets.baseline (exit 3 only
# means the hook refreshed line numbers in the baseline: no new finding).
secrets-scan: setup
	$(BIN)/detect-secrets-hook --baseline .secrets.baseline $$(git ls-files) || test $$? -eq 3

# Two workers (tests wait on PostgreSQL, dbt and Ray as much as they compute);
# the tests that restart PostgreSQL run afterwards, alone.
test: setup services secrets-scan
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m 'not restarts_postgres' $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m restarts_postgres $(PYTEST_ARGS)

bench: setup services
	$(BIN)/python benchmarks/run.py

# Refresh the lock from the current venv (after a deliberate dependency change).
lock:
	$(BIN)/python -m pip freeze --exclude-editable \
	  | sed -e 's/^torch==\([0-9.]*\)+cpu/torch==\1/' > requirements.lock

clean:
	rm -rf .bqx dbt_project/target dbt_project/logs
