# One task vocabulary for people, hooks and CI: make run | test | lint | bench | loadtest.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen
export POLKU_DATA_DIR ?= $(CURDIR)/var
export UV_LINK_MODE ?= copy
# Compiled bytecode makes the many test subprocesses (kernels, servers) start in a third of the time.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup run test lint bench loadtest world train serve clean

setup:  ## install uv if missing, then the locked environment
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --user "uv==$(UV_VERSION)" || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	@$(UV) sync --frozen --quiet

run: setup  ## the main job: world -> champion -> store -> service on 127.0.0.1:8000
	@$(RUN) polku up

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports
	$(RUN) hadolint Dockerfile

test: setup lint  ## the whole suite (SQLite and PostgreSQL)
	$(RUN) pytest -n 2 --dist loadgroup -q --cov --cov-report= --cov-fail-under=94

bench: setup  ## wrk (Debian) measures throughput; installed here when apt-get can, else that section says so
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null 2>&1 || true
	$(RUN) python -m benchmarks.run

loadtest: setup
	$(RUN) python -m benchmarks.loadtest --duration 60 --overload 2

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
