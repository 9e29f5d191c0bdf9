# Two entry points for a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: quickstart test test-fast install install-dev bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)

## quickstart: set up .venv, install, and run the main job on the embedded digits data
quickstart: $(STAMP)
	$(BIN)/shoestring quickstart

## test: install dev extras and run the test suite (slow and GPU tests deselected), then
## the tests marked `numerics` a second time on PyTorch's AVX2 kernels, so a result that
## holds only with one CPU's rounding (this machine's AVX-512) fails here, not on CI.
## Tests marked `postgres` use a throw-away PostgreSQL on 127.0.0.1 started by
## scripts/ci-postgres.sh (or SHOESTRING_TEST_PG_URL if set); without one they
## skip, except under CI=true where they fail.
PG_LOG := $(or $(TMPDIR),/tmp)/shoestring-ci-postgres.log
test: $(DEV_STAMP)
	@started=; url="$${SHOESTRING_TEST_PG_URL:-}"; \
	if [ -z "$$url" ]; then \
	  if url="$$(scripts/ci-postgres.sh start 2>$(PG_LOG))"; then started=1; \
	  else url=; echo "PostgreSQL unavailable (see $(PG_LOG)): postgres tests will skip"; fi; \
	fi; \
	SHOESTRING_TEST_PG_URL="$$url" $(BIN)/python -m pytest -q --durations=15; rc=$$?; \
	if [ $$rc -eq 0 ]; then \
	  echo "numerically sensitive tests again on AVX2 kernels (ATEN_CPU_CAPABILITY=avx2):"; \
	  ATEN_CPU_CAPABILITY=avx2 SHOESTRING_TEST_PG_URL="$$url" $(BIN)/python -m pytest -q \
	    -m 'numerics and not slow and not gpu'; rc=$$?; \
	fi; \
	if [ -n "$$started" ]; then scripts/ci-postgres.sh stop 2>>$(PG_LOG); fi; \
	exit $$rc

## test-fast: the unit tests and docstring examples only (no PostgreSQL, no server
## processes, no integration runs): a minute or two, for the edit-test loop.
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q tests/unit -m 'not slow and not gpu and not postgres' \
	  --durations=10

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/train_seed_mlp.py

clean:
	rm -rf $(VENV) runs .shoestring
