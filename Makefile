# nocontact: the two commands a newcomer needs are `make run` and `make test`.
# Each creates/updates the virtual environment under .venv from requirements.lock first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-store chaos migrate clean lock help

help:
	@echo "make run          the whole suite in the foreground (embedded SQLite + filesystem broker by default)"
	@echo "make test         the full test suite (unit, integration against PostgreSQL/RabbitMQ, e2e over HTTP)"
	@echo "make lint         ruff"
	@echo "make bench        benchmarks; figures in var/bench/report.md"
	@echo "make bench-store  event store append and replay figures"
	@echo "make chaos        long fault-injection run"
	@echo "make migrate      bring the database to the newest schema"

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# make run ARGS=--no-seed starts without the demo tenant.
run: $(STAMP)
	$(BIN)/nocontact run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not chaos" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check shared services tests infra benchmarks

migrate: $(STAMP)
	$(BIN)/nocontact migrate

bench-store: $(STAMP)
	$(BIN)/python -m benchmarks.store

bench: $(STAMP)
	$(BIN)/python -m benchmarks

chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos tests/chaos $(PYTEST_ARGS)

# Regenerate the pins from requirements.in (needs the network to the package index).
lock:
	rm -rf /tmp/nocontact-lock && $(PYTHON) -m venv /tmp/nocontact-lock
	/tmp/nocontact-lock/bin/pip install --quiet -r requirements.in
	/tmp/nocontact-lock/bin/pip freeze > requirements.lock

clean:
	rm -rf var .pytest_cache .ruff_cache
