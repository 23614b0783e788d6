# windpark: the verbs. `make run` and `make test` work on a fresh machine of the
# python-svc kind (they install what is missing, TimescaleDB included).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-random test-fast check lint format bench setup setup-machine broker venv clean lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Machine-level services: PostgreSQL + TimescaleDB, windpark's broker (root installs what is missing).
setup-machine:
	bash scripts/setup-machine.sh

## windpark's own TLS-only RabbitMQ node (setup-machine starts it too); docs/security.md.
## WINDPARK_BROKER_PROFILE=dev adds plain listeners on 127.0.0.1:5673/1884 for local tools.
broker:
	bash scripts/broker.sh start

## Database, roles, migrations, turbine registry, broker topology and identities.
setup: setup-machine venv
	$(BIN)/windpark setup

## The whole system: setup, 10 generators, concentrator, API on 127.0.0.1:8000.
run: setup-machine venv
	$(BIN)/windpark run --generators $${WINDPARK_PARK_SIZE:-10}

## Everything the tests need, then the full suite (unit, integration, e2e, slow included).
test: setup-machine venv
	$(BIN)/pytest

## The full suite in a shuffled order (pytest-randomly; the seed is printed, and
## `make test-random SEED=N` replays one order).
test-random: setup-machine venv
	$(BIN)/pytest -p randomly $(if $(SEED),--randomly-seed=$(SEED),)

## Without the slow statistical and end-to-end runs.
test-fast: setup-machine venv
	$(BIN)/pytest -m "not slow"

check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy windpark services tests bench migrations

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup-machine venv
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## Regenerate the pinned versions from the current venv (no download addresses).
lock: venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' | sort > requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
