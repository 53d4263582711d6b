# engram: `make demo` and `make test` are the two commands; everything else is a helper.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The install is redone only when the pinned dependency set or the project metadata change.
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)
SAMPLE := data/sample/flask-history

export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help install demo test lint format build report clean lock bench ui spark-test

help: ## list the targets (and where the code lives)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo
	@echo "  layout (imports go down only; docs/architecture.md):"
	@echo "    bench/ -> orchestration/ -> engram/cli/ -> engram/build.py -> engram/query/"
	@echo "    -> engram/{project,render,generate,numeric} -> ingest/ (warehouse, embedding, load)"
	@echo "    dbt: dbt_project.yml models/ macros/ seeds/ tests/dbt/"

install: $(STAMP) ## create .venv (if missing) and install the pinned dependencies + engram

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install ## ingest the bundled flask-history sample, build the marts, print answers
	$(BIN)/engram ingest $(SAMPLE)
	$(BIN)/engram build
	$(BIN)/engram report

test: install ## lint and run the whole test suite (pytest; it runs dbt build on test data)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/engram embedding export  # the ONNX graphs, once per cache dir (README "Embedding backends")
	$(BIN)/pytest --durations=30  # the slowest tests in every CI log: CI has a 60-minute budget

lint: install ## ruff check
	$(BIN)/ruff check .

format: install ## ruff format + autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

build: install ## dbt build on the warehouse ($$ENGRAM_DB or warehouse/engram.duckdb)
	$(BIN)/engram build

report: install ## print the answers from the current warehouse
	$(BIN)/engram report

bench: install ## python -m bench: benchmark vs pandas/SQLite/Polars (SIZE=small; docs/benchmarks.md)
	$(BIN)/python -m bench --size $(or $(SIZE),small)

ui: install ## start the Dagster UI on http://127.0.0.1:3000 (DAGSTER_HOME=.dagster_home)
	@mkdir -p $(CURDIR)/.dagster_home
	@test -f $(CURDIR)/.dagster_home/dagster.yaml || cp orchestration/dagster.yaml $(CURDIR)/.dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

spark-test: install ## the marts on Spark (dbt-spark, local session) must equal DuckDB's (docs/scale-out.md)
	$(BIN)/python -m pip install --quiet -r requirements-spark.lock
	$(BIN)/engram embedding export
	$(BIN)/pytest -m spark tests/test_spark.py

lock: ## re-pin requirements.lock from requirements.in (needs the network to the registry)
	rm -rf /tmp/engram-lock-venv && $(PYTHON) -m venv /tmp/engram-lock-venv
	/tmp/engram-lock-venv/bin/pip install --quiet -r requirements.in
	/tmp/engram-lock-venv/bin/pip freeze --exclude-editable > requirements.lock

clean: ## remove the warehouse and build output (keeps .venv)
	rm -rf warehouse target logs .pytest_cache .ruff_cache
