# Two commands set everything up on a fresh machine:
#   make run    -> installs into .venv and runs the gateway (embedded PostgreSQL + Redis if no URLs set)
#   make test   -> installs into .venv (with test extras) and runs the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist workers for `make test` (each has its own database; xdist_group keeps some tests together)
TEST_WORKERS ?= 2

$(BIN)/gateway: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/gateway

.PHONY: install run test bench
install: $(BIN)/gateway

run: install
	$(BIN)/gateway run

test: install
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: install
	$(BIN)/gateway bench
