# xoev-hub: `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench bench-components reliability clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "xoev-hub needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the hub on SQLite against local stand-ins, submit the sample messages, show what happened.
demo: $(STAMP)
	$(BIN)/xhub demo

## Every test: unit, integration (SQLite and PostgreSQL), reliability, hostile, the console (browser tests in
## Debian's chromium: `apt-get install chromium`); the import contracts (tests/unit/test_layers.py runs lint-imports).
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check hub channels adapters xhub sandbox tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

## The hub end to end against a naive script, and CLI start-up (docs/benchmarks/README.md); on demand.
## Sizes from the environment, e.g. `make bench BENCH_QUICK=1`.
bench: $(STAMP)
	$(BIN)/python scripts/bench/cli_startup.py
	$(BIN)/python scripts/bench/hub_vs_script.py
	$(BIN)/python scripts/bench/encryption.py

## 10,000 messages under kills, a target outage and a PostgreSQL restart: nothing lost, duplicated or stuck.
reliability: $(STAMP)
	$(BIN)/python scripts/bench/reliability.py

## The component benchmarks (intake, delivery, validation, mapping, FIT-Connect), results in scripts/bench/results/.
bench-components: $(STAMP)
	$(BIN)/python scripts/bench/intake.py
	$(BIN)/python scripts/bench/intake_memory.py
	$(BIN)/python scripts/bench/delivery.py
	$(BIN)/python scripts/bench/validate.py
	$(BIN)/python scripts/bench/mapping.py
	$(BIN)/python scripts/bench/fitconnect_intake.py
	$(BIN)/python scripts/bench/fitconnect_attachments.py
	$(BIN)/python scripts/bench/encryption.py
	$(BIN)/python scripts/bench/observability.py
	$(BIN)/python scripts/bench/console_search.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
