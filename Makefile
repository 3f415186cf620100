# The commands a newcomer needs; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.data/dagster_home
# The tenant `make serve` prints an import link for.
TENANT ?= demo

.DEFAULT_GOAL := help
.PHONY: help install browser demo dev serve worker test test-fast lint format bench bench-latency bench-peers explain db-stop clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the project with its test tools

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian's packages; the browser test drives this Chromium through its chromedriver.
BROWSER_PACKAGES := chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser: ## Install Debian's chromium and chromium-driver for the browser test (apt-get)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$(SUDO) apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	else echo "install Chromium and ChromeDriver at /usr/bin (packages: $(BROWSER_PACKAGES))"; \
		exit 1; fi

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml ## Import the bundled sample files on the embedded defaults
	@set -e; for file in samples/*/*.*; do \
		tenant=$$(basename $$(dirname $$file)); \
		echo "$$ ingestion-pipeline import $$file --tenant $$tenant"; \
		$(BIN)/ingestion-pipeline import $$file --tenant $$tenant; \
		echo; \
	done
	@# The shop's four files in reverse dependency order: each waits for its parents' rows.
	@set -e; for dataset in order_items orders products customers; do \
		file=samples/shop/$$dataset/$${dataset}_2025.ndjson; \
		echo "$$ ingestion-pipeline import $$file --tenant shop --dataset $$dataset"; \
		$(BIN)/ingestion-pipeline import $$file --tenant shop --dataset $$dataset; \
		echo; \
	done
	@echo "$$ ingestion-pipeline jobs --tenant shop"
	@$(BIN)/ingestion-pipeline jobs --tenant shop

dev: install $(DAGSTER_HOME)/dagster.yaml ## Start the Dagster UI, daemon (sensors on) and a warm-lane worker at http://127.0.0.1:3000
	mkdir -p landing/uploads
	@# The worker runs small jobs at once; it stops with dagster dev.
	export DAGSTER_POSTGRES_URL="$${DAGSTER_POSTGRES_URL:-$$($(BIN)/ingestion-pipeline dagster-storage-url)}"; \
		$(BIN)/ingestion-pipeline worker & worker=$$!; \
		trap "kill $$worker 2>/dev/null" EXIT INT TERM; \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

worker: install $(DAGSTER_HOME)/dagster.yaml ## Start one warm-lane worker (run several, on any machine, to scale out)
	$(BIN)/ingestion-pipeline worker

serve: install $(DAGSTER_HOME)/dagster.yaml ## Start the import pages and HTTP API at http://127.0.0.1:8000 with a warm-lane worker; prints an import link
	@# The worker runs what the pages upload (up to WARM_LANE_MAX_BYTES); it stops with serve.
	@export DAGSTER_POSTGRES_URL="$${DAGSTER_POSTGRES_URL:-$$($(BIN)/ingestion-pipeline dagster-storage-url)}"; \
		link=$$($(BIN)/ingestion-pipeline import-link --tenant $(TENANT) --hours 8) || exit 1; \
		$(BIN)/ingestion-pipeline worker & worker=$$!; \
		trap "kill $$worker 2>/dev/null" EXIT INT TERM; \
		echo "Open this link to import files for tenant $(TENANT) (valid 8 hours; API docs at /docs):"; \
		echo "  $$link"; \
		$(BIN)/ingestion-pipeline serve --host 127.0.0.1 --port 8000

test: install browser ## Run the tests and asset checks (real PostgreSQL, S3 API by moto, Chromium)
	$(BIN)/pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

test-fast: install ## The inner loop: every test but the browser, daemon and crash tests
	$(BIN)/pytest -m "not slow"; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

BENCH_ARGS ?=
bench: install ## Benchmark the import against COPY of the same file (BENCH_ARGS="--rows N")
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-latency: install ## What people wait for through serve + workers + dagster-daemon, both servers, beside today's path
	$(BIN)/python benchmarks/latency.py $(BENCH_ARGS)

explain: install ## Every statement over 100 ms of a 1M import and reprocess, with its plan
	$(BIN)/python benchmarks/explain.py $(BENCH_ARGS)

# Peers run in a virtual environment of their own, so their dependencies never meet ours.
PEERS := .venv-peers
$(PEERS)/.installed:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet --upgrade pip
	$(PEERS)/bin/pip install --quiet "dlt[postgres]>=1.5,<2"
	touch $@

bench-peers: install $(PEERS)/.installed ## dlt's default pipeline beside our import on the same file (BENCH_ARGS="--rows N")
	$(BIN)/python benchmarks/peers.py $(BENCH_ARGS)

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

db-stop: ## Stop the embedded PostgreSQL (it is started again on first use)
	@if [ -x $(BIN)/python ]; then $(BIN)/python -W ignore -c "from pathlib import Path; \
		from ingestion_pipeline.db.engine import stop_embedded; \
		from ingestion_pipeline.settings import load_settings; \
		print('stopped' if stop_embedded(load_settings().data_dir) else 'not running')"; fi

clean: db-stop ## Stop the embedded PostgreSQL; remove .venv, .data and the landing folder
	rm -rf $(VENV) .data landing
